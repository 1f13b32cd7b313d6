//! Checked reads that go to Redis together: while one read of a group is
//! on its way, the reads of that group that arrive wait, and go as one
//! `MGET` as soon as it is back (the group's marks asked for once). One
//! caller alone reads at once, as without batching; many callers at a time
//! share round trips, and Redis and the client parse one command for many.
//!
//! Each read of a batch sees the key and its marks as they were at one
//! moment (one `MGET`, one slot), as when read alone: what the coherence
//! protocol needs of a read holds for every key of the batch.
//!
//! The read on its way belongs to a caller (the first of a quiet moment)
//! or to a task running the batches that gathered behind it. A turn that
//! has lasted longer than the store's timeout (a caller whose future is no
//! longer polled, say) is not waited for: reads then go alone until it
//! ends.

use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::read::Read;
use super::redis::RedisL2;
use super::L2Error;

/// The most reads one `MGET` carries; more wait for the next.
pub(super) const MAX_BATCH: usize = 128;

/// The reads of each group (one on a single server).
pub(crate) struct Batches {
    groups: Box<[Mutex<Group>]>,
}

#[derive(Default)]
struct Group {
    /// Since when a read of this group is on its way (new ones wait), or
    /// `None`.
    busy: Option<Instant>,
    waiting: Vec<Waiting>,
}

/// A read waiting for the next batch of its group.
struct Waiting {
    key: Box<str>,
    answer: oneshot::Sender<Result<Read, L2Error>>,
}

/// What a read does in its group.
enum Enter {
    /// Reads now, holding the group's turn.
    Lead,
    /// Waits for the next batch.
    Wait(oneshot::Receiver<Result<Read, L2Error>>),
    /// Reads now, alone: the turn has lasted too long to wait for.
    Alone,
}

impl Batches {
    pub(crate) fn new(groups: usize) -> Batches {
        Batches {
            groups: (0..groups).map(|_| Mutex::default()).collect(),
        }
    }

    fn enter(&self, group: usize, key: &str, timeout: std::time::Duration) -> Enter {
        let mut state = self.groups[group].lock();
        match state.busy {
            None => {
                state.busy = Some(Instant::now());
                Enter::Lead
            }
            Some(since) if since.elapsed() < timeout => {
                let (answer, waiting) = oneshot::channel();
                state.waiting.push(Waiting {
                    key: key.into(),
                    answer,
                });
                Enter::Wait(waiting)
            }
            Some(_) => Enter::Alone,
        }
    }

    /// Takes the next batch of `group` (reads whose callers still wait),
    /// or marks the group idle when there is none.
    fn next(&self, group: usize) -> Option<Vec<Waiting>> {
        let mut state = self.groups[group].lock();
        state.waiting.retain(|w| !w.answer.is_closed());
        if state.waiting.is_empty() {
            state.busy = None;
            return None;
        }
        state.busy = Some(Instant::now());
        if state.waiting.len() <= MAX_BATCH {
            return Some(std::mem::take(&mut state.waiting));
        }
        Some(state.waiting.drain(..MAX_BATCH).collect())
    }

    /// Ends `group`'s turn, dropping what waits (each then reads alone).
    fn release(&self, group: usize) {
        let waiting = {
            let mut state = self.groups[group].lock();
            state.busy = None;
            std::mem::take(&mut state.waiting)
        };
        drop(waiting);
    }
}

impl std::fmt::Debug for Batches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batches")
            .field("groups", &self.groups.len())
            .finish()
    }
}

/// A caller's turn in a group: on drop it hands the reads that waited
/// meanwhile to a task of their own.
struct Turn<'a> {
    batches: &'a Arc<Batches>,
    store: &'a RedisL2,
    group: usize,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let Some(batch) = self.batches.next(self.group) else {
            return;
        };
        // Made before the task, so that a task dropped unpolled (its
        // runtime shutting down) still ends the turn.
        let running = Running {
            batches: Arc::clone(self.batches),
            store: self.store.clone(),
            group: self.group,
            done: false,
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(running.run(batch));
            }
            // No runtime to read in: the waiting reads, told so by their
            // dropped answers, read alone.
            Err(_) => drop((batch, running)),
        }
    }
}

/// A task's turn in a group, running batches; ends the turn if dropped
/// before it ran out of them.
struct Running {
    batches: Arc<Batches>,
    store: RedisL2,
    group: usize,
    done: bool,
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.done {
            self.batches.release(self.group);
        }
    }
}

impl Running {
    /// Runs `batch`, then the batches of its group until none waits.
    async fn run(mut self, mut batch: Vec<Waiting>) {
        loop {
            let keys: Vec<&str> = batch.iter().map(|w| &*w.key).collect();
            match self.store.read_checked_many(&keys).await {
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
            match self.batches.next(self.group) {
                Some(next) => batch = next,
                None => break,
            }
        }
        self.done = true;
    }
}

impl Batches {
    /// Reads `key` with the generation and the key's tags, batched with the
    /// reads of its group that come while another is on its way.
    pub(crate) async fn read(
        self: &Arc<Self>,
        store: &RedisL2,
        key: &str,
    ) -> Result<Read, L2Error> {
        let group = store.group_index(key);
        let waiting = match self.enter(group, key, store.timeout()) {
            Enter::Lead => {
                let _turn = Turn {
                    batches: self,
                    store,
                    group,
                };
                return store.read_checked_one(key).await;
            }
            Enter::Alone => return store.read_checked_one(key).await,
            Enter::Wait(waiting) => waiting,
        };
        // Bounded like any call: the batch before this one and this one's
        // own are each under the timeout, but together they may not be.
        match tokio::time::timeout(store.timeout(), waiting).await {
            Ok(Ok(read)) => read,
            // Its batch was dropped (its runtime shut down): read alone.
            Ok(Err(_)) => store.read_checked_one(key).await,
            Err(_) => Err(L2Error::Timeout {
                op: "MGET",
                after: store.timeout(),
            }),
        }
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
        L2Error::Unavailable { op, kind, message } => L2Error::Unavailable {
            op,
            kind: *kind,
            message: message.clone(),
        },
        L2Error::Pattern(e) => L2Error::Pattern(e.clone()),
        L2Error::ZeroTtl => L2Error::ZeroTtl,
    }
}
