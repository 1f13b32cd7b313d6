//! Instances as separate processes: `examples/instance.rs`, started twice
//! against one redis-server. One cold key costs one origin call across the
//! processes (the distributed lock), and a process killed (SIGKILL) while
//! it holds the lock lets the other take over once the lock expires.
//!
//! `cargo test` builds the example before the tests run; when running this
//! test alone, build it first: `cargo build --all-features --example instance`.

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::RedisServer;

/// The example's binary, next to this test's in the target directory.
fn instance_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test runs from <target>/<profile>/deps");
    let path = profile
        .join("examples")
        .join(format!("instance{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build --all-features --example instance` (cargo test builds it)",
        path.display()
    );
    path
}

fn start(server: &RedisServer, callers: u32, lock_ms: u64, hang: bool) -> Child {
    let mut command = Command::new(instance_binary());
    command
        .arg(server.url())
        .arg("procs")
        .arg(callers.to_string())
        .arg(lock_ms.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if hang {
        command.arg("hang");
    }
    command.spawn().expect("start the instance example")
}

/// Waits for `child` for at most 60 s (then kills it and fails).
fn finish(mut child: Child) -> Output {
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait for the instance").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("an instance did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("the instance's output");
    assert!(
        output.status.success(),
        "instance failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn origin_calls(server: &RedisServer) -> u64 {
    let calls: Option<u64> = redis::cmd("GET")
        .arg("procs-origin-calls")
        .query(&mut server.connection())
        .unwrap();
    calls.unwrap_or(0)
}

#[test]
fn two_processes_make_one_origin_call_for_a_cold_key() {
    let server = RedisServer::start();
    let (first, second) = (
        start(&server, 200, 10_000, false),
        start(&server, 200, 10_000, false),
    );
    for output in [finish(first), finish(second)] {
        let text = String::from_utf8_lossy(&output.stdout);
        assert_eq!(
            text.trim(),
            "ok 200 callers, value from origin call 1",
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert_eq!(origin_calls(&server), 1);
}

#[test]
fn a_process_killed_while_holding_the_lock_lets_another_take_over() {
    let server = RedisServer::start();
    let mut holder = start(&server, 1, 1_500, true);
    // Until the holder is in its origin call, holding the lock.
    let mut entered = false;
    for _ in 0..3000 {
        if origin_calls(&server) == 1 {
            entered = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    if !entered {
        let _ = holder.kill();
        panic!("the holder never called its origin");
    }
    let waiter = start(&server, 200, 1_500, false);
    holder.kill().expect("SIGKILL the holder");
    let _ = holder.wait();
    let output = finish(waiter);
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "ok 200 callers, value from origin call 2"
    );
    assert_eq!(origin_calls(&server), 2);
}
