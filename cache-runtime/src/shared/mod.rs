//! The shared tier: one object that owns the Redis store (connected on
//! first use, inside the caller's tokio runtime), the coherence protocol's
//! use of it, the circuit breaker, the queue of invalidations that could
//! not reach Redis and the probe that replays them (`recovery`), the
//! backplane (`backplane`) and the distributed lock (`lock`). The load
//! engine calls it through a narrow interface: look up (`read`), fill, set
//! and invalidate (`write`), lock, health. Every failure is counted and
//! reported, and the call goes on without the shared tier: a lookup that
//! fails is a miss, a fill that fails is not written, an invalidation that
//! fails is queued.
//!
//! It knows the cache that holds it only through [`Report`] (counters and
//! events) and [`Root`] (the in-process tier that the backplane and the
//! recovery apply invalidations to).

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, OnceLock, Weak};

use crate::breaker::Breaker;
use crate::envelope::Envelope;
use crate::hooks::Event;
use crate::l2::builder::RedisL2Builder;
use crate::l2::coherent::Coherent;
use crate::l2::L2Error;
use crate::pattern::Pattern;
use crate::pending::Queue;
use crate::stats::Counter;

mod backplane;
mod codec;
mod health;
mod lock;
mod read;
mod recovery;
mod write;

pub(crate) use codec::unix_ms;
pub use codec::ValueCodec;
pub(crate) use lock::LockGuard;
pub(crate) use read::{kept_until_ms, Found, Stored, Ticket};

/// Where the shared tier counts and reports: the cache whose call it
/// serves.
pub(crate) trait Report: Send + Sync {
    /// Adds `n` to a counter of the cache.
    fn count(&self, counter: Counter, n: u64);
    /// Tells the hooks (and the logs).
    fn emit(&self, event: Event<'_>);
}

/// The root cache of a shared tier (the one whose named caches share it),
/// as the backplane and the recovery reach it from their tasks.
pub(crate) trait Root: Report + Send + Sync {
    /// Applies an invalidation to the in-process tier of the root and of
    /// its named caches.
    fn invalidate_local(self: Arc<Self>, pattern: &Pattern);
    /// Applies a tag's invalidation to the in-process tier of the root and
    /// of its named caches.
    fn invalidate_tag_local(self: Arc<Self>, tag: &str);
    /// Empties the in-process tier of the root and of its named caches.
    fn clear_local(self: Arc<Self>);
}

/// The shared tier of a cache and of its named caches.
pub(crate) struct SharedTier {
    builder: RedisL2Builder,
    /// `None` inside once connecting failed for good (it cannot: the
    /// settings were checked when the cache was built).
    store: OnceLock<Option<Coherent>>,
    /// The runtime the store was made in.
    runtime: OnceLock<tokio::runtime::Handle>,
    pub(crate) envelope: Envelope,
    /// Whether values found in or written to the shared tier are also kept
    /// in process (`hybrid`), or not (`redis`).
    pub(crate) fill_l1: bool,
    /// This process on the backplane: its own messages are not applied
    /// again.
    pub(crate) instance: u64,
    /// Whether the in-process tier may be trusted: subscribed to the
    /// backplane, emptied since the last time it was not, and the
    /// subscription shown alive lately (the lease, see `backplane`).
    pub(crate) in_sync: Arc<backplane::Lease>,
    /// Times the backplane's subscriber fell behind the others'
    /// invalidations and resubscribed, emptying the in-process tier.
    pub(crate) resyncs: Arc<AtomicU64>,
    /// The root cache, which the backplane applies invalidations to.
    pub(crate) root: OnceLock<Weak<dyn Root>>,
    /// The backplane's task, once started.
    pub(crate) backplane: parking_lot::Mutex<Option<tokio::task::AbortHandle>>,
    /// Whether to run the backplane's subscriber.
    pub(crate) subscribe: bool,
    /// The circuit breaker around the store.
    pub(crate) breaker: Breaker,
    /// Invalidations that could not reach Redis, to replay before the
    /// breaker closes. Its lock also orders queueing against closing.
    pub(crate) pending: parking_lot::Mutex<Queue>,
    /// The last failure of a call to Redis, for `health()`.
    pub(crate) last_error: parking_lot::Mutex<Option<String>>,
    /// What in Redis made no sense, for `health()` and the stats.
    pub(crate) corruption: health::Corruption,
    /// Every function that reaches Redis takes the distributed lock.
    pub(crate) lock_all: bool,
    /// The longest a distributed lock is held.
    pub(crate) lock_ttl: std::time::Duration,
    /// The task that probes Redis while the breaker is open.
    pub(crate) recovery: parking_lot::Mutex<Option<tokio::task::AbortHandle>>,
    /// This tier, for the tasks it starts.
    pub(super) this: Weak<SharedTier>,
    /// Whether an invalidation queued while the breaker is open is being
    /// removed and announced (see `deliver_unmarked`).
    pub(super) delivering: AtomicBool,
    /// The runtime and connection of plain `fn`s called where no
    /// multi-threaded tokio runtime runs (see [`SharedTier::block_on`]).
    own: OnceLock<Option<OwnRuntime>>,
}

/// A runtime of the shared tier's own, with one worker thread, and a
/// connection made in it: what plain `fn`s reach Redis through when the
/// calling thread is in no runtime, or in a current-thread runtime whose
/// only thread the call holds.
struct OwnRuntime {
    runtime: Option<tokio::runtime::Runtime>,
    store: Coherent,
}

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        // Dropped from async code too (the last handle of a cache going
        // away in a task), where a runtime may not block to shut down.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

thread_local! {
    /// Set while this thread runs a future on the shared tier's own
    /// runtime: the store is then that runtime's.
    static ON_OWN_RUNTIME: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// How the shared tier of a cache copes with Redis failing.
pub(crate) struct Resilience {
    pub(crate) breaker: Breaker,
    pub(crate) pending_bound: usize,
    pub(crate) lock_all: bool,
    pub(crate) lock_ttl: std::time::Duration,
    /// See [`Config::stale_bound`](crate::Config::stale_bound).
    pub(crate) stale_bound: std::time::Duration,
}

impl Drop for SharedTier {
    fn drop(&mut self) {
        if let Some(task) = self.backplane.get_mut() {
            task.abort();
        }
        if let Some(task) = self.recovery.get_mut() {
            task.abort();
        }
    }
}

impl SharedTier {
    /// Without `backplane`, the in-process tier is always trusted and no
    /// subscription is made.
    pub(crate) fn new(
        builder: RedisL2Builder,
        envelope: Envelope,
        fill_l1: bool,
        backplane: bool,
        resilience: Resilience,
    ) -> Arc<SharedTier> {
        let instance = fastrand::u64(..);
        Arc::new_cyclic(|this| SharedTier {
            this: this.clone(),
            delivering: Default::default(),
            builder,
            store: OnceLock::new(),
            runtime: OnceLock::new(),
            envelope,
            fill_l1,
            instance,
            in_sync: Arc::new(backplane::Lease::new(!backplane, resilience.stale_bound)),
            resyncs: Arc::default(),
            subscribe: backplane,
            root: OnceLock::new(),
            backplane: parking_lot::Mutex::new(None),
            breaker: resilience.breaker,
            pending: parking_lot::Mutex::new(Queue::new(resilience.pending_bound)),
            last_error: parking_lot::Mutex::new(None),
            corruption: health::Corruption::default(),
            lock_all: resilience.lock_all,
            lock_ttl: resilience.lock_ttl,
            recovery: parking_lot::Mutex::new(None),
            own: OnceLock::new(),
        })
    }

    /// Where the backplane subscribes: the server, the master that the
    /// store's connection finds through Sentinel, or on a cluster each
    /// group's channel on the primary that serves it (the layout asked of
    /// the nodes the URL names, in turn).
    pub(crate) fn source(&self) -> Option<backplane::Source> {
        let store = self.store()?;
        let channel = || crate::l2::bus_channel(self.builder.namespace());
        if let Some(conn) = store.sentinel() {
            return Some(backplane::Source::Sentinel(conn.clone(), channel()));
        }
        let mut clients = self.builder.redis_clients().ok()?;
        if store.is_cluster() {
            let channels = store
                .bases()
                .iter()
                .map(|base| crate::l2::bus_channel(base));
            return (!clients.is_empty())
                .then(|| backplane::Source::Cluster(clients, channels.collect()));
        }
        Some(backplane::Source::Server(
            Box::new(clients.pop()?),
            channel(),
        ))
    }

    /// The store; connects (lazily: no round trip) on first use, in the
    /// current tokio runtime. `None` outside a tokio runtime: the store's
    /// timeouts and connection need one.
    pub(crate) fn store(&self) -> Option<&Coherent> {
        if ON_OWN_RUNTIME.get() {
            return self.own.get()?.as_ref().map(|own| &own.store);
        }
        let current = tokio::runtime::Handle::try_current().ok()?;
        self.store
            .get_or_init(|| {
                let _ = self.runtime.set(current);
                self.connect().ok()
            })
            .as_ref()
    }

    /// The runtime the store's connection lives in, once connected (or,
    /// for a process whose only callers are plain `fn`s, the shared
    /// tier's own): where its background tasks run.
    pub(crate) fn runtime(&self) -> Option<&tokio::runtime::Handle> {
        self.runtime.get().or_else(|| {
            let own = self.own.get()?.as_ref()?;
            own.runtime.as_ref().map(tokio::runtime::Runtime::handle)
        })
    }

    /// Runs `future`, which uses the shared tier, to its end from a plain
    /// `fn`, without blocking an async runtime's worker with it. On a
    /// multi-threaded runtime's thread, in place (`block_in_place`: the
    /// runtime moves its other tasks away meanwhile). Elsewhere, on the
    /// shared tier's own runtime, with a connection of its own: on this
    /// thread when it is in no runtime, or on a thread of its own when it
    /// is a current-thread runtime's (its only thread, which this call
    /// holds: a connection of that runtime could not be driven). `None`
    /// when no runtime can be made.
    pub(crate) fn block_on<F>(&self, future: F) -> Option<F::Output>
    where
        F: Future + Send,
        F::Output: Send,
    {
        use tokio::runtime::{Handle, RuntimeFlavor};
        let current = Handle::try_current();
        if let Ok(runtime) = &current {
            if runtime.runtime_flavor() == RuntimeFlavor::MultiThread {
                return Some(tokio::task::block_in_place(|| runtime.block_on(future)));
            }
        }
        let own = self.own()?;
        let run = || {
            ON_OWN_RUNTIME.set(true);
            let out = own.runtime.as_ref().map(|runtime| runtime.block_on(future));
            ON_OWN_RUNTIME.set(false);
            out
        };
        if current.is_ok() {
            return std::thread::scope(|scope| scope.spawn(run).join().ok().flatten());
        }
        run()
    }

    fn own(&self) -> Option<&OwnRuntime> {
        self.own
            .get_or_init(|| {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("cache-runtime-redis")
                    .enable_all()
                    .build()
                    .ok()?;
                let store = {
                    let _entered = runtime.enter();
                    self.connect().ok()?
                };
                Some(OwnRuntime {
                    runtime: Some(runtime),
                    store,
                })
            })
            .as_ref()
    }

    /// The protocol over a store of this tier's settings, connected
    /// lazily in the current runtime, announcing on this tier's channel.
    fn connect(&self) -> Result<Coherent, L2Error> {
        self.builder.clone().connect_coherent(self.instance)
    }

    /// The root cache, while it lives.
    fn root(&self) -> Option<Arc<dyn Root>> {
        self.root.get()?.upgrade()
    }

    /// Whether values found in or written to the shared tier are also kept
    /// in process.
    pub(crate) fn fills_l1(&self) -> bool {
        self.fill_l1
    }

    /// Whether the in-process tier may be trusted (see `backplane`).
    #[inline]
    pub(crate) fn in_sync(&self) -> bool {
        self.in_sync.holds()
    }

    /// Whether the in-process tier fell out of step less than `grace` ago.
    pub(crate) fn lapsed_within(&self, grace: std::time::Duration) -> bool {
        self.in_sync.lapsed_within(grace)
    }

    /// The store (see [`SharedTier::store`]), with the backplane started.
    pub(crate) fn store_now(&self) -> Option<&Coherent> {
        let store = self.store()?;
        self.ensure_backplane();
        Some(store)
    }

    /// The store, when the circuit breaker lets calls through; otherwise
    /// the call is counted as skipped and goes on without the shared tier.
    fn guarded_store(&self, report: &dyn Report) -> Option<&Coherent> {
        let store = self.store_now()?;
        if self.breaker.allows() {
            return Some(store);
        }
        report.count(Counter::L2Skipped, 1);
        self.ensure_recovery();
        None
    }

    /// Counts a failed call, tells the hooks, and tells the breaker.
    pub(crate) fn failed(&self, report: &dyn Report, op: &'static str, error: &L2Error) {
        report.count(Counter::L2Error, 1);
        report.emit(Event::L2Error { op, error });
        *self.last_error.lock() = Some(error.to_string());
        if let Some(opened) = self.breaker.failure() {
            self.breaker_changed(opened);
        }
    }

    /// Runs `future` from a plain `fn` (see [`SharedTier::block_on`]);
    /// `None` when no runtime could be made (counted as an error of the
    /// shared tier).
    pub(crate) fn block_on_counted<F>(&self, report: &dyn Report, future: F) -> Option<F::Output>
    where
        F: Future + Send,
        F::Output: Send,
    {
        let done = self.block_on(future);
        if done.is_none() {
            report.count(Counter::L2Error, 1);
        }
        done
    }
}
