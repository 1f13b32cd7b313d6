//! The load engine's side of the shared tier: which tiers a function's
//! values take, and what a value found in Redis does in process. The
//! shared tier itself is [`SharedTier`](crate::shared::SharedTier); the
//! cache is its [`Report`] and, at the root, its [`Root`].

use std::sync::Arc;
use std::time::Duration;

use super::engine::{Settled, SharedMiss};
use super::{Cache, Inner, Leader, Policy, Route};
use crate::clock::{self, Ticks};
use crate::entry::Entry;
use crate::entry::{AnyValue, Life};
use crate::hooks::Event;
use crate::l1::L1Engine;
use crate::pattern::Pattern;
use crate::shared::{
    kept_until_ms, unix_ms, Found, LockGuard, Report, Root, Stored, Ticket, ValueCodec,
};
use crate::site::Site;
use crate::stats::Counter;

/// What the leader does after its look in the shared tier.
#[allow(clippy::large_enum_variant)] // returned once per miss, at once taken apart
pub(super) enum Led<'a, V> {
    /// Answer with this value.
    Value(V),
    /// Look again (the value found was of another type).
    Retry,
    /// Call the origin, with what the look left for it.
    Origin(Leader<'a>, SharedMiss),
}

impl Report for Inner {
    fn count(&self, counter: Counter, n: u64) {
        self.counters.add(counter, n);
    }

    fn emit(&self, event: Event<'_>) {
        self.emit(event);
    }
}

impl Root for Inner {
    fn invalidate_local(self: Arc<Self>, pattern: &Pattern) {
        Cache { inner: self }.invalidate_now(pattern);
    }

    fn invalidate_tag_local(self: Arc<Self>, tag: &str) {
        let cache = Cache { inner: self };
        cache.invalidate_tag_now(tag);
        cache.tag_invalidated(tag);
    }

    fn clear_local(self: Arc<Self>) {
        Cache { inner: self }.clear_local();
    }
}

impl Cache {
    /// Starts the backplane of the shared tier, if any (see
    /// [`SharedTier::ensure_backplane`](crate::shared::SharedTier::ensure_backplane)).
    pub(super) fn ensure_backplane(&self) {
        if let Some(shared) = &self.inner.shared {
            shared.ensure_backplane();
        }
    }

    /// The leader's look in the shared tier for a function of `policy`;
    /// a value fresh for less than `ahead` more is looked past (see
    /// [`SharedTier::lookup`](crate::shared::SharedTier::lookup)).
    pub(super) async fn l2_lead<V: 'static>(
        &self,
        key: &str,
        site: &Site,
        codec: ValueCodec,
        policy: &Policy,
        ahead: Duration,
    ) -> (Found, Option<LockGuard>) {
        let Some(shared) = &self.inner.shared else {
            return (Found::Miss(None, None), None);
        };
        let (_, keep) = self.stale_and_keep(policy);
        shared
            .lead::<V>(&*self.inner, key, site, codec, (keep, ahead), policy.lock)
            .await
    }

    /// Fills the shared tier after an origin call; whether it stored.
    pub(super) async fn l2_fill(
        &self,
        key: &str,
        ticket: Ticket,
        value: (&(dyn std::any::Any + Send + Sync), &[Box<str>]),
        codec: ValueCodec,
        life: Life,
    ) -> bool {
        let Some(shared) = &self.inner.shared else {
            return false;
        };
        shared
            .fill(&*self.inner, key, ticket, value, codec, life)
            .await
    }

    /// What the leader does after its look in the shared tier: a fresh
    /// value there is published (and kept in process, see
    /// [`settle_l2_hit`](Self::settle_l2_hit)); otherwise the origin is
    /// called, with what the look left for it.
    #[allow(clippy::too_many_arguments)] // the load's key, labels, policy and find
    pub(super) fn led<'a, V: Clone + Send + Sync + 'static>(
        &'a self,
        leader: Leader<'a>,
        key: &str,
        site: &Site,
        policy: &Policy,
        route: Route,
        codec: ValueCodec,
        found: (Found, Option<LockGuard>),
    ) -> Led<'a, V> {
        match found {
            (Found::Value(value, stored), _) => {
                // The lookup checked the type.
                match self.settle_l2_hit(leader, key, site, policy, route, value, stored) {
                    Some(value) => Led::Value(value),
                    None => Led::Retry,
                }
            }
            (Found::Miss(ticket, kept), lock) => Led::Origin(
                leader,
                SharedMiss {
                    kept,
                    lock,
                    ticket: ticket.zip(Some(codec)),
                },
            ),
        }
    }

    /// The fill of the shared tier that a leader's settled outcome calls
    /// for, if any: a value to store and a ticket from the leader's read.
    pub(super) fn fill_of<'a, O>(
        &'a self,
        key: &'a str,
        settled: &'a Settled<'_, O>,
        miss: &SharedMiss,
    ) -> Option<impl std::future::Future<Output = bool> + Send + 'a> {
        let (ticket, codec) = miss.ticket?;
        let (value, life, tags) = settled.fill.as_ref()?;
        let tags = tags.as_deref().unwrap_or_default();
        Some(self.l2_fill(key, ticket, (&**value, tags), codec, *life))
    }

    /// Runs `future` on the shared tier from a plain `fn`.
    pub(super) fn block_on_shared<F>(&self, future: F) -> Option<F::Output>
    where
        F: std::future::Future + Send,
        F::Output: Send,
    {
        self.inner
            .shared
            .as_deref()?
            .block_on_counted(&*self.inner, future)
    }

    /// Which tiers a `#[cached]` function with `tier` and `codec` (present
    /// when its value is serde) reads and fills in this cache. A function
    /// whose values could go to Redis but are not serde is marked on its
    /// `site`, and said once (see [`Health::local_only`]).
    #[inline]
    pub(crate) fn route(
        &self,
        tier: super::TierChoice,
        codec: Option<ValueCodec>,
        site: &Site,
    ) -> Route {
        use super::TierChoice;
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
            TierChoice::Default => (shared.fills_l1(), true),
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
        Stored {
            deadlines,
            len: encoded_len,
            tags,
        }: Stored,
    ) -> Option<V> {
        let tags = Cache::entry_tags(leader.born(), tags);
        let entry = route.l1.then(|| {
            let now_ms = unix_ms();
            let fresh = Duration::from_millis(deadlines.fresh_until_ms.saturating_sub(now_ms));
            // The envelope's stale deadline is the end of the window its
            // writer kept it for (stale or fail-safe); the windows served
            // here are this function's.
            let kept = Duration::from_millis(
                kept_until_ms(&deadlines, self.stale_and_keep(policy).1).saturating_sub(now_ms),
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
                tags,
            }
        });
        let entry = entry.and_then(|entry| self.storable(entry));
        let insert = || entry.is_some_and(|entry| self.inner.l1.insert(key, entry));
        if leader.finish(Arc::clone(&shared), insert) == Some(true) {
            self.stored(site);
        }
        // Without waiters or an in-process copy, the decoded value is
        // handed over as it is, not cloned.
        let value = shared.downcast::<V>().ok()?;
        Some(Arc::try_unwrap(value).unwrap_or_else(|shared| V::clone(&shared)))
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
        let shared = self.inner.shared.as_deref()?;
        let (_, keep) = self.stale_and_keep(&policy);
        let found = shared.lookup::<V>(&*self.inner, key, site, codec, keep, Duration::ZERO, false);
        let Found::Value(value, stored) = found.await else {
            // A leader dropped unfinished: waiters look again.
            return None;
        };
        match leader {
            Some(leader) => self.settle_l2_hit(leader, key, site, &policy, route, value, stored),
            None => value.downcast_ref::<V>().cloned(),
        }
    }

    /// [`l2_get`](Self::l2_get) for many keys (no key twice), in one round
    /// trip per group: a value per key, in order.
    pub(super) async fn l2_get_many<V: Clone + Send + Sync + 'static>(
        &self,
        keys: &[&str],
        site: &Site,
        codec: ValueCodec,
        route: Route,
    ) -> Vec<Option<V>> {
        let policy = Policy::ttl(self.inner.config.default_ttl);
        let leaders: Vec<Option<Leader<'_>>> = keys
            .iter()
            .map(|key| match self.inner.flights.join(key) {
                crate::flight::Join::Leader(leader) => Some(leader),
                crate::flight::Join::Waiter(_) => None,
            })
            .collect();
        let Some(shared) = self.inner.shared.as_deref() else {
            return keys.iter().map(|_| None).collect();
        };
        let (_, keep) = self.stale_and_keep(&policy);
        let finds = shared
            .lookup_many::<V>(&*self.inner, keys, site, codec, keep)
            .await;
        keys.iter()
            .zip(leaders)
            .zip(finds)
            .map(|((key, leader), find)| {
                let Found::Value(value, stored) = find else {
                    return None;
                };
                match leader {
                    Some(leader) => {
                        self.settle_l2_hit(leader, key, site, &policy, route, value, stored)
                    }
                    None => value.downcast_ref::<V>().cloned(),
                }
            })
            .collect()
    }
}
