//! The load engine: lookups, single flight, storing and invalidation in
//! process, which every entry point (the handle, `#[cached]`) goes through.

use super::*;

/// Where a function's values live (`tier = ".."` of `#[cached]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TierChoice {
    /// Both tiers when an L2 is configured.
    Default,
    /// The in-process tier only.
    L1,
    /// The shared tier only.
    L2,
    /// Both tiers.
    Both,
}

/// Which tiers one load reads and fills.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Route {
    /// Keep the value in process.
    pub(crate) l1: bool,
    /// Read and fill the shared tier, with this codec.
    #[cfg(feature = "redis")]
    pub(crate) l2: Option<ValueCodec>,
}

impl Route {
    /// The in-process tier only.
    pub(crate) const L1: Route = Route {
        l1: true,
        #[cfg(feature = "redis")]
        l2: None,
    };
}

/// What the leader's load settled to, and what it may write to the shared
/// tier: the value to store, if any (see `settle`). The
/// flight stays registered (done) until this drops, so that callers arriving
/// while the leader writes to the shared tier get its value.
pub(super) struct Settled<'a, O> {
    pub(super) out: O,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(super) fill: Option<(AnyValue, Life, Option<crate::tags::TagList>)>,
    _held: Option<Held<'a>>,
}

/// How one load stores its value.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Policy {
    pub(crate) ttl: Option<Duration>,
    pub(crate) stale: Option<Duration>,
    pub(crate) l1_ttl: Option<Duration>,
    pub(crate) jitter_percent: u8,
    pub(crate) cache_none: bool,
    /// Measures the heap contents of the values, when they are `Serialize`.
    pub(crate) weigher: Option<Weigher>,
    /// How long after `ttl` a value is kept to answer when the origin
    /// fails (at least the stale window).
    pub(crate) fail_safe: Option<Duration>,
    /// Single flight across instances, through a lock in Redis.
    pub(crate) lock: bool,
}

impl Policy {
    pub(crate) const fn ttl(ttl: Duration) -> Policy {
        Policy {
            ttl: Some(ttl),
            stale: None,
            l1_ttl: None,
            jitter_percent: 0,
            cache_none: false,
            weigher: None,
            fail_safe: None,
            lock: false,
        }
    }
}

/// What a lookup found.
pub(crate) enum Lookup<V> {
    Fresh(V),
    Stale(V),
    Miss,
}

/// What a waiter does after its flight landed.
pub(super) enum Waited<O> {
    /// The leader's value, or its shared error.
    Done(O),
    /// The leader's origin call failed with an error that cannot be shared,
    /// or its value is of another type (two functions sharing a key): make
    /// one's own call, now.
    CallOrigin,
    /// The leader left or panicked: look again, one caller leads.
    TryAgain,
}

/// What a leader's look in the shared tier left for its origin call: the
/// value Redis kept past its freshness, the lock it holds, the ticket to
/// fill with.
#[derive(Default)]
pub(super) struct SharedMiss {
    #[cfg(feature = "redis")]
    pub(super) kept: Option<AnyValue>,
    #[cfg(feature = "redis")]
    pub(super) lock: Option<crate::shared::LockGuard>,
    #[cfg(feature = "redis")]
    pub(super) ticket: Option<(crate::shared::Ticket, ValueCodec)>,
}

impl SharedMiss {
    /// Lets the distributed lock go (by a task, off the answer): vacated
    /// when the origin's value did not reach Redis.
    #[cfg(feature = "redis")]
    pub(super) fn release(self, stored: bool) {
        if let Some(mut lock) = self.lock {
            lock.vacate = !stored;
        }
    }

    pub(super) fn take_kept(&mut self) -> Option<AnyValue> {
        #[cfg(feature = "redis")]
        return self.kept.take();
        #[cfg(not(feature = "redis"))]
        None
    }
}

/// One step of a load: a value, or the flight to lead or to wait on.
pub(super) enum Step<'a, V> {
    Value(V),
    Lead(Leader<'a>),
    Wait(Arc<Flight>),
}

impl Cache {
    /// Looks `key` up in the in-process tier. Counts fresh hits only; the
    /// caller counts the rest once it knows what it served.
    #[inline(always)]
    pub(crate) fn lookup<V: Clone + 'static>(&self, key: &str, site: &Site) -> Lookup<V> {
        // Not in step with the other instances: the in-process tier may hold
        // what they invalidated meanwhile.
        if !self.in_sync() {
            return self.lookup_degraded(key, site);
        }
        let now = self.inner.clock.now();
        let found = self.read_l1(key, |entry| {
            if now >= entry.stale_until {
                return Lookup::Miss;
            }
            // A value of another type (two functions sharing a key template)
            // is a miss; the load overwrites it.
            match entry.value.downcast_ref::<V>() {
                None => Lookup::Miss,
                Some(value) if now < entry.fresh_until => Lookup::Fresh(value.clone()),
                Some(value) => Lookup::Stale(value.clone()),
            }
        });
        match found {
            Some(fresh @ Lookup::Fresh(_)) => {
                self.hit(site);
                fresh
            }
            Some(other) => other,
            None => Lookup::Miss,
        }
    }

    /// Reads `key`'s entry in process, unless a tag invalidation covers it
    /// (see [`crate::tags`]): then it is absent (and removed, lazily, by
    /// the next store or eviction).
    #[inline]
    pub(crate) fn read_l1<R>(&self, key: &str, f: impl FnOnce(&Entry) -> R) -> Option<R> {
        self.inner
            .l1
            .read(key, |entry| match &entry.tags {
                Some(tags) if self.inner.tag_stamps.covers(tags) => None,
                _ => Some(f(entry)),
            })
            .flatten()
    }

    /// Counts and reports a hit in process.
    #[inline]
    fn hit(&self, site: &Site) {
        self.count(site, Counter::Hit, 1);
        if self.inner.hooks.is_some() {
            self.emit(Event::Hit {
                template: site.template,
                tier: Tier::L1,
            });
        }
    }

    /// [`lookup`](Self::lookup) out of step with the other instances: a
    /// fresh value, with `degraded_l1_ttl`, if it was stored out of step
    /// (its deadlines were cut to that) or before, less than that long
    /// ago; a miss otherwise.
    #[cold]
    #[inline(never)]
    fn lookup_degraded<V: Clone + 'static>(&self, key: &str, site: &Site) -> Lookup<V> {
        let Some(ttl) = self.degraded_ttl() else {
            return Lookup::Miss;
        };
        let held_before = self.lapsed_within(ttl);
        let now = self.inner.clock.now();
        let found = self.read_l1(key, |entry| {
            let trusted = entry.is_degraded() || held_before;
            (trusted && now < entry.fresh_until)
                .then(|| entry.value.downcast_ref::<V>().cloned())
                .flatten()
        });
        match found.flatten() {
            Some(value) => {
                self.hit(site);
                Lookup::Fresh(value)
            }
            None => Lookup::Miss,
        }
    }

    /// `degraded_l1_ttl`, when set.
    fn degraded_ttl(&self) -> Option<Duration> {
        let ttl = self.inner.config.degraded_l1_ttl;
        (!ttl.is_zero()).then_some(ttl)
    }

    /// Whether this cache fell out of step less than `grace` ago.
    fn lapsed_within(&self, grace: Duration) -> bool {
        #[cfg(feature = "redis")]
        if let Some(shared) = &self.inner.shared {
            return shared.lapsed_within(grace);
        }
        let _ = grace;
        false
    }

    /// `entry`, to store in process now: as it is while in step with the
    /// other instances; out of step, with `degraded_l1_ttl`, fresh for at
    /// most that long and marked so, and without it, not at all.
    pub(super) fn storable(&self, entry: Entry) -> Option<Entry> {
        if self.in_sync() {
            return Some(entry);
        }
        let ttl = self.degraded_ttl()?;
        Some(entry.degraded(self.inner.clock.now(), clock::ticks(ttl)))
    }

    /// [`lookup`](Self::lookup) for a function whose values take `route`:
    /// one that keeps nothing in process does not look there for a hit (it
    /// could only miss, or find what another writer put under its key).
    #[inline(always)]
    pub(crate) fn lookup_on<V: Clone + 'static>(
        &self,
        route: Route,
        key: &str,
        site: &Site,
    ) -> Lookup<V> {
        if route.l1 {
            self.lookup(key, site)
        } else {
            Lookup::Miss
        }
    }

    /// [`lookup_on`](Self::lookup_on) for a function with
    /// `refresh_ahead`: also whether a fresh value found is due for its
    /// refresh (fresh for less than `ahead` more).
    pub(crate) fn lookup_due<V: Clone + 'static>(
        &self,
        route: Route,
        key: &str,
        site: &Site,
        ahead: Duration,
    ) -> (Lookup<V>, bool) {
        let found = self.lookup_on::<V>(route, key, site);
        // Out of step, an in-process value lives `degraded_l1_ttl` at
        // most: refreshing it ahead would call the origin on every hit.
        if !matches!(found, Lookup::Fresh(_)) || ahead.is_zero() || !self.in_sync() {
            return (found, false);
        }
        let due_at = self.inner.clock.now().saturating_add(clock::ticks(ahead));
        let due = self.read_l1(key, |entry| due_at >= entry.fresh_until);
        (found, due.unwrap_or(false))
    }

    /// Refreshes `key` ahead of its expiry while its value is still
    /// served, unless a load of it is running: as a leader whose look in
    /// the shared tier takes a value there only if it is fresh for at least
    /// `ahead` more (another instance refreshed it), and otherwise calls
    /// the origin and stores its value as any load does (no stale fill;
    /// with `lock`, one instance at a time). A failed origin leaves the
    /// value in place, and answers nobody (no fail-safe is counted).
    pub(crate) async fn refresh_ahead<O, F, Fut>(
        &self,
        key: &str,
        site: &Site,
        policy: &Policy,
        route: Route,
        ahead: Duration,
        origin: F,
    ) where
        O: Outcome,
        F: FnOnce() -> Fut,
        Fut: Future<Output = O>,
    {
        let Join::Leader(leader) = self.inner.flights.join(key) else {
            return;
        };
        // Another refresh may have landed since the hit that started this.
        let due_at = self.inner.clock.now().saturating_add(clock::ticks(ahead));
        if self.read_l1(key, |entry| due_at < entry.fresh_until) == Some(true) {
            return;
        }
        self.count(site, Counter::RefreshAhead, 1);
        self.emit(Event::RefreshAhead {
            template: site.template,
        });
        #[cfg_attr(not(feature = "redis"), allow(unused_mut))]
        let (mut leader, mut miss) = (leader, SharedMiss::default());
        #[cfg(feature = "redis")]
        if let Some(codec) = route.l2 {
            self.ensure_backplane();
            let found = Box::pin(self.l2_lead::<O::Value>(key, site, codec, policy, ahead)).await;
            match self.led::<O::Value>(leader, key, site, policy, route, codec, found) {
                Led::Value(_) | Led::Retry => return,
                Led::Origin(still, found) => (leader, miss) = (still, found),
            }
        }
        #[cfg(not(feature = "redis"))]
        let _ = (ahead, &miss);
        let started = self.origin_call(site);
        let out = Box::pin(leader.lead_future(origin())).await;
        self.origin_returned(site, started);
        if out.is_failure() {
            leader.fail(None);
            #[cfg(feature = "redis")]
            miss.release(false);
            return;
        }
        let settled = self.settle(leader, key, site, policy, route, out);
        #[cfg(feature = "redis")]
        {
            let stored = match self.fill_of(key, &settled, &miss) {
                Some(fill) => fill.await,
                None => false,
            };
            miss.release(stored);
        }
        drop(settled);
    }

    /// Decides what this caller does next for `key`.
    /// `found` is what a lookup of `key` just returned.
    pub(super) fn step<V: Clone + Send + Sync + 'static>(
        &self,
        found: Lookup<V>,
        key: &str,
        site: &Site,
        function: &str,
        route: Route,
    ) -> Step<'_, V> {
        let stale = match found {
            Lookup::Fresh(v) => return Step::Value(v),
            Lookup::Stale(v) => Some(v),
            Lookup::Miss => None,
        };
        #[cfg(feature = "redis")]
        self.ensure_backplane();
        match self.inner.flights.join(key) {
            Join::Leader(leader) => {
                // A load may have finished between the lookup and the join.
                if let Lookup::Fresh(v) = self.lookup_on::<V>(route, key, site) {
                    let _ = leader.finish(Arc::new(v.clone()), || false);
                    return Step::Value(v);
                }
                self.count(site, Counter::Miss, 1);
                self.emit(Event::Miss {
                    template: site.template,
                });
                Step::Lead(leader)
            }
            Join::Waiter(flight) => {
                if let Some(v) = stale {
                    // Stale-while-revalidate: another caller is refreshing.
                    self.count(site, Counter::Hit, 1);
                    self.count(site, Counter::StaleServed, 1);
                    self.emit(Event::StaleServed {
                        template: site.template,
                    });
                    return Step::Value(v);
                }
                if flight.is_led_here() {
                    panic!(
                        "cache_runtime: `{function}` asked for key `{key}` while computing that same key; \
                         it would wait for itself forever. Give the inner call a different key, or call \
                         the uncached code directly."
                    );
                }
                Step::Wait(flight)
            }
        }
    }

    /// What a waiter does once the flight it joined has landed.
    pub(super) fn joined<O: Outcome>(&self, joined: Joined, site: &Site) -> Waited<O> {
        let answer = match joined {
            Joined::Value(value) => match value.downcast_ref::<O::Value>() {
                Some(value) => Waited::Done(O::from_value(value.clone())),
                // Another function's value under the same key. Its flight
                // may stay registered a while (see `Leader::finish_held`):
                // trying again would find it again.
                None => Waited::CallOrigin,
            },
            Joined::Failed(error) => match error.as_ref().and_then(O::from_error) {
                Some(shared) => Waited::Done(shared),
                None => Waited::CallOrigin,
            },
            Joined::Retry => return Waited::TryAgain,
        };
        self.count(site, Counter::Miss, 1);
        self.emit(Event::Miss {
            template: site.template,
        });
        answer
    }

    /// Counts an origin call about to start; returns when it started.
    pub(super) fn origin_call(&self, site: &Site) -> Instant {
        self.count(site, Counter::Load, 1);
        Instant::now()
    }

    pub(super) fn origin_returned(&self, site: &Site, started: Instant) {
        let elapsed = started.elapsed();
        site.origin.record(elapsed);
        self.emit(Event::OriginCall {
            template: site.template,
            elapsed,
        });
    }

    /// Whether the cache takes `key`: at most
    /// [`MAX_KEY_BYTES`](crate::MAX_KEY_BYTES) long. A longer key is
    /// counted on `site` and said once per site; its call goes on uncached.
    #[inline]
    pub(crate) fn fits(&self, key: &str, site: &Site) -> bool {
        if key.len() <= crate::MAX_KEY_BYTES {
            return true;
        }
        self.key_too_long(site, key.len());
        false
    }

    #[cold]
    fn key_too_long(&self, site: &Site, len: usize) {
        use std::sync::atomic::Ordering;
        if site.keys_too_long.fetch_add(1, Ordering::Relaxed) > 0 {
            return;
        }
        let message = format!(
            "cache_runtime: `{}` made a key of {len} bytes, longer than the {} a key may have (cache_runtime::MAX_KEY_BYTES): such calls are not cached; keep the long part out of the key, or put a digest of it there",
            site.template,
            crate::MAX_KEY_BYTES,
        );
        #[cfg(feature = "tracing")]
        tracing::warn!(target: "cache_runtime", cache = %self.inner.name, template = site.template, "{message}");
        #[cfg(not(feature = "tracing"))]
        eprintln!("{message}");
    }

    /// Counts on the template's site (the cache's total is the sum of its
    /// sites: see [`Cache::sum`]), so a hit counts once.
    #[inline]
    pub(super) fn count(&self, site: &Site, counter: Counter, n: u64) {
        site.counters.add(counter, n);
    }

    /// A counter of this cache: what it counted itself and what its sites
    /// counted.
    pub(super) fn sum(&self, sites: &[Arc<Site>], counter: Counter) -> u64 {
        self.inner.counters.sum(counter) + sites.iter().map(|site| site.sum(counter)).sum::<u64>()
    }

    /// The miss path of an async load: lead or join the flight for `key`.
    #[allow(clippy::too_many_arguments)] // the load's key, labels and policy
    pub(crate) async fn load<O, F, Fut>(
        &self,
        found: Lookup<O::Value>,
        key: &str,
        site: &Site,
        function: &str,
        policy: &Policy,
        route: Route,
        origin: F,
    ) -> O
    where
        O: Outcome,
        F: FnOnce() -> Fut,
        Fut: Future<Output = O>,
    {
        let mut origin = Some(origin);
        // The caller's lookup serves the first step; a retry looks again.
        let mut first = Some(found);
        loop {
            let found = first
                .take()
                .unwrap_or_else(|| self.lookup_on(route, key, site));
            match self.step(found, key, site, function, route) {
                Step::Value(v) => return O::from_value(v),
                #[cfg_attr(not(feature = "redis"), allow(unused_mut))]
                Step::Lead(mut leader) => {
                    // The leader looks in the shared tier before it calls
                    // the origin; waiters wait for either.
                    #[cfg_attr(not(feature = "redis"), allow(unused_mut))]
                    let mut miss = SharedMiss::default();
                    #[cfg(feature = "redis")]
                    if let Some(codec) = route.l2 {
                        // Boxed, as the origin call below: a hit's future
                        // stays small (moved and freed on every call).
                        // (A `let`: a temporary would live, unboxed, across
                        // the await.)
                        let lead = Box::pin(self.l2_lead::<O::Value>(
                            key,
                            site,
                            codec,
                            policy,
                            Duration::ZERO,
                        ));
                        match self.led(leader, key, site, policy, route, codec, lead.await) {
                            Led::Value(value) => return O::from_value(value),
                            Led::Retry => continue,
                            Led::Origin(still, found) => (leader, miss) = (still, found),
                        }
                    }
                    let origin = origin.take().expect("a caller leads at most once");
                    let lead =
                        Box::pin(self.lead_origin(leader, key, site, policy, route, origin, miss));
                    return lead.await;
                }
                Step::Wait(flight) => match self.joined::<O>(flight.wait().await, site) {
                    Waited::Done(out) => return self.or_kept(out, key, site),
                    // Not stored: this call is in no flight, so an
                    // invalidation could not stop a stale fill from it.
                    Waited::CallOrigin => {
                        self.origin_call(site);
                        let call = Box::pin(origin.take().expect("unused origin")());
                        let out = call.await;
                        return self.or_kept(out, key, site);
                    }
                    Waited::TryAgain => {}
                },
            }
        }
    }

    /// The leader's origin call, after the shared tier (if any) missed:
    /// settles its outcome, and fills the shared tier unless an
    /// invalidation came after `miss`'s read.
    #[allow(clippy::too_many_arguments)] // the load's key, labels and policy
    pub(super) async fn lead_origin<O, F, Fut>(
        &self,
        leader: Leader<'_>,
        key: &str,
        site: &Site,
        policy: &Policy,
        route: Route,
        origin: F,
        mut miss: SharedMiss,
    ) -> O
    where
        O: Outcome,
        F: FnOnce() -> Fut,
        Fut: Future<Output = O>,
    {
        let started = self.origin_call(site);
        #[cfg(feature = "tracing")]
        let out = {
            use tracing::Instrument;
            let span = tracing::debug_span!(target: "cache_runtime", "cache.origin", cache = %self.inner.name, template = site.template);
            leader.lead_future(origin()).instrument(span).await
        };
        #[cfg(not(feature = "tracing"))]
        let out = leader.lead_future(origin()).await;
        self.origin_returned(site, started);
        let settled = match self.after_origin(leader, key, site, policy, route, out, &mut miss) {
            Ok(answer) => return answer,
            Err(settled) => settled,
        };
        #[cfg(feature = "redis")]
        {
            let stored = match self.fill_of(key, &settled, &miss) {
                Some(fill) => fill.await,
                None => false,
            };
            miss.release(stored);
        }
        settled.out
    }

    /// What the leader does with its origin call's outcome `out`: `Ok`, an
    /// answer already given to the waiters (a kept value instead of the
    /// origin's failure, which is not stored again), or the settled outcome
    /// whose value the caller writes to the shared tier.
    #[allow(clippy::too_many_arguments)] // the load's key, labels and policy
    pub(super) fn after_origin<'a, O: Outcome>(
        &'a self,
        leader: Leader<'a>,
        key: &str,
        site: &Site,
        policy: &Policy,
        route: Route,
        out: O,
        miss: &mut SharedMiss,
    ) -> Result<O, Settled<'a, O>> {
        if out.is_failure() {
            // What the shared tier kept is no answer once an invalidation
            // covered this flight.
            let shared_kept = miss.take_kept().filter(|_| !leader.is_invalidated());
            if let Some(v) = self.kept_answer::<O::Value>(key, site, shared_kept) {
                // The waiters get it too; it is not stored again.
                let _ = leader.finish(Arc::new(v.clone()), || false);
                #[cfg(feature = "redis")]
                if let Some(lock) = &mut miss.lock {
                    lock.vacate = true;
                }
                return Ok(O::from_value(v));
            }
        }
        Err(self.settle(leader, key, site, policy, route, out))
    }

    /// The miss path of a blocking load (plain `fn`s): as
    /// [`load`](Self::load), with the shared tier reached through
    /// [`SharedTier::block_on`](crate::shared::SharedTier::block_on) and the origin
    /// called on the caller's thread.
    #[allow(clippy::too_many_arguments)] // the load's key, labels and policy
    pub(crate) fn load_blocking<O, F>(
        &self,
        found: Lookup<O::Value>,
        key: &str,
        site: &Site,
        function: &str,
        policy: &Policy,
        route: Route,
        origin: F,
    ) -> O
    where
        O: Outcome,
        F: FnOnce() -> O,
    {
        let mut origin = Some(origin);
        // The caller's lookup serves the first step; a retry looks again.
        let mut first = Some(found);
        loop {
            let found = first
                .take()
                .unwrap_or_else(|| self.lookup_on(route, key, site));
            match self.step(found, key, site, function, route) {
                Step::Value(v) => return O::from_value(v),
                #[cfg_attr(not(feature = "redis"), allow(unused_mut))]
                Step::Lead(mut leader) => {
                    #[cfg_attr(not(feature = "redis"), allow(unused_mut))]
                    let mut miss = SharedMiss::default();
                    #[cfg(feature = "redis")]
                    if let Some(codec) = route.l2 {
                        let lead =
                            self.l2_lead::<O::Value>(key, site, codec, policy, Duration::ZERO);
                        if let Some(found) = self.block_on_shared(lead) {
                            match self.led(leader, key, site, policy, route, codec, found) {
                                Led::Value(value) => return O::from_value(value),
                                Led::Retry => continue,
                                Led::Origin(still, found) => (leader, miss) = (still, found),
                            }
                        }
                    }
                    let origin = origin.take().expect("a caller leads at most once");
                    let started = self.origin_call(site);
                    let out = leader.lead(origin);
                    self.origin_returned(site, started);
                    let settled =
                        match self.after_origin(leader, key, site, policy, route, out, &mut miss) {
                            Ok(answer) => return answer,
                            Err(settled) => settled,
                        };
                    #[cfg(feature = "redis")]
                    {
                        let fill = self.fill_of(key, &settled, &miss);
                        let stored = fill.and_then(|fill| self.block_on_shared(fill));
                        miss.release(stored.unwrap_or(false));
                    }
                    return settled.out;
                }
                Step::Wait(flight) => match self.joined::<O>(flight.wait_blocking(), site) {
                    Waited::Done(out) => return self.or_kept(out, key, site),
                    Waited::CallOrigin => {
                        self.origin_call(site);
                        let out = origin.take().expect("unused origin")();
                        return self.or_kept(out, key, site);
                    }
                    Waited::TryAgain => {}
                },
            }
        }
    }

    /// `out`, unless it is the origin's failure and an older value is kept
    /// (see [`Cache::kept_answer`]).
    pub(super) fn or_kept<O: Outcome>(&self, out: O, key: &str, site: &Site) -> O {
        if !out.is_failure() {
            return out;
        }
        match self.kept_answer::<O::Value>(key, site, None) {
            Some(value) => O::from_value(value),
            None => out,
        }
    }

    /// The answer of a call whose origin failed, instead of its error: an
    /// older value of the key when one is kept (within `stale`, or
    /// `fail_safe`) and no invalidation removed it since. The in-process
    /// tier is looked at now, so an invalidation that came while the origin
    /// ran has removed it; `shared_kept` is what the shared tier held, when
    /// no invalidation covered the flight since it was read. Counted, and
    /// told to the hooks.
    pub(super) fn kept_answer<V: Clone + 'static>(
        &self,
        key: &str,
        site: &Site,
        shared_kept: Option<AnyValue>,
    ) -> Option<V> {
        let kept = self.kept::<V>(key).or_else(|| {
            let value = shared_kept?;
            value.downcast_ref::<V>().cloned()
        })?;
        self.count(site, Counter::FailSafe, 1);
        self.emit(Event::FailSafe {
            template: site.template,
        });
        Some(kept)
    }

    /// Counts a caller answered with the value at hand because its origin
    /// call took longer than `timeout` (the call goes on).
    pub(crate) fn origin_timed_out(&self, site: &Site) {
        self.count(site, Counter::OriginTimeout, 1);
        self.count(site, Counter::StaleServed, 1);
        self.emit(Event::StaleServed {
            template: site.template,
        });
    }

    /// The value the in-process tier keeps for `key`, fresh, stale or only
    /// kept for failures.
    pub(crate) fn kept<V: Clone + 'static>(&self, key: &str) -> Option<V> {
        self.with_kept(key, V::clone)
    }

    /// Whether the in-process tier keeps a value of type `V` for `key` (no
    /// clone).
    pub(crate) fn is_kept<V: 'static>(&self, key: &str) -> bool {
        self.with_kept::<V, _>(key, |_| ()).is_some()
    }

    pub(super) fn with_kept<V: 'static, R>(&self, key: &str, f: impl FnOnce(&V) -> R) -> Option<R> {
        if !self.in_sync() {
            return None;
        }
        let now = self.inner.clock.now();
        self.read_l1(key, |entry| {
            (now < entry.keep_until())
                .then(|| entry.value.downcast_ref::<V>().map(f))
                .flatten()
        })
        .flatten()
    }

    /// Publishes the leader's outcome and stores it when it is cacheable.
    pub(super) fn settle<'a, O: Outcome>(
        &'a self,
        leader: Leader<'a>,
        key: &str,
        site: &Site,
        policy: &Policy,
        route: Route,
        out: O,
    ) -> Settled<'a, O> {
        let adapted = leader.adapted();
        let split = match out.split(policy.cache_none) {
            // A value that lost a tag is not stored (see `context::tag`).
            Split::Store(v) if adapted.untagged => Split::Share(v),
            split => split,
        };
        match split {
            Split::Store(v) => {
                let life = self.adapted_life(policy, &adapted);
                let tags = Cache::entry_tags(leader.born(), adapted.tags);
                let shared: AnyValue = Arc::new(v.clone());
                // Out of step with the other instances, the in-process tier
                // keeps it for `degraded_l1_ttl` at most (or not at all).
                let entry = route.l1.then(|| {
                    let weight = self.weigh(&leader, key, &v, policy);
                    let mut entry = self.entry(Arc::clone(&shared), weight, life, policy);
                    entry.tags = tags.clone();
                    entry
                });
                let entry = entry.and_then(|entry| self.storable(entry));
                let insert = || entry.is_some_and(|entry| self.inner.l1.insert(key, entry));
                let (stored, held) = leader.finish_held(Arc::clone(&shared), insert);
                if stored == Some(true) {
                    self.stored(site);
                }
                // The shared tier is filled even when an invalidation covered
                // the flight (then nothing was stored in process): its fill
                // checks the generation the leader read before its origin
                // call against every invalidation that reached Redis, and one
                // that did not (Redis away) keeps the breaker open, so no fill
                // goes out until it is replayed. What covered the flight may
                // also be no invalidation at all: the backplane emptying the
                // in-process tier as it subscribes.
                let fill = Some((shared, life, tags.map(|tags| Arc::clone(&tags.names))));
                Settled {
                    out: O::from_value(v),
                    fill,
                    _held: Some(held),
                }
            }
            Split::Share(v) => {
                let _ = leader.finish(Arc::new(v.clone()), || false);
                Settled {
                    out: O::from_value(v),
                    fill: None,
                    _held: None,
                }
            }
            Split::Fail(out, error) => {
                leader.fail(error);
                Settled {
                    out,
                    fill: None,
                    _held: None,
                }
            }
        }
    }

    /// The weight of a value about to be stored. The weigher runs the
    /// value's `Serialize`, user code: marked as this flight's leader (a
    /// `Serialize` that asks for this key panics instead of waiting on
    /// itself), and a panic of it costs only the measure (the value weighs
    /// its inline size, and an error is counted), never the caller's value.
    pub(super) fn weigh<V: Any + Send + Sync>(
        &self,
        leader: &Leader<'_>,
        key: &str,
        value: &V,
        policy: &Policy,
    ) -> u32 {
        let Some(weigher) = policy.weigher else {
            return Entry::weight_of(key, value, None);
        };
        let measured = leader.lead(|| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                Entry::weight_of(key, value, Some(weigher))
            }))
        });
        measured.unwrap_or_else(|_| {
            self.inner.counters.add(Counter::Error, 1);
            Entry::weight_of(key, value, None)
        })
    }

    pub(super) fn store(&self, key: &str, entry: Entry, site: &Site) {
        if self.inner.l1.insert(key, entry) {
            self.stored(site);
        }
    }

    /// Counts a stored value and tells the hooks (never under a lock: a
    /// hook may call back into the cache).
    pub(super) fn stored(&self, site: &Site) {
        self.count(site, Counter::Set, 1);
        self.emit(Event::Set {
            template: site.template,
        });
    }

    /// How long a value stored now under `policy` lives.
    pub(super) fn life(&self, policy: &Policy) -> Life {
        let ttl = policy.ttl.unwrap_or(self.inner.config.default_ttl);
        let (stale, keep) = self.stale_and_keep(policy);
        Life {
            ttl: jittered(ttl, policy.jitter_percent),
            stale,
            keep,
        }
    }

    /// How long a value stored now under `policy` lives, with what its
    /// origin call chose through [`crate::context`] in place of the
    /// function's own.
    fn adapted_life(&self, policy: &Policy, adapted: &crate::flight::Adapted) -> Life {
        let policy = Policy {
            ttl: adapted.ttl.or(policy.ttl),
            stale: adapted.stale.or(policy.stale),
            fail_safe: adapted.fail_safe.or(policy.fail_safe),
            ..*policy
        };
        self.life(&policy)
    }

    /// How long past its freshness a value of `policy` is served while it
    /// refreshes (`stale`), and kept to answer a failing origin.
    pub(super) fn stale_and_keep(&self, policy: &Policy) -> (Duration, Duration) {
        let stale = policy.stale.unwrap_or(self.inner.config.stale_ttl);
        (
            stale,
            policy.fail_safe.map_or(stale, |keep| keep.max(stale)),
        )
    }

    /// The in-process entry of a value stored now for `life`.
    pub(super) fn entry(&self, value: AnyValue, weight: u32, life: Life, policy: &Policy) -> Entry {
        let Life { ttl, stale, keep } = life;
        let l1_ttl = policy.l1_ttl.map_or(ttl, |l1| l1.min(ttl));
        let now: Ticks = self.inner.clock.now();
        let fresh_until = now.saturating_add(clock::ticks(l1_ttl));
        let after_ttl = |span: Duration| {
            if span.is_zero() {
                fresh_until
            } else {
                now.saturating_add(clock::ticks(ttl.saturating_add(span)))
            }
        };
        let stale_until = after_ttl(stale);
        Entry {
            value,
            fresh_until,
            stale_until,
            weight: weight.max(self.inner.min_weight),
            kept_secs: Entry::kept_secs(stale_until, after_ttl(keep)),
            tags: None,
        }
    }

    pub(super) fn remove_key(&self, key: &str) -> bool {
        self.inner.flights.invalidate_key(key);
        let removed = self.inner.l1.remove(key);
        if removed {
            self.inner.counters.add(Counter::Delete, 1);
        }
        removed
    }

    /// Applies `pattern` to this cache and its named caches.
    pub(crate) fn invalidate_now(&self, pattern: &Pattern) -> u64 {
        let removed = match pattern.exact_key() {
            Some(key) => u64::from(self.remove_key(key)),
            None => {
                self.inner.flights.invalidate_matching(pattern);
                let n = self.inner.l1.remove_matching(pattern);
                self.inner.counters.add(Counter::Delete, n);
                n
            }
        };
        self.emit(Event::Invalidate {
            pattern: pattern.as_str(),
            removed,
        });
        removed
            + self
                .children()
                .iter()
                .map(|c| c.invalidate_now(pattern))
                .sum::<u64>()
    }
}

/// `ttl` shortened by a random share of up to `percent`%, so that keys
/// filled together do not expire together.
fn jittered(ttl: Duration, percent: u8) -> Duration {
    if percent == 0 {
        return ttl;
    }
    let max_cut = ttl.as_nanos() * u128::from(percent.min(100)) / 100;
    let cut = fastrand::u128(0..=max_cut);
    ttl - Duration::from_nanos(u64::try_from(cut).unwrap_or(u64::MAX))
}
