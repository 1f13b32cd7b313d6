//! A TCP proxy on a loopback port in front of a test redis-server: the
//! network between one client and Redis, which a test can slow down
//! (every byte held for a delay, each way) or stall (nothing forwarded,
//! connections left open), while Redis and its other clients go on.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;
use tokio::time::Instant;

#[derive(Default)]
struct Link {
    stalled: AtomicBool,
    delay_us: AtomicU64,
    resumed: Notify,
}

/// Forwards every connection made to [`url`](Proxy::url) to the target
/// port; stops with its last handle (its tasks are aborted).
pub struct Proxy {
    port: u16,
    link: Arc<Link>,
    _tasks: JoinSet<()>,
}

impl Proxy {
    /// A proxy to `127.0.0.1:target` on a free port. Needs a tokio runtime.
    pub async fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let link = Arc::new(Link::default());
        let mut tasks = JoinSet::new();
        let accepting = Arc::clone(&link);
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                connections.spawn(pump(client_read, server_write, Arc::clone(&accepting)));
                connections.spawn(pump(server_read, client_write, Arc::clone(&accepting)));
            }
        });
        Proxy {
            port,
            link,
            _tasks: tasks,
        }
    }

    /// `redis://127.0.0.1:<port>`: Redis, through this proxy.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Holds every byte each way for `delay` (on top of the loopback's own).
    pub fn delay(&self, delay: Duration) {
        let micros = u64::try_from(delay.as_micros()).unwrap();
        self.link.delay_us.store(micros, Ordering::SeqCst);
    }

    /// Forwards nothing more, either way, until [`resume`](Proxy::resume);
    /// connections stay open.
    pub fn stall(&self) {
        self.link.stalled.store(true, Ordering::SeqCst);
    }

    /// Forwards again, what was held first.
    pub fn resume(&self) {
        self.link.stalled.store(false, Ordering::SeqCst);
        self.link.resumed.notify_waiters();
    }
}

/// Copies `from` to `to`: each chunk read is written once the delay has
/// passed since it arrived, and not while the link is stalled.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    link: Arc<Link>,
) {
    let (chunks, mut arrived) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = {
        let link = Arc::clone(&link);
        async move {
            while let Some((at, chunk)) = arrived.recv().await {
                loop {
                    let resumed = link.resumed.notified();
                    if !link.stalled.load(Ordering::SeqCst) {
                        break;
                    }
                    resumed.await;
                }
                let delay = Duration::from_micros(link.delay_us.load(Ordering::SeqCst));
                tokio::time::sleep_until(at + delay).await;
                if to.write_all(&chunk).await.is_err() {
                    return;
                }
            }
        }
    };
    let reader = async move {
        let mut buffer = vec![0; 64 * 1024];
        while let Ok(n @ 1..) = from.read(&mut buffer).await {
            if chunks.send((Instant::now(), buffer[..n].to_vec())).is_err() {
                return;
            }
        }
    };
    tokio::join!(reader, writer);
}
