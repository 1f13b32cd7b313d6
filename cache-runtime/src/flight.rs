//! Single flight: at most one origin call per key at a time in a process.
//!
//! The first caller that misses registers a [`Flight`] and becomes its
//! leader; later callers find the flight and wait on it (never on a lock
//! held across the origin call). The leader publishes its value, or leaves:
//! if its future is dropped or its origin panics, the guard marks the flight
//! abandoned and wakes the waiters, and one of them takes over.
//!
//! Invalidation marks the running flights it covers. A marked flight still
//! answers the callers that joined it before the invalidation, but does not
//! store its value, and is removed from the map so that later callers start
//! a new flight (guarantee 2: no stale fill).

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use event_listener::{Event, Listener};
use foldhash::fast::RandomState;
use parking_lot::Mutex;

use crate::outcome::SharedError;
use crate::pattern::Pattern;

const SHARDS: usize = 16;

type Value = crate::entry::AnyValue;

/// The running flights of a shard of the keys. A key is allocated once per
/// flight, shared by the map and the leader.
type Shard = Mutex<HashMap<Arc<str>, Arc<Flight>, RandomState>>;

pub(crate) struct Flights {
    shards: Box<[Shard]>,
    hasher: RandomState,
}

pub(crate) struct Flight {
    state: Mutex<State>,
    done: Event,
    /// What the origin call chose for its value (see [`crate::context`]).
    adapted: Mutex<Adapted>,
    /// The tag clock when the flight started, before its reads: the birth
    /// of the value it stores (see [`crate::tags`]).
    born: u64,
}

/// The life an origin call chose for the value it computes, through
/// [`crate::context`]: each part overrides the function's own; and the
/// tags it gave the value.
#[derive(Clone, Debug, Default)]
pub(crate) struct Adapted {
    pub(crate) ttl: Option<std::time::Duration>,
    pub(crate) stale: Option<std::time::Duration>,
    pub(crate) fail_safe: Option<std::time::Duration>,
    pub(crate) tags: Vec<Box<str>>,
    /// A tag was refused (not a tag, or past [`MAX_TAGS`](crate::MAX_TAGS)):
    /// the value is not stored, since an invalidation meant for it could
    /// not reach it.
    pub(crate) untagged: bool,
}

enum State {
    Running {
        invalidated: bool,
    },
    Done(Value),
    /// The origin failed: waiters get the error when it can be shared
    /// (`E: Clone`); otherwise each makes its own call, at once, rather
    /// than queueing behind one another.
    Failed(Option<SharedError>),
    /// The leader left (cancelled) or panicked: waiters try again and one
    /// of them leads.
    Retry,
}

/// What a waiter learns.
pub(crate) enum Joined {
    Value(Value),
    Failed(Option<SharedError>),
    Retry,
}

pub(crate) enum Join<'a> {
    Leader(Leader<'a>),
    Waiter(Arc<Flight>),
}

impl Flights {
    pub(crate) fn new() -> Self {
        Flights {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::default(),
        }
    }

    fn shard(&self, key: &str) -> &Shard {
        &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS]
    }

    /// Leads a new flight for `key`, or joins the running one.
    pub(crate) fn join(&self, key: &str) -> Join<'_> {
        let mut shard = self.shard(key).lock();
        if let Some(flight) = shard.get(key) {
            return Join::Waiter(Arc::clone(flight));
        }
        let flight = Arc::new(Flight {
            state: Mutex::new(State::Running { invalidated: false }),
            done: Event::new(),
            adapted: Mutex::default(),
            born: crate::tags::now(),
        });
        let key: Arc<str> = key.into();
        shard.insert(Arc::clone(&key), Arc::clone(&flight));
        Join::Leader(Leader {
            flights: self,
            key,
            flight,
            finished: false,
        })
    }

    /// Marks the running flight of `key`, if any (see the module docs).
    pub(crate) fn invalidate_key(&self, key: &str) {
        let removed = self.shard(key).lock().remove(key);
        if let Some(flight) = removed {
            flight.mark_invalidated();
        }
    }

    /// Marks every running flight (see the module docs).
    pub(crate) fn invalidate_all(&self) {
        for shard in self.shards.iter() {
            let marked: Vec<Arc<Flight>> = shard.lock().drain().map(|(_, flight)| flight).collect();
            for flight in marked {
                flight.mark_invalidated();
            }
        }
    }

    /// Marks every running flight whose key `pattern` matches.
    pub(crate) fn invalidate_matching(&self, pattern: &Pattern) {
        for shard in self.shards.iter() {
            let mut marked = Vec::new();
            shard.lock().retain(|key, flight| {
                let hit = pattern.matches(key);
                if hit {
                    marked.push(Arc::clone(flight));
                }
                !hit
            });
            for flight in marked {
                flight.mark_invalidated();
            }
        }
    }

    fn remove(&self, key: &str, flight: &Arc<Flight>) {
        let mut shard = self.shard(key).lock();
        if shard.get(key).is_some_and(|f| Arc::ptr_eq(f, flight)) {
            shard.remove(key);
        }
    }
}

impl Flight {
    /// Wakes the waiters, if any. A waiter listens before it looks at the
    /// state one last time, and the state is set before this: either it
    /// is counted here, or it sees the state. (Without listeners, nothing
    /// is allocated.)
    fn wake_waiters(&self) {
        if self.done.total_listeners() > 0 {
            self.done.notify(usize::MAX);
        }
    }

    fn mark_invalidated(&self) {
        if let State::Running { invalidated } = &mut *self.state.lock() {
            *invalidated = true;
        }
    }

    fn poll_state(&self) -> Option<Joined> {
        match &*self.state.lock() {
            State::Running { .. } => None,
            State::Done(value) => Some(Joined::Value(Arc::clone(value))),
            State::Failed(error) => Some(Joined::Failed(error.clone())),
            State::Retry => Some(Joined::Retry),
        }
    }

    /// Waits for the leader, without blocking the thread.
    pub(crate) async fn wait(&self) -> Joined {
        loop {
            if let Some(outcome) = self.poll_state() {
                return outcome;
            }
            let listener = self.done.listen();
            if let Some(outcome) = self.poll_state() {
                return outcome;
            }
            listener.await;
        }
    }

    /// Waits for the leader, blocking the thread (for plain `fn`s).
    pub(crate) fn wait_blocking(&self) -> Joined {
        loop {
            if let Some(outcome) = self.poll_state() {
                return outcome;
            }
            let listener = self.done.listen();
            if let Some(outcome) = self.poll_state() {
                return outcome;
            }
            listener.wait();
        }
    }

    /// Whether this thread is, right now, computing this flight's value:
    /// joining it would wait forever.
    pub(crate) fn is_led_here(self: &Arc<Self>) -> bool {
        LEADING.with(|leading| leading.borrow().iter().any(|led| led.leads(self)))
    }
}

/// The leader's handle on its flight. Dropping it without [`Leader::finish`]
/// (cancellation, panic) lets a waiter take over.
pub(crate) struct Leader<'a> {
    flights: &'a Flights,
    key: Arc<str>,
    flight: Arc<Flight>,
    finished: bool,
}

impl<'a> Leader<'a> {
    /// Publishes `value` to the waiters; runs `store` first unless an
    /// invalidation covered this flight. Holding the flight's lock across
    /// `store` orders it against [`Flights::invalidate_key`]: either the
    /// invalidation sees the stored value and removes it, or the store sees
    /// the mark and does not happen.
    /// Returns what `store` returned (whether it stored), or `None` when an
    /// invalidation covered the flight and `store` did not run. `store`
    /// runs under the flight's lock: it must not call back into the cache
    /// (no hooks).
    #[must_use]
    pub(crate) fn finish(self, value: Value, store: impl FnOnce() -> bool) -> Option<bool> {
        self.finish_held(value, store).0
    }

    /// As [`finish`](Leader::finish), but the flight stays registered, done,
    /// until the returned guard drops: callers that arrive meanwhile get
    /// the value instead of starting a call of their own. The leader holds
    /// it while it writes the value to the shared tier. An invalidation
    /// unregisters it as usual.
    pub(crate) fn finish_held(
        mut self,
        value: Value,
        store: impl FnOnce() -> bool,
    ) -> (Option<bool>, Held<'a>) {
        let stored = {
            let mut state = self.flight.state.lock();
            let stored = (!matches!(*state, State::Running { invalidated: true })).then(store);
            *state = State::Done(value);
            stored
        };
        self.finished = true;
        self.flight.wake_waiters();
        let held = Held {
            flights: self.flights,
            key: Arc::clone(&self.key),
            flight: Arc::clone(&self.flight),
        };
        (stored, held)
    }

    /// What the origin call chose for its value through
    /// [`crate::context`].
    pub(crate) fn adapted(&self) -> Adapted {
        self.flight.adapted.lock().clone()
    }

    /// The tag clock when this flight started (see [`crate::tags`]).
    pub(crate) fn born(&self) -> u64 {
        self.flight.born
    }

    /// Whether an invalidation covered this flight since it started.
    pub(crate) fn is_invalidated(&self) -> bool {
        matches!(
            *self.flight.state.lock(),
            State::Running { invalidated: true }
        )
    }

    /// Tells the waiters that the origin failed, with the error when it
    /// can be shared.
    pub(crate) fn fail(mut self, error: Option<SharedError>) {
        *self.flight.state.lock() = State::Failed(error);
        self.finished = true;
        self.release();
    }

    fn release(&self) {
        self.flights.remove(&self.key, &self.flight);
        self.flight.wake_waiters();
    }

    /// Runs `f` marked as this flight's leader on this thread.
    pub(crate) fn lead<R>(&self, f: impl FnOnce() -> R) -> R {
        let _mark = LeadMark::enter(&Led::One(Arc::clone(&self.flight)));
        f()
    }

    /// Wraps the origin future so that each poll runs marked as this
    /// flight's leader on the polling thread.
    pub(crate) fn lead_future<F: Future>(&self, future: F) -> LeadFuture<F> {
        LeadFuture {
            led: Led::One(Arc::clone(&self.flight)),
            future,
        }
    }
}

/// A finished flight still registered; unregisters it when dropped.
pub(crate) struct Held<'a> {
    flights: &'a Flights,
    key: Arc<str>,
    flight: Arc<Flight>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.flights.remove(&self.key, &self.flight);
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        if !self.finished {
            *self.flight.state.lock() = State::Retry;
            self.release();
        }
    }
}

/// Changes the life of the value the innermost origin call running on
/// this thread computes; `false` outside one.
pub(crate) fn adapt(change: impl FnOnce(&mut Adapted)) -> bool {
    LEADING.with(|leading| match leading.borrow().last() {
        Some(Led::One(flight)) => {
            change(&mut flight.adapted.lock());
            true
        }
        // A batch's origin computes many values: none is "the" value.
        Some(Led::Many(_)) | None => false,
    })
}

/// What an origin call running on a thread computes: one flight's value,
/// or a batch's.
#[derive(Clone)]
pub(crate) enum Led {
    One(Arc<Flight>),
    Many(Arc<[Arc<Flight>]>),
}

impl Led {
    fn leads(&self, flight: &Arc<Flight>) -> bool {
        match self {
            Led::One(one) => Arc::ptr_eq(one, flight),
            Led::Many(many) => many.iter().any(|one| Arc::ptr_eq(one, flight)),
        }
    }
}

/// Wraps a batch's origin future so that each poll runs marked as the
/// leader of all of `leaders`' flights (see [`Leader::lead_future`]).
pub(crate) fn lead_all<'l, F: Future>(
    leaders: impl IntoIterator<Item = &'l Leader<'l>>,
    future: F,
) -> LeadFuture<F> {
    let flights: Arc<[Arc<Flight>]> = leaders
        .into_iter()
        .map(|leader| Arc::clone(&leader.flight))
        .collect();
    LeadFuture {
        led: Led::Many(flights),
        future,
    }
}

thread_local! {
    /// The flights this thread is computing, innermost last.
    static LEADING: RefCell<Vec<Led>> = const { RefCell::new(Vec::new()) };
}

struct LeadMark;

impl LeadMark {
    fn enter(led: &Led) -> LeadMark {
        LEADING.with(|l| l.borrow_mut().push(led.clone()));
        LeadMark
    }
}

impl Drop for LeadMark {
    fn drop(&mut self) {
        LEADING.with(|l| {
            l.borrow_mut().pop();
        });
    }
}

pin_project_lite::pin_project! {
    pub(crate) struct LeadFuture<F> {
        led: Led,
        #[pin]
        future: F,
    }
}

impl<F: Future> Future for LeadFuture<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _mark = LeadMark::enter(this.led);
        this.future.poll(cx)
    }
}
