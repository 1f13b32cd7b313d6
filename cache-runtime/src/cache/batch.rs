//! Batch loads: many keys at once, through the same tiers, flights and
//! coherence checks as one key, with one origin call for the keys that no
//! tier holds and no other caller is loading.

use std::hash::Hash;

use super::engine::{SharedMiss, Waited};
use super::*;
use crate::outcome::Plain;

/// How many times a batch joins the flights of keys whose loads another
/// caller led and that gave it nothing to use (that caller's origin failed,
/// or it left): after that, those keys are loaded without storing them.
const MAX_ROUNDS: usize = 4;

/// What a batch knows of one id: nothing yet, or its answer (`None` when
/// the origin has no value for it).
type Slot<V> = Option<Option<V>>;

/// How a batch stores the answer for one id, as the outcome of a load of
/// its key: `Option<V>` (a batch function's: an id without a value is
/// remembered with `none = true`), or `V` itself ([`Plain`], warming: an
/// id without a value stores nothing).
pub(crate) trait BatchSlot<V>: Outcome + Clone {
    /// The outcome of an id's load from what the origin answered for it;
    /// `None` to store nothing.
    fn answer(found: Option<V>) -> Option<Self>;
    /// The value a stored outcome holds for its id.
    fn value(stored: Self::Value) -> Option<V>;
    /// What the outcome stores.
    fn into_stored(self) -> Self::Value;
}

impl<V: Clone + Send + Sync + 'static> BatchSlot<V> for Option<V> {
    fn answer(found: Option<V>) -> Option<Self> {
        Some(found)
    }
    fn value(stored: Option<V>) -> Option<V> {
        stored
    }
    fn into_stored(self) -> Option<V> {
        self
    }
}

impl<V: Clone + Send + Sync + 'static> BatchSlot<V> for Plain<V> {
    fn answer(found: Option<V>) -> Option<Self> {
        found.map(Plain)
    }
    fn value(stored: V) -> Option<V> {
        Some(stored)
    }
    fn into_stored(self) -> V {
        self.0
    }
}

/// One batch load: its ids and their keys, where it counts, how it
/// stores, and what it knows so far.
struct Batch<'a, K, V, F> {
    ids: &'a [K],
    keys: &'a [&'a str],
    site: &'a Site,
    policy: &'a Policy,
    route: Route,
    origin: F,
    /// By id: its answer, once known.
    found: Vec<Slot<V>>,
    /// The ids to load without a flight, and not store.
    uncached: Vec<usize>,
}

impl Cache {
    /// The values of `ids`, whose keys are `keys` (same order, no id
    /// twice), each stored under its own key as `O` says (see
    /// [`BatchSlot`]).
    ///
    /// The in-process tier answers first, then, in one round trip per
    /// group, the shared tier; `origin` is called once with the ids left.
    /// Each key has its own flight: an id another caller (a batch or a
    /// single load) is loading is waited for, after this batch's own
    /// origin call, so that two batches never wait on each other. Ids
    /// whose wait gave nothing to use go round again; after
    /// [`MAX_ROUNDS`], they are loaded and not stored.
    pub(crate) async fn load_batch<K, V, O, E, F, Fut>(
        &self,
        ids: Vec<K>,
        keys: &[&str],
        site: &Site,
        policy: &Policy,
        route: Route,
        origin: F,
    ) -> Result<Vec<(K, V)>, E>
    where
        K: Eq + Hash + Clone,
        V: Clone + Send + Sync + 'static,
        O: BatchSlot<V>,
        F: FnMut(Vec<K>) -> Fut,
        Fut: Future<Output = Result<Vec<(K, V)>, E>>,
    {
        let mut batch = Batch {
            ids: &ids,
            keys,
            site,
            policy,
            route,
            origin,
            found: ids.iter().map(|_| None).collect(),
            uncached: Vec::new(),
        };
        let mut open = Vec::new();
        for (at, key) in keys.iter().enumerate() {
            if !self.fits(key, site) {
                batch.uncached.push(at);
                continue;
            }
            match self.lookup_on::<O::Value>(route, key, site) {
                Lookup::Fresh(value) => batch.found[at] = Some(O::value(value)),
                _ => open.push(at),
            }
        }
        for _ in 0..MAX_ROUNDS {
            if open.is_empty() {
                break;
            }
            open = self
                .batch_round::<K, V, O, E, F, Fut>(&mut batch, open)
                .await?;
        }
        batch.uncached.append(&mut open);
        if !batch.uncached.is_empty() {
            let asked = batch.uncached.iter().map(|&at| ids[at].clone()).collect();
            let mut got = self
                .call_batch_origin(site, &mut batch.origin, asked, [])
                .await?;
            for &at in &batch.uncached {
                batch.found[at] = Some(got.remove(&ids[at]));
            }
        }
        let found = batch.found;
        Ok(ids
            .into_iter()
            .zip(found)
            .filter_map(|(id, slot)| Some((id, slot.flatten()?)))
            .collect())
    }

    /// One round of a batch over the ids at `open`: leads the flights of
    /// the keys nobody is loading (the shared tier, then one origin call),
    /// then waits for the others. Returns the ids to go round again.
    async fn batch_round<K, V, O, E, F, Fut>(
        &self,
        batch: &mut Batch<'_, K, V, F>,
        open: Vec<usize>,
    ) -> Result<Vec<usize>, E>
    where
        K: Eq + Hash + Clone,
        V: Clone + Send + Sync + 'static,
        O: BatchSlot<V>,
        F: FnMut(Vec<K>) -> Fut,
        Fut: Future<Output = Result<Vec<(K, V)>, E>>,
    {
        #[cfg(feature = "redis")]
        self.ensure_backplane();
        let (site, route) = (batch.site, batch.route);
        let mut again = Vec::new();
        let mut led = Vec::new();
        let mut waits = Vec::new();
        for at in open {
            let key = batch.keys[at];
            match self.inner.flights.join(key) {
                Join::Leader(leader) => {
                    // A load may have finished between the lookup and the join.
                    if let Lookup::Fresh(value) = self.lookup_on::<O::Value>(route, key, site) {
                        let _ = leader.finish(Arc::new(value.clone()), || false);
                        batch.found[at] = Some(O::value(value));
                        continue;
                    }
                    self.count(site, Counter::Miss, 1);
                    self.emit(Event::Miss {
                        template: site.template,
                    });
                    led.push((at, leader));
                }
                // This very call is computing the key (a single-id
                // function whose body asks the batch for its id): it is
                // loaded here, and stored by that call.
                Join::Waiter(flight) if flight.is_led_here() => batch.uncached.push(at),
                Join::Waiter(flight) => waits.push((at, flight)),
            }
        }
        let misses = self
            .batch_shared::<K, V, O, F>(batch, led, &mut again)
            .await;
        if !misses.is_empty() {
            self.batch_origin::<K, V, O, E, F, Fut>(batch, misses)
                .await?;
        }
        // Waited for only now: this batch leads nothing any more, so no
        // other batch waits on it while it waits.
        for (at, flight) in waits {
            match self.joined::<O>(flight.wait().await, site) {
                Waited::Done(out) => batch.found[at] = Some(O::value(out.into_stored())),
                Waited::CallOrigin | Waited::TryAgain => again.push(at),
            }
        }
        Ok(again)
    }

    /// The shared tier's answers for the keys this batch leads, in one
    /// round trip per group: a value found is published and kept in
    /// process; the rest, with what the read left for their fill, go to
    /// the origin.
    async fn batch_shared<'c, K, V, O, F>(
        &'c self,
        batch: &mut Batch<'_, K, V, F>,
        led: Vec<(usize, Leader<'c>)>,
        again: &mut Vec<usize>,
    ) -> Vec<(usize, Leader<'c>, SharedMiss)>
    where
        V: Clone + Send + Sync + 'static,
        O: BatchSlot<V>,
    {
        #[cfg(feature = "redis")]
        if let (Some(codec), Some(shared), false) =
            (batch.route.l2, &self.inner.shared, led.is_empty())
        {
            let (site, policy, route) = (batch.site, batch.policy, batch.route);
            let asked: Vec<&str> = led.iter().map(|(at, _)| batch.keys[*at]).collect();
            let (_, keep) = self.stale_and_keep(policy);
            let finds = shared
                .lookup_many::<O::Value>(&*self.inner, &asked, site, codec, keep)
                .await;
            let mut misses = Vec::new();
            for ((at, leader), find) in led.into_iter().zip(finds) {
                let key = batch.keys[at];
                match self.led(leader, key, site, policy, route, codec, (find, None)) {
                    Led::Value(value) => batch.found[at] = Some(O::value(value)),
                    Led::Retry => again.push(at),
                    Led::Origin(leader, miss) => misses.push((at, leader, miss)),
                }
            }
            return misses;
        }
        let _ = (batch, again);
        led.into_iter()
            .map(|(at, leader)| (at, leader, SharedMiss::default()))
            .collect()
    }

    /// The origin call for the keys this batch leads and no tier holds:
    /// each answer is published, stored in process, and written to the
    /// shared tier (all at once) unless an invalidation came after its
    /// read. When the origin fails, the waiters of these keys are told,
    /// and the error is this batch's answer.
    async fn batch_origin<K, V, O, E, F, Fut>(
        &self,
        batch: &mut Batch<'_, K, V, F>,
        misses: Vec<(usize, Leader<'_>, SharedMiss)>,
    ) -> Result<(), E>
    where
        K: Eq + Hash + Clone,
        V: Clone + Send + Sync + 'static,
        O: BatchSlot<V>,
        F: FnMut(Vec<K>) -> Fut,
        Fut: Future<Output = Result<Vec<(K, V)>, E>>,
    {
        let Batch {
            ids,
            keys,
            site,
            policy,
            route,
            ..
        } = *batch;
        let asked = misses.iter().map(|(at, ..)| ids[*at].clone()).collect();
        let leaders = misses.iter().map(|(_, leader, _)| leader);
        let called = self.call_batch_origin(site, &mut batch.origin, asked, leaders);
        let mut got = match called.await {
            Ok(got) => got,
            Err(e) => {
                for (_, leader, _miss) in misses {
                    leader.fail(None);
                    #[cfg(feature = "redis")]
                    _miss.release(false);
                }
                return Err(e);
            }
        };
        let mut settled = Vec::with_capacity(misses.len());
        for (at, leader, miss) in misses {
            let Some(answer) = O::answer(got.remove(&ids[at])) else {
                // Nothing to store: waiters load it themselves.
                batch.found[at] = Some(None);
                leader.fail(None);
                #[cfg(feature = "redis")]
                miss.release(false);
                continue;
            };
            let done = self.settle(leader, keys[at], site, policy, route, answer);
            batch.found[at] = Some(O::value(done.out.clone().into_stored()));
            settled.push((at, done, miss));
        }
        #[cfg(feature = "redis")]
        {
            let fills = settled.iter().map(|(at, settled, miss)| {
                let fill = self.fill_of(keys[*at], settled, miss);
                async move {
                    match fill {
                        Some(fill) => fill.await,
                        None => false,
                    }
                }
            });
            let stored = futures_util::future::join_all(fills).await;
            for ((_, _, miss), stored) in settled.into_iter().zip(stored) {
                miss.release(stored);
            }
        }
        #[cfg(not(feature = "redis"))]
        drop(settled);
        Ok(())
    }

    /// Calls a batch's origin with `asked`, counted as one origin call,
    /// marked as leading the flights of `leaders` (a cached call in it on
    /// one of their keys panics instead of waiting for itself); its
    /// answers by id.
    async fn call_batch_origin<'l, K, V, E, F, Fut>(
        &self,
        site: &Site,
        origin: &mut F,
        asked: Vec<K>,
        leaders: impl IntoIterator<Item = &'l Leader<'l>>,
    ) -> Result<HashMap<K, V, foldhash::fast::RandomState>, E>
    where
        K: Eq + Hash,
        F: FnMut(Vec<K>) -> Fut,
        Fut: Future<Output = Result<Vec<(K, V)>, E>>,
    {
        let started = self.origin_call(site);
        let out = crate::flight::lead_all(leaders, origin(asked)).await;
        self.origin_returned(site, started);
        Ok(out?.into_iter().collect())
    }

    /// The handle's `get_many`: each key's fresh value of type `V`, from
    /// process, then from the shared tier in one round trip per group.
    pub(super) async fn get_many_on<V: Clone + Send + Sync + 'static>(
        &self,
        keys: &[&str],
        route: Route,
    ) -> Vec<Option<V>> {
        let site = self.inner.sites.handle();
        let mut values: Vec<Option<V>> = keys.iter().map(|_| None).collect();
        let mut remote = Vec::new();
        for (at, key) in keys.iter().enumerate() {
            if !self.fits(key, site) {
                continue;
            }
            match self.lookup_on::<V>(route, key, site) {
                Lookup::Fresh(value) => values[at] = Some(value),
                _ => {
                    self.count(site, Counter::Miss, 1);
                    remote.push(at);
                }
            }
        }
        #[cfg(feature = "redis")]
        if let (Some(codec), false) = (route.l2, remote.is_empty()) {
            self.ensure_backplane();
            let asked: Vec<&str> = remote.iter().map(|&at| keys[at]).collect();
            let got = Box::pin(self.l2_get_many::<V>(&asked, site, codec, route)).await;
            for (at, value) in remote.into_iter().zip(got) {
                values[at] = value;
            }
        }
        #[cfg(not(feature = "redis"))]
        drop(remote);
        values
    }

    /// The handle's `set_many`: each value stored as [`Cache::set`] stores
    /// one, the writes to the shared tier sent all at once.
    pub(super) async fn set_many_on<K, V, I>(&self, entries: I, ttl: Duration, route: Route) -> u64
    where
        K: AsRef<str>,
        V: Clone + Send + Sync + 'static,
        I: IntoIterator<Item = (K, V)>,
    {
        let written: Vec<(K, AnyValue, Life)> = entries
            .into_iter()
            .filter_map(|(key, value)| {
                let (value, life) = self.set_in_process(key.as_ref(), value, ttl, route)?;
                Some((key, value, life))
            })
            .collect();
        #[cfg(feature = "redis")]
        if let (Some(codec), Some(shared)) = (route.l2, &self.inner.shared) {
            let writes = written.iter().map(|(key, value, life)| {
                shared.set(&*self.inner, key.as_ref(), &**value, codec, *life)
            });
            futures_util::future::join_all(writes).await;
        }
        written.len() as u64
    }
}
