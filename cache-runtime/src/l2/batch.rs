//! Checked reads that go to Redis together: while one read of a group is
//! on its way, the reads of that group that arrive wait, and go as one
//! `MGET` as soon as it is back (the group's marks asked for once). One
//! caller alone reads at once, as without batching; many callers at a time
//! share round trips, and Redis and the client parse one command for many.
//!
//! Each read of a batch sees the key and its marks as they were at one
//! moment (one `MGET`, one slot), as when read alone: what the coherence
//! protocol needs of a read holds for every key of the batch.

use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::coherent::Read;
use super::redis::RedisL2;
use super::L2Error;

/// The most reads one `MGET` carries; more wait for the next.
const MAX_BATCH: usize = 128;

/// The reads of each group (one on a single server).
pub(crate) struct Batches {
    groups: Box<[Mutex<Group>]>,
}

#[derive(Default)]
struct Group {
    /// A read of this group is on its way: new ones wait.
    busy: bool,
    waiting: Vec<Waiting>,
}

/// A read waiting for the next batch of its group.
struct Waiting {
    key: Box<str>,
    answer: oneshot::Sender<Result<Read, L2Error>>,
}

impl Batches {
    pub(crate) fn new(groups: usize) -> Batches {
        Batches {
            groups: (0..groups).map(|_| Mutex::default()).collect(),
        }
    }

    /// Takes the next batch of `group`, or marks it idle when none waits.
    fn next(&self, group: usize) -> Option<Vec<Waiting>> {
        let mut state = self.groups[group].lock();
        if state.waiting.is_empty() {
            state.busy = false;
            return None;
        }
        if state.waiting.len() <= MAX_BATCH {
            return Some(std::mem::take(&mut state.waiting));
        }
        Some(state.waiting.drain(..MAX_BATCH).collect())
    }
}

impl std::fmt::Debug for Batches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batches")
            .field("groups", &self.groups.len())
            .finish()
    }
}

/// The right to read in a group: whoever holds it has a read on its way;
/// on drop it hands the reads that waited meanwhile to a task of their own.
struct Turn<'a> {
    store: &'a RedisL2,
    group: usize,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let Some(batch) = self.store.batches().next(self.group) else {
            return;
        };
        let store = self.store.clone();
        let group = self.group;
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { store.run_batches(group, batch).await });
            }
            // No runtime to read in: the waiting reads, told so by their
            // dropped answers, read on their own.
            Err(_) => {
                drop(batch);
                release(&store, group);
            }
        }
    }
}

/// Gives up `group`'s turn, dropping what waits (each then reads alone).
fn release(store: &RedisL2, group: usize) {
    let waiting = {
        let mut state = store.batches().groups[group].lock();
        state.busy = false;
        std::mem::take(&mut state.waiting)
    };
    drop(waiting);
}

/// Holds a group's turn in a task running batches; if the task is dropped
/// half-way (its runtime shutting down), releases it.
struct Running<'a> {
    store: &'a RedisL2,
    group: usize,
    done: bool,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if !self.done {
            release(self.store, self.group);
        }
    }
}

impl RedisL2 {
    /// Reads `key` with the generation and the key's tags, batched with the
    /// reads of its group that come while another is on its way.
    pub(crate) async fn read_checked(&self, key: &str) -> Result<Read, L2Error> {
        let group = self.group_index(key);
        let waiting = {
            let mut state = self.batches().groups[group].lock();
            if state.busy {
                let (answer, waiting) = oneshot::channel();
                state.waiting.push(Waiting {
                    key: key.into(),
                    answer,
                });
                Some(waiting)
            } else {
                state.busy = true;
                None
            }
        };
        let Some(waiting) = waiting else {
            let _turn = Turn { store: self, group };
            return self.read_one(key).await;
        };
        // Bounded like any call: the batch before this one and this one's
        // own are each under the timeout, but together they may not be.
        match tokio::time::timeout(self.timeout(), waiting).await {
            Ok(Ok(read)) => read,
            // Its batch was dropped (its runtime shut down): read alone.
            Ok(Err(_)) => self.read_one(key).await,
            Err(_) => Err(L2Error::Timeout {
                op: "MGET",
                after: self.timeout(),
            }),
        }
    }

    async fn read_one(&self, key: &str) -> Result<Read, L2Error> {
        let mut reads = self.read_checked_many(&[key]).await?;
        Ok(reads.pop().expect("one read per key"))
    }

    /// Runs the batches of `group` until none waits.
    async fn run_batches(self, group: usize, mut batch: Vec<Waiting>) {
        let mut running = Running {
            store: &self,
            group,
            done: false,
        };
        loop {
            let keys: Vec<&str> = batch.iter().map(|w| &*w.key).collect();
            match self.read_checked_many(&keys).await {
                Ok(reads) => {
                    for (waiting, read) in batch.into_iter().zip(reads) {
                        let _ = waiting.answer.send(Ok(read));
                    }
                }
                Err(e) => {
                    for waiting in batch {
                        let _ = waiting.answer.send(Err(copy(&e)));
                    }
                }
            }
            match self.batches().next(group) {
                Some(next) => batch = next,
                None => break,
            }
        }
        running.done = true;
    }
}

/// The same error again, for each read of a failed batch (the driver's
/// error, kept as its message).
fn copy(e: &L2Error) -> L2Error {
    match e {
        L2Error::Config(message) => L2Error::Config(message.clone()),
        L2Error::Timeout { op, after } => L2Error::Timeout { op, after: *after },
        L2Error::Connection { op, source } => L2Error::Connection {
            op,
            source: source.to_string().into(),
        },
        L2Error::Command { op, source } => L2Error::Command {
            op,
            source: source.to_string().into(),
        },
        L2Error::Pattern(e) => L2Error::Pattern(e.clone()),
        L2Error::ZeroTtl => L2Error::ZeroTtl,
    }
}
