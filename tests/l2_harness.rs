//! The throwaway redis-server harness itself.

mod support;

use std::process::Command;

use support::{process_state, RedisServer};

fn alive(pid: u32) -> bool {
    Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[test]
fn servers_are_separate_and_stopped_on_drop() {
    let one = RedisServer::start();
    let two = RedisServer::start();
    assert_ne!(one.port(), two.port());
    assert_ne!(one.port(), 6379);
    assert!(one.url().starts_with("redis://127.0.0.1:"));
    let (pid_one, pid_two) = (one.pid().unwrap(), two.pid().unwrap());
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(&mut one.connection())
        .unwrap();
    let on_two: Option<String> = redis::cmd("GET")
        .arg("k")
        .query(&mut two.connection())
        .unwrap();
    assert_eq!(on_two, None);
    drop(one);
    assert!(!alive(pid_one));
    assert!(alive(pid_two));
}

#[test]
fn restart_keeps_the_port_and_starts_empty() {
    let mut server = RedisServer::start();
    let port = server.port();
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(&mut server.connection())
        .unwrap();
    let old = server.pid().unwrap();
    server.restart();
    assert_eq!(server.port(), port);
    assert!(!alive(old));
    let value: Option<String> = redis::cmd("GET")
        .arg("k")
        .query(&mut server.connection())
        .unwrap();
    assert_eq!(value, None);
    server.kill();
    assert_eq!(server.pid(), None);
    assert!(!alive(old));
}

#[test]
fn pause_and_resume_stop_and_continue_the_process() {
    let server = RedisServer::start();
    let pid = server.pid().unwrap();
    server.pause();
    assert_eq!(
        process_state(pid),
        "T",
        "SIGSTOP leaves the process stopped"
    );
    server.resume();
    let pong: String = redis::cmd("PING").query(&mut server.connection()).unwrap();
    assert_eq!(pong, "PONG");
}
