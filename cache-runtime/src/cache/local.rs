//! The handle's methods on a route: both tiers ([`Cache`]'s own methods)
//! or the in-process tier alone ([`Local`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Cache, Lookup, Policy, Route};
use crate::entry::{AnyValue, Entry, Life};
use crate::outcome::Plain;
use crate::stats::Counter;

/// How many entries a warm writes to Redis at once.
const WARM_BATCH: usize = 128;

/// A value the [`Cache`] handle can share with the other instances
/// through the shared tier: `Clone + Send + Sync + 'static`, and serde, so
/// that it can be encoded for Redis. Every such type is one.
///
/// A value that is not serde is kept in one process explicitly, through
/// [`Cache::local`].
///
/// ```
/// fn shareable<V: cache_runtime::Shareable>() {}
/// shareable::<String>();
/// shareable::<Vec<(u64, Option<String>)>>();
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be shared with the other instances through Redis",
    label = "not `Clone + Send + Sync + 'static + serde::Serialize + serde::de::DeserializeOwned`",
    note = "derive the serde traits on the value type: `#[derive(Clone, serde::Serialize, serde::Deserialize)]`",
    note = "or keep the value in this process only, explicitly: `cache.local().set(..)`, `cache.local().get(..)`"
)]
pub trait Shareable: Clone + Send + Sync + Serialize + DeserializeOwned + 'static {}

impl<T: Clone + Send + Sync + Serialize + DeserializeOwned + 'static> Shareable for T {}

/// The in-process tier of a [`Cache`] alone: from [`Cache::local`]. Its
/// values stay in this process (under every backend) and need not be
/// serde; invalidations (`delete`, `invalidate`, `#[invalidates]`, and
/// those of the other instances) reach them as any other.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use std::rc::Rc;
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// #[derive(Clone)]
/// struct Pool(Arc<Vec<u8>>); // not serde
///
/// let cache = cache_runtime::Cache::builder().build().unwrap();
/// let ttl = Duration::from_secs(60);
/// let pool = cache.local().get_or_insert_with("pool:eu", ttl, || async { Pool(Arc::new(vec![])) }).await;
/// assert!(cache.local().get::<Pool>("pool:eu").await.is_some());
/// # let _ = (pool, Rc::new(()));
/// # });
/// ```
#[derive(Clone, Copy)]
pub struct Local<'a> {
    pub(super) cache: &'a Cache,
}

impl std::fmt::Debug for Local<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Local").field(self.cache).finish()
    }
}

impl Local<'_> {
    /// The fresh value of `key` in this process, if it holds one of type
    /// `V`.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// let cache = cache_runtime::Cache::builder().build().unwrap();
    /// cache.local().set("k", 1u8, Duration::from_secs(60)).await;
    /// assert_eq!(cache.local().get::<u8>("k").await, Some(1));
    /// # });
    /// ```
    pub async fn get<V: Clone + Send + Sync + 'static>(&self, key: &str) -> Option<V> {
        self.cache.get_on(key, Route::L1).await
    }

    /// Stores `value` under `key` for `ttl` in this process only.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// let cache = cache_runtime::Cache::builder().build().unwrap();
    /// cache.local().set("k", std::sync::Arc::new(5u8), Duration::from_secs(60)).await;
    /// assert!(cache.exists("k").await);
    /// # });
    /// ```
    pub async fn set<V: Clone + Send + Sync + 'static>(&self, key: &str, value: V, ttl: Duration) {
        self.cache.set_on(key, value, ttl, Route::L1).await;
    }

    /// [`Cache::get_or_insert_with`] in this process only.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// let cache = cache_runtime::Cache::builder().build().unwrap();
    /// let n = cache.local().get_or_insert_with("n", Duration::from_secs(60), || async { 3u8 }).await;
    /// assert_eq!(n, 3);
    /// # });
    /// ```
    pub async fn get_or_insert_with<V, F, Fut>(&self, key: &str, ttl: Duration, init: F) -> V
    where
        V: Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        self.cache.get_or_insert_on(key, ttl, Route::L1, init).await
    }

    /// [`Cache::try_get_or_insert_with`] in this process only.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// let cache = cache_runtime::Cache::builder().build().unwrap();
    /// let ttl = Duration::from_secs(60);
    /// let n = cache.local().try_get_or_insert_with("n", ttl, || async { Ok::<u8, ()>(3) }).await;
    /// assert_eq!(n, Ok(3));
    /// # });
    /// ```
    pub async fn try_get_or_insert_with<V, E, F, Fut>(
        &self,
        key: &str,
        ttl: Duration,
        init: F,
    ) -> Result<V, E>
    where
        V: Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        self.cache
            .try_get_or_insert_on(key, ttl, Route::L1, init)
            .await
    }

    /// [`Cache::warm`] in this process only. Under `hybrid`, values warmed
    /// before this instance has subscribed to the others' invalidations
    /// are dropped when it subscribes (it cannot know what they
    /// invalidated meanwhile): wait for [`Cache::wait_in_sync`] first.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// let cache = cache_runtime::Cache::builder().build().unwrap();
    /// let n = cache.local().warm([("a", 1u8), ("b", 2u8)], Duration::from_secs(60)).await;
    /// assert_eq!(n, 2);
    /// # });
    /// ```
    pub async fn warm<K, V, I>(&self, entries: I, ttl: Duration) -> u64
    where
        K: AsRef<str>,
        V: Clone + Send + Sync + 'static,
        I: IntoIterator<Item = (K, V)>,
    {
        self.cache.warm_on(entries, ttl, Route::L1).await
    }
}

impl Cache {
    /// The tiers the handle's values of type `V` take: as a `#[cached]`
    /// function's with the default tier.
    #[cfg_attr(not(feature = "redis"), allow(clippy::extra_unused_type_parameters))]
    pub(super) fn shared_route<V: Shareable>(&self) -> Route {
        #[cfg(feature = "redis")]
        return self.route(
            super::TierChoice::Default,
            Some(crate::shared::ValueCodec::of::<V>()),
            self.inner.sites.handle(),
        );
        #[cfg(not(feature = "redis"))]
        Route::L1
    }

    pub(super) async fn get_on<V: Clone + Send + Sync + 'static>(
        &self,
        key: &str,
        route: Route,
    ) -> Option<V> {
        let site = self.inner.sites.handle();
        if !self.fits(key, site) {
            return None;
        }
        if let Lookup::Fresh(v) = self.lookup_on::<V>(route, key, site) {
            return Some(v);
        }
        self.count(site, Counter::Miss, 1);
        #[cfg(feature = "redis")]
        {
            self.ensure_backplane();
            if let Some(codec) = route.l2 {
                return Box::pin(self.l2_get::<V>(key, site, codec, route)).await;
            }
        }
        None
    }

    pub(super) async fn set_on<V: Clone + Send + Sync + 'static>(
        &self,
        key: &str,
        value: V,
        ttl: Duration,
        route: Route,
    ) -> bool {
        let Some((value, life)) = self.set_in_process(key, value, ttl, route) else {
            return false;
        };
        #[cfg(feature = "redis")]
        if let (Some(codec), Some(shared)) = (route.l2, &self.inner.shared) {
            shared.set(&*self.inner, key, &*value, codec, life).await;
        }
        #[cfg(not(feature = "redis"))]
        let _ = (value, life);
        true
    }

    /// The in-process half of a `set`: the value, and its life, to write
    /// to the shared tier; `None` for a key the cache does not take.
    pub(super) fn set_in_process<V: Clone + Send + Sync + 'static>(
        &self,
        key: &str,
        value: V,
        ttl: Duration,
        route: Route,
    ) -> Option<(AnyValue, Life)> {
        if !self.fits(key, self.inner.sites.handle()) {
            return None;
        }
        let policy = Policy::ttl(ttl);
        let life = self.life(&policy);
        let weight = Entry::weight_of(key, &value, None);
        // A load of the key running now read older data: it stores nothing.
        self.inner.flights.invalidate_key(key);
        let value: AnyValue = Arc::new(value);
        // Out of step with the other instances, the value goes to Redis
        // only, or is kept in process for `degraded_l1_ttl` at most.
        if route.l1 {
            let entry = self.entry(Arc::clone(&value), weight, life, &policy);
            if let Some(entry) = self.storable(entry) {
                self.store(key, entry, self.inner.sites.handle());
            }
        }
        Some((value, life))
    }

    pub(super) async fn get_or_insert_on<V, F, Fut>(
        &self,
        key: &str,
        ttl: Duration,
        route: Route,
        init: F,
    ) -> V
    where
        V: Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        let site = self.inner.sites.handle();
        if !self.fits(key, site) {
            return init().await;
        }
        let policy = Policy::ttl(ttl);
        let found = self.lookup_on(route, key, site);
        let init = || async { Plain(init().await) };
        let out = self.load(found, key, site, "get_or_insert_with", &policy, route, init);
        out.await.0
    }

    pub(super) async fn try_get_or_insert_on<V, E, F, Fut>(
        &self,
        key: &str,
        ttl: Duration,
        route: Route,
        init: F,
    ) -> Result<V, E>
    where
        V: Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        let site = self.inner.sites.handle();
        if !self.fits(key, site) {
            return init().await;
        }
        let policy = Policy::ttl(ttl);
        let found = self.lookup_on(route, key, site);
        self.load(found, key, site, "get_or_insert_with", &policy, route, init)
            .await
    }

    pub(super) async fn warm_on<K, V, I>(&self, entries: I, ttl: Duration, route: Route) -> u64
    where
        K: AsRef<str>,
        V: Clone + Send + Sync + 'static,
        I: IntoIterator<Item = (K, V)>,
    {
        // In batches, each written to Redis at once.
        let mut entries = entries.into_iter().peekable();
        let mut stored = 0;
        while entries.peek().is_some() {
            let batch: Vec<(K, V)> = entries.by_ref().take(WARM_BATCH).collect();
            stored += self.set_many_on(batch, ttl, route).await;
        }
        stored
    }
}
