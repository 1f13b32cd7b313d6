//! The cache's use of the shared tier: the leader's lookup, the fill after
//! an origin call, and invalidation. Every failure of the shared tier is
//! counted and reported to the hooks, and the call goes on without it: a
//! lookup that fails is a miss, a fill that fails is not written.

use std::any::Any;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Cache, Leader, Life, Policy, Route};
use crate::breaker::BreakerState;
use crate::clock::{self, Ticks};
use crate::entry::Entry;
use crate::envelope::{Deadlines, EnvelopeError};
use crate::health::{Health, HealthStatus};
use crate::hooks::{Event, Tier};
use crate::invalidation::SharedInvalidation;
use crate::l1::L1Engine;
use crate::l2::coherent::{Lock, Read};
use crate::l2::redis::RedisL2;
use crate::l2::L2Error;
use crate::pattern::Pattern;
use crate::pending::Pending;
use crate::shared::{unix_ms, AnyValue, Shared, ValueCodec};
use crate::site::Site;
use crate::stats::Counter;

/// Permission to fill the shared tier: the generation the leader read
/// before its origin call, and when.
#[derive(Clone, Copy, Debug)]
pub(super) struct Ticket {
    generation: u64,
    read_at: Instant,
}

/// What the leader's lookup in the shared tier found.
pub(super) enum Found {
    /// A fresh value of the type asked for, its deadlines and its encoded
    /// length.
    Value(AnyValue, Deadlines, usize),
    /// Nothing fresh; a fill may follow when there is a ticket (none when
    /// the shared tier could not be read). The value found past its
    /// freshness but still kept (`stale`, `fail_safe`), if any: the answer
    /// when the origin fails.
    Miss(Option<Ticket>, Option<AnyValue>),
}

/// The distributed lock of a key, held by this instance's leader while it
/// calls the origin and fills, and renewed meanwhile (every third of its
/// lifetime), so that a slow origin call keeps it. Dropped, it is released
/// by a task (off the caller's answer), unless the breaker is open (it then
/// expires by itself); a holder that dies with its process frees it when it
/// expires. A holder that stored nothing leaves it vacated for a moment:
/// the waiting instances then call the origin at once instead of taking
/// the lock in turn.
pub(super) struct LockGuard {
    shared: Arc<Shared>,
    store: RedisL2,
    key: Box<str>,
    holder: Box<str>,
    renewal: Option<tokio::task::AbortHandle>,
    /// The holder's origin call ended and nothing reached Redis. (A holder
    /// dropped mid-call just releases it: another instance takes over.)
    pub(super) vacate: bool,
}

impl LockGuard {
    fn new(shared: Arc<Shared>, store: &RedisL2, key: &str, holder: String) -> LockGuard {
        let ttl = shared.lock_ttl;
        let renewal = shared.runtime().map(|runtime| {
            let (store, key, holder) = (store.clone(), key.to_owned(), holder.clone());
            runtime
                .spawn(async move {
                    loop {
                        tokio::time::sleep(ttl / 3).await;
                        if !matches!(store.renew_lock(&key, &holder, ttl).await, Ok(true)) {
                            return;
                        }
                    }
                })
                .abort_handle()
        });
        LockGuard {
            shared,
            store: store.clone(),
            key: key.into(),
            holder: holder.into(),
            renewal,
            vacate: false,
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(renewal) = &self.renewal {
            renewal.abort();
        }
        if !self.shared.breaker.allows() {
            return;
        }
        let Some(runtime) = self.shared.runtime() else {
            return;
        };
        let store = self.store.clone();
        let (key, holder) = (
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.holder),
        );
        let vacate = self.vacate;
        runtime.spawn(async move {
            // Not released (Redis failing): it expires.
            let _ = store.unlock(&key, &holder, vacate).await;
        });
    }
}

/// Sends an invalidation to Redis (and, with it, to the other instances).
pub(super) async fn send(store: &RedisL2, item: &Pending) -> Result<SharedInvalidation, L2Error> {
    match item {
        Pending::Pattern(pattern) => store.invalidate_checked(pattern).await,
        Pending::Clear => store.clear_checked().await.map(SharedInvalidation::Scanned),
    }
}

/// How often a leader waiting for another instance's lock looks again:
/// doubling from the first to the last.
const LOCK_POLL_FIRST: Duration = Duration::from_millis(2);
const LOCK_POLL_LAST: Duration = Duration::from_millis(50);
/// The longest a leader waits for another instance's lock, in lock
/// lifetimes.
const LOCK_WAIT_LIFETIMES: u32 = 10;

impl Cache {
    pub(super) fn shared_store(&self) -> Option<(&Shared, &RedisL2)> {
        let shared = self.inner.shared.as_deref()?;
        let store = shared.store()?;
        self.ensure_backplane();
        Some((shared, store))
    }

    /// The store, when the circuit breaker lets calls through; otherwise
    /// the call is counted as skipped and goes on without the shared tier.
    fn guarded_store(&self) -> Option<(&Shared, &RedisL2)> {
        let (shared, store) = self.shared_store()?;
        if shared.breaker.allows() {
            return Some((shared, store));
        }
        self.inner.counters.add(Counter::L2Skipped, 1);
        self.ensure_recovery();
        None
    }

    /// Which tiers a `#[cached]` function with `tier` and `codec` (present
    /// when its value is serde) reads and fills in this cache. A function
    /// whose values could go to Redis but are not serde is marked on its
    /// `site`, and said once (see [`Health::local_only`]).
    pub(crate) fn route(
        &self,
        tier: crate::__private::TierChoice,
        codec: Option<ValueCodec>,
        site: &Site,
    ) -> Route {
        use crate::__private::TierChoice;
        let Some(shared) = self.inner.shared.as_deref() else {
            return Route::L1;
        };
        let Some(codec) = codec else {
            if tier == TierChoice::Default {
                self.local_only(site);
            }
            return Route::L1;
        };
        let (l1, l2) = match tier {
            TierChoice::L1 => (true, false),
            TierChoice::L2 => (false, true),
            TierChoice::Both => (true, true),
            TierChoice::Default => (shared.fill_l1, true),
        };
        Route {
            l1,
            l2: l2.then_some(codec),
        }
    }

    /// Marks `site` as keeping its values in process for want of serde,
    /// and says so the first time.
    #[cold]
    fn local_only(&self, site: &Site) {
        use std::sync::atomic::Ordering;
        if site.local_only.load(Ordering::Relaxed) || site.local_only.swap(true, Ordering::Relaxed)
        {
            return;
        }
        let message = format!(
            "cache_runtime: `{}` keeps its values in this process only: its value type is not serde, so other instances never see them; derive serde::Serialize and serde::Deserialize on it, or write `tier = \"l1\"` to say it is meant",
            site.template
        );
        #[cfg(feature = "tracing")]
        tracing::warn!(target: "cache_runtime", cache = %self.inner.name, template = site.template, "{message}");
        #[cfg(not(feature = "tracing"))]
        eprintln!("{message}");
    }

    /// Looks `key` up in the shared tier, as the leader of its flight.
    pub(super) async fn l2_lookup<V: 'static>(
        &self,
        key: &str,
        site: &Site,
        codec: ValueCodec,
        policy: &Policy,
        poll: bool,
    ) -> Found {
        // A leader waiting for another instance's lock looks again and
        // again: one miss is counted, and its looks say nothing to the
        // breaker about Redis's health.
        let missed = || {
            if !poll {
                self.count(site, Counter::L2Miss, 1);
            }
        };
        let Some((shared, store)) = self.guarded_store() else {
            return Found::Miss(None, None);
        };
        let read_at = Instant::now();
        let read = match store.read_checked(key).await {
            Ok(read) => {
                if !poll {
                    shared.breaker.success();
                }
                read
            }
            Err(e) => {
                self.l2_failed("GET", &e);
                return Found::Miss(None, None);
            }
        };
        let (stored, start, generation) = match read {
            Read::Value {
                bytes,
                start,
                generation,
            } => (bytes, start, generation),
            Read::Absent { generation } => {
                missed();
                let ticket = Ticket {
                    generation,
                    read_at,
                };
                return Found::Miss(Some(ticket), None);
            }
        };
        let ticket = Some(Ticket {
            generation,
            read_at,
        });
        let bytes = &stored[start..];
        // The value's `Deserialize` is user code, fed bytes from outside: a
        // panic is one more undecodable value.
        let envelope = shared.envelope;
        let decoded = std::panic::catch_unwind(|| (codec.decode)(&envelope, bytes))
            .unwrap_or(Err(EnvelopeError::Panicked));
        let now = unix_ms();
        match decoded {
            Ok((value, deadlines)) if value.is::<V>() && deadlines.is_fresh(now) => {
                self.count(site, Counter::L2Hit, 1);
                self.emit(Event::Hit {
                    template: site.template,
                    tier: Tier::L2,
                });
                Found::Value(value, deadlines, bytes.len())
            }
            // Past its freshness: the origin is called, and this answers
            // if it fails, within this function's window (whoever wrote it).
            Ok((value, deadlines))
                if value.is::<V>() && now < self.kept_until_ms(&deadlines, policy) =>
            {
                missed();
                Found::Miss(ticket, Some(value))
            }
            // Another type (two functions sharing a key), or expired.
            Ok(_) => {
                missed();
                Found::Miss(ticket, None)
            }
            Err(_) => {
                self.count(site, Counter::L2Undecodable, 1);
                missed();
                Found::Miss(ticket, None)
            }
        }
    }

    /// The end of the window in which a value with `deadlines` may answer
    /// for this function: its writer's, cut to this function's `keep`.
    fn kept_until_ms(&self, deadlines: &Deadlines, policy: &Policy) -> u64 {
        let (_, keep) = self.stale_and_keep(policy);
        let own = deadlines.fresh_until_ms.saturating_add(millis(keep));
        deadlines.stale_until_ms.min(own)
    }

    /// The leader's lookup in the shared tier; with `lock` (or the cache's
    /// `lock` setting), on a miss, single flight across instances (see
    /// [`l2_lock`](Self::l2_lock)).
    pub(super) async fn l2_lead<V: 'static>(
        &self,
        key: &str,
        site: &Site,
        codec: ValueCodec,
        policy: &Policy,
    ) -> (Found, Option<LockGuard>) {
        let found = self.l2_lookup::<V>(key, site, codec, policy, false).await;
        let Some(shared) = self.inner.shared.as_deref() else {
            return (found, None);
        };
        // A value, or Redis failing: nothing to coordinate.
        if !(policy.lock || shared.lock_all) || !matches!(found, Found::Miss(Some(_), _)) {
            return (found, None);
        }
        // Boxed: the wait would otherwise weigh on every lookup's future.
        Box::pin(self.l2_lock::<V>(key, site, codec, policy, found)).await
    }

    /// After a miss, single flight across instances: the leader takes the
    /// key's lock in Redis and returns it to be held through the origin
    /// call and the fill, or, while another instance holds it, looks again
    /// with a growing pause until that instance's value is there, or the
    /// lock is free (then takes it), or vacated (its holder stored nothing:
    /// then it calls the origin). Past ten lock lifetimes, or when Redis
    /// fails, it goes on without the lock.
    async fn l2_lock<V: 'static>(
        &self,
        key: &str,
        site: &Site,
        codec: ValueCodec,
        policy: &Policy,
        mut found: Found,
    ) -> (Found, Option<LockGuard>) {
        let Some(shared) = self.inner.shared.as_deref() else {
            return (found, None);
        };
        let holder = format!("{:016x}-{:016x}", shared.instance, fastrand::u64(..));
        // A held lock has a live holder (it renews it) or a dead one (it
        // expires within its lifetime): waiting while it is held waits for
        // the holder's call, as waiters in one process do. Bounded, for a
        // holder whose call never ends.
        let deadline = Instant::now() + shared.lock_ttl * LOCK_WAIT_LIFETIMES;
        let mut pause = LOCK_POLL_FIRST;
        loop {
            // A value, or Redis failing: nothing to coordinate.
            if !matches!(found, Found::Miss(Some(_), _)) {
                return (found, None);
            }
            let Some((shared, store)) = self.guarded_store() else {
                return (found, None);
            };
            match store.try_lock(key, &holder, shared.lock_ttl).await {
                Ok(Lock::Taken) => {
                    shared.breaker.success();
                    let Some(owner) = self.inner.shared.clone() else {
                        return (found, None);
                    };
                    let guard = LockGuard::new(owner, store, key, holder);
                    // The previous holder may have filled and released
                    // between the look and the lock.
                    let again = self.l2_lookup::<V>(key, site, codec, policy, true).await;
                    if let Found::Value(..) = again {
                        return (again, None);
                    }
                    return (again, Some(guard));
                }
                // Its holder stored nothing (its origin failed, say): each
                // calls its own.
                Ok(Lock::Vacated) => return (found, None),
                Ok(Lock::Held) => {}
                Err(e) => {
                    self.l2_failed("LOCK", &e);
                    return (found, None);
                }
            }
            if Instant::now() >= deadline {
                return (found, None);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(LOCK_POLL_LAST);
            found = self.l2_lookup::<V>(key, site, codec, policy, true).await;
        }
    }

    /// Publishes a value the leader found in the shared tier, and keeps it
    /// in process for the rest of its life (at most `l1_ttl`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn settle_l2_hit<V: Clone + Send + Sync + 'static>(
        &self,
        leader: Leader<'_>,
        key: &str,
        site: &Site,
        policy: &Policy,
        route: Route,
        shared: AnyValue,
        deadlines: Deadlines,
        encoded_len: usize,
    ) -> Option<V> {
        let entry = (route.l1 && self.in_sync()).then(|| {
            let now_ms = unix_ms();
            let fresh = Duration::from_millis(deadlines.fresh_until_ms.saturating_sub(now_ms));
            // The envelope's stale deadline is the end of the window its
            // writer kept it for (stale or fail-safe); the windows served
            // here are this function's.
            let kept = Duration::from_millis(
                self.kept_until_ms(&deadlines, policy)
                    .saturating_sub(now_ms),
            );
            let (stale, _) = self.stale_and_keep(policy);
            let l1_fresh = policy.l1_ttl.map_or(fresh, |l1| l1.min(fresh));
            let now: Ticks = self.inner.clock.now();
            let fresh_until = now.saturating_add(clock::ticks(l1_fresh));
            let until = |span: Duration| {
                if span > l1_fresh {
                    now.saturating_add(clock::ticks(span))
                } else {
                    fresh_until
                }
            };
            let stale_until = if stale.is_zero() {
                fresh_until
            } else {
                until(kept.min(fresh.saturating_add(stale)))
            };
            Entry {
                value: Arc::clone(&shared),
                fresh_until,
                stale_until,
                weight: Entry::weight_of_encoded(key, encoded_len).max(self.inner.min_weight),
                kept_secs: Entry::kept_secs(stale_until, until(kept)),
            }
        });
        let insert = || entry.is_some_and(|entry| self.inner.l1.insert(key, entry));
        if leader.finish(Arc::clone(&shared), insert) == Some(true) {
            self.stored(site);
        }
        // Without waiters or an in-process copy, the decoded value is
        // handed over as it is, not cloned.
        let value = shared.downcast::<V>().ok()?;
        Some(Arc::try_unwrap(value).unwrap_or_else(|shared| V::clone(&shared)))
    }

    /// Writes a value the origin returned to the shared tier, unless an
    /// invalidation newer than the leader's read covers its key; returns
    /// whether it did.
    pub(super) async fn l2_fill(
        &self,
        key: &str,
        ticket: Ticket,
        value: &(dyn Any + Send + Sync),
        codec: ValueCodec,
        life: Life,
    ) -> bool {
        let Some((shared, store)) = self.guarded_store() else {
            return false;
        };
        let Some(bytes) = self.encode(value, codec, life) else {
            return false;
        };
        match store
            .fill_checked(
                key,
                ticket.generation,
                ticket.read_at,
                &bytes,
                life.ttl.saturating_add(life.keep),
            )
            .await
        {
            Ok(stored) => {
                shared.breaker.success();
                let counter = if stored {
                    Counter::L2Set
                } else {
                    Counter::L2FillRejected
                };
                self.inner.counters.add(counter, 1);
                stored
            }
            Err(e) => {
                self.l2_failed("FILL", &e);
                false
            }
        }
    }

    /// Encodes `value` for the shared tier with `life`'s deadlines; `None`
    /// (counted as an error) when it cannot be: too large, or its
    /// `Serialize` failed or panicked (user code: the panic costs the write
    /// only). The value then stays in process.
    fn encode(
        &self,
        value: &(dyn Any + Send + Sync),
        codec: ValueCodec,
        life: Life,
    ) -> Option<Vec<u8>> {
        let shared = self.inner.shared.as_deref()?;
        let now = unix_ms();
        let fresh_until = now.saturating_add(millis(life.ttl));
        let deadlines = Deadlines::new(fresh_until, fresh_until.saturating_add(millis(life.keep)));
        let encoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            (codec.encode)(value, &shared.envelope, deadlines)
        }));
        match encoded {
            Ok(Ok(bytes)) => Some(bytes),
            _ => {
                self.inner.counters.add(Counter::Error, 1);
                None
            }
        }
    }

    /// Writes `value` to the shared tier as the key's newest value (see
    /// `set_checked`), for every instance; returns whether it did.
    pub(super) async fn l2_set(
        &self,
        key: &str,
        value: &(dyn Any + Send + Sync),
        codec: ValueCodec,
        life: Life,
    ) -> bool {
        let Some((shared, store)) = self.guarded_store() else {
            return false;
        };
        let Some(bytes) = self.encode(value, codec, life) else {
            return false;
        };
        match store
            .set_checked(key, &bytes, life.ttl.saturating_add(life.keep))
            .await
        {
            Ok(()) => {
                shared.breaker.success();
                self.inner.counters.add(Counter::L2Set, 1);
                true
            }
            Err(e) => {
                self.l2_failed("SET", &e);
                false
            }
        }
    }

    /// The handle's read of the shared tier after the in-process tier
    /// missed: a fresh value of type `V`, kept in process when `route`
    /// says so. Kept through the key's flight, as a leader's find is, so
    /// that an invalidation meanwhile keeps it out of the in-process tier;
    /// while a load of the key runs, the value is only read.
    pub(super) async fn l2_get<V: Clone + Send + Sync + 'static>(
        &self,
        key: &str,
        site: &Site,
        codec: ValueCodec,
        route: Route,
    ) -> Option<V> {
        let policy = Policy::ttl(self.inner.config.default_ttl);
        let leader = match self.inner.flights.join(key) {
            crate::flight::Join::Leader(leader) => Some(leader),
            crate::flight::Join::Waiter(_) => None,
        };
        let Found::Value(value, deadlines, len) =
            self.l2_lookup::<V>(key, site, codec, &policy, false).await
        else {
            // A leader dropped unfinished: waiters look again.
            return None;
        };
        match leader {
            Some(leader) => {
                self.settle_l2_hit(leader, key, site, &policy, route, value, deadlines, len)
            }
            None => value.downcast_ref::<V>().cloned(),
        }
    }

    /// Whether the shared tier holds a fresh value under `key`, of any
    /// type; `false` when it cannot say (Redis failing, the breaker open).
    pub(super) async fn l2_exists(&self, key: &str) -> bool {
        let Some((shared, store)) = self.guarded_store() else {
            return false;
        };
        match store.read_checked(key).await {
            Ok(Read::Value { bytes, start, .. }) => {
                shared.breaker.success();
                shared
                    .envelope
                    .header(&bytes[start..])
                    .is_ok_and(|header| header.deadlines.is_fresh(unix_ms()))
            }
            Ok(Read::Absent { .. }) => {
                shared.breaker.success();
                false
            }
            Err(e) => {
                self.l2_failed("GET", &e);
                false
            }
        }
    }

    /// Invalidates `pattern` in the shared tier, for every instance; queues
    /// it when Redis cannot take it now (see `recovery`).
    pub(super) async fn l2_invalidate(&self, pattern: &Pattern) -> SharedInvalidation {
        match self.shared_store() {
            Some((_, store)) => {
                self.l2_invalidate_in(store, Pending::Pattern(pattern.clone()))
                    .await
            }
            None => SharedInvalidation::NotConfigured,
        }
    }

    /// Invalidates this cache's whole namespace in the shared tier.
    pub(super) async fn l2_clear(&self) {
        if let Some((_, store)) = self.shared_store() {
            self.l2_invalidate_in(store, Pending::Clear).await;
        }
    }

    async fn l2_invalidate_in(&self, store: &RedisL2, item: Pending) -> SharedInvalidation {
        let Some(shared) = self.inner.shared.as_deref() else {
            return SharedInvalidation::NotConfigured;
        };
        // Twice at most: the breaker may close between the look and the
        // queueing, and then the invalidation goes now.
        for _ in 0..2 {
            if !shared.breaker.takes_invalidations() {
                if self.defer(shared, &item, false) {
                    return SharedInvalidation::Queued("the circuit breaker is open".into());
                }
                continue;
            }
            return match send(store, &item).await {
                Ok(done) => {
                    shared.breaker.success();
                    let removed = done.removed().unwrap_or(0);
                    self.inner.counters.add(Counter::Delete, removed);
                    done
                }
                Err(e) => {
                    self.l2_failed("INVALIDATE", &e);
                    self.defer(shared, &item, true);
                    SharedInvalidation::Queued(e.to_string())
                }
            };
        }
        // The breaker changed twice meanwhile: queue it regardless.
        self.defer(shared, &item, true);
        SharedInvalidation::Queued("the circuit breaker is changing state".into())
    }

    /// Invalidates `pattern` in the shared tier from a plain `fn`, and
    /// waits for it (see [`Shared::block_on`]). Queued when no runtime can
    /// run it.
    pub(super) fn l2_invalidate_blocking(&self, pattern: &Pattern) -> SharedInvalidation {
        let Some(shared) = self.inner.shared.as_deref() else {
            return SharedInvalidation::NotConfigured;
        };
        match self.block_on_shared(self.l2_invalidate(pattern)) {
            Some(done) => done,
            None => {
                self.defer(shared, &Pending::Pattern(pattern.clone()), true);
                SharedInvalidation::Queued("no tokio runtime could be made for redis".into())
            }
        }
    }

    /// Runs `future` on the shared tier from a plain `fn` (see
    /// [`Shared::block_on`]); `None` without a shared tier, or when no
    /// runtime could be made (counted as an error of the shared tier).
    pub(super) fn block_on_shared<F>(&self, future: F) -> Option<F::Output>
    where
        F: std::future::Future + Send,
        F::Output: Send,
    {
        let done = self.inner.shared.as_deref()?.block_on(future);
        if done.is_none() {
            self.inner.counters.add(Counter::L2Error, 1);
        }
        done
    }

    /// Counts a failed call, tells the hooks, and tells the breaker.
    pub(super) fn l2_failed(&self, op: &'static str, error: &L2Error) {
        self.inner.counters.add(Counter::L2Error, 1);
        self.emit(Event::L2Error { op, error });
        if let Some(shared) = self.inner.shared.as_deref() {
            *shared.last_error.lock() = Some(error.to_string());
            if let Some(opened) = shared.breaker.failure() {
                self.breaker_changed(opened);
            }
        }
    }

    /// The shared tier's part of [`Cache::health`].
    pub(super) async fn shared_health(&self, health: &mut Health) {
        let Some(shared) = self.inner.shared.as_deref() else {
            return;
        };
        health.pending_invalidations = shared.pending.lock().len() as u64;
        if let Some((shared, store)) = self.guarded_store() {
            match store.ping().await {
                Ok(rtt) => {
                    shared.breaker.success();
                    health.redis_rtt = Some(rtt);
                    if store.is_cluster_node().await.unwrap_or(false) {
                        health.redis_error =
                            Some(crate::l2::redis::CLUSTER_NOT_DECLARED.to_owned());
                    }
                }
                Err(e) => {
                    self.l2_failed("PING", &e);
                    health.redis_error = Some(e.to_string());
                }
            }
        }
        let breaker = shared.breaker.state();
        health.breaker = Some(breaker);
        if breaker != BreakerState::Closed && health.redis_error.is_none() {
            health.redis_error = shared.last_error.lock().clone();
        }
        health.in_sync = self.in_sync();
        if breaker != BreakerState::Closed
            || health.redis_rtt.is_none()
            || health.redis_error.is_some()
            || !health.in_sync
        {
            health.status = HealthStatus::Degraded;
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
