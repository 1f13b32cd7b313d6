//! The builder of a [`Cache`].

use super::*;

/// Builds a [`Cache`]; start from [`Cache::builder`].
///
/// ```
/// use std::time::Duration;
/// use cache_runtime::{Cache, Engine, NamespaceConfig};
///
/// let cache = Cache::builder()
///     .default_ttl(Duration::from_secs(120))
///     .l1_max_bytes(32 << 20)
///     .engine(Engine::Moka)
///     .namespace("lookups", NamespaceConfig::new().default_ttl(Duration::from_secs(3600)))
///     .build()
///     .unwrap();
/// assert_eq!(cache.named("lookups").config().default_ttl, Duration::from_secs(3600));
/// ```
#[must_use]
pub struct CacheBuilder {
    config: Config,
    pub(super) name: Box<str>,
    pub(super) hooks: Option<Arc<dyn Hooks>>,
    pub(super) clock: Clock,
    /// Store settings given in code, over those of the configuration.
    #[cfg(feature = "redis")]
    redis: Option<crate::l2::builder::RedisL2Builder>,
    /// The parent's shared tier, for a named cache.
    #[cfg(feature = "redis")]
    pub(super) shared: Option<Arc<SharedTier>>,
    /// The root of the named caches, for a named cache.
    pub(super) root: Option<std::sync::Weak<Inner>>,
}

/// Shows the settings, the Redis URL without its password.
///
/// ```
/// let builder = cache_runtime::Cache::builder().redis_url("redis://:s3cret@10.0.0.1:6379/0");
/// assert!(!format!("{builder:?}").contains("s3cret"));
/// ```
impl std::fmt::Debug for CacheBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut shown = f.debug_struct("CacheBuilder");
        shown
            .field("name", &self.name)
            .field("config", &self.config);
        #[cfg(feature = "redis")]
        shown.field("redis", &self.redis);
        shown.finish_non_exhaustive()
    }
}

impl CacheBuilder {
    pub(super) fn new() -> Self {
        Self::from_config(Config::default())
    }

    /// Starts from `config` (for example [`Config::from_env`]).
    ///
    /// ```
    /// use cache_runtime::{CacheBuilder, Config};
    /// let config = Config::from_lookup(|name| (name == "CACHE_DEFAULT_TTL").then(|| "5m".into())).unwrap();
    /// let cache = CacheBuilder::from_config(config).build().unwrap();
    /// assert_eq!(cache.config().default_ttl.as_secs(), 300);
    /// ```
    pub fn from_config(config: Config) -> Self {
        CacheBuilder {
            config,
            name: DEFAULT_NAME.into(),
            hooks: None,
            clock: Clock::default(),
            #[cfg(feature = "redis")]
            redis: None,
            #[cfg(feature = "redis")]
            shared: None,
            root: None,
        }
    }

    /// `false` makes every cached function call its origin.
    ///
    /// ```
    /// let cache = cache_runtime::Cache::builder().enabled(false).build().unwrap();
    /// assert!(!cache.is_enabled());
    /// ```
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.config.enabled = enabled;
        self
    }

    /// TTL of functions that give none.
    ///
    /// ```
    /// use std::time::Duration;
    /// let cache = cache_runtime::Cache::builder().default_ttl(Duration::from_secs(30)).build().unwrap();
    /// assert_eq!(cache.config().default_ttl, Duration::from_secs(30));
    /// ```
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.config.default_ttl = ttl;
        self
    }

    /// The duration of the TTL preset `name` (built-in, as `"list"`, or
    /// the application's own [`TtlPreset`](crate::TtlPreset)), in place of
    /// its default in code. `CACHE_TTL_<NAME>` sets the same from the
    /// environment.
    ///
    /// ```
    /// use std::time::Duration;
    /// let cache = cache_runtime::Cache::builder()
    ///     .ttl_preset("list", Duration::from_secs(5))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(cache_runtime::ttl::LIST.resolve(&cache), Duration::from_secs(5));
    /// ```
    pub fn ttl_preset(mut self, name: &str, ttl: Duration) -> Self {
        self.config.ttl_presets.insert(name.to_owned(), ttl);
        self
    }

    /// Stale window of functions that give none.
    ///
    /// ```
    /// use std::time::Duration;
    /// let cache = cache_runtime::Cache::builder().stale_ttl(Duration::from_secs(300)).build().unwrap();
    /// assert_eq!(cache.config().stale_ttl, Duration::from_secs(300));
    /// ```
    pub fn stale_ttl(mut self, stale: Duration) -> Self {
        self.config.stale_ttl = stale;
        self
    }

    /// Byte bound of the in-process tier.
    ///
    /// ```
    /// let cache = cache_runtime::Cache::builder().l1_max_bytes(16 << 20).build().unwrap();
    /// assert_eq!(cache.config().l1_max_bytes, 16 << 20);
    /// ```
    pub fn l1_max_bytes(mut self, bytes: u64) -> Self {
        self.config.l1_max_bytes = bytes;
        self
    }

    /// Entry bound of the in-process tier, on top of the byte bound.
    ///
    /// ```
    /// let cache = cache_runtime::Cache::builder().l1_max_entries(10_000).build().unwrap();
    /// assert_eq!(cache.config().l1_max_entries, 10_000);
    /// ```
    pub fn l1_max_entries(mut self, entries: u64) -> Self {
        self.config.l1_max_entries = entries;
        self
    }

    /// The in-process engine.
    ///
    /// ```
    /// use cache_runtime::{Cache, Engine};
    /// let cache = Cache::builder().engine(Engine::Moka).build().unwrap();
    /// assert_eq!(cache.config().engine, Engine::Moka);
    /// ```
    pub fn engine(mut self, engine: Engine) -> Self {
        self.config.engine = engine;
        self
    }

    /// Settings of the named cache `name`.
    ///
    /// ```
    /// use cache_runtime::{Cache, NamespaceConfig};
    /// let cache = Cache::builder()
    ///     .namespace("reports", NamespaceConfig::new().enabled(false))
    ///     .build()
    ///     .unwrap();
    /// assert!(!cache.named("reports").is_enabled());
    /// ```
    pub fn namespace(mut self, name: &str, settings: NamespaceConfig) -> Self {
        self.config
            .namespaces
            .insert(name.to_ascii_lowercase().replace('_', "-"), settings);
        self
    }

    /// Observer of every event.
    ///
    /// ```
    /// use cache_runtime::{Cache, Event, Hooks};
    /// struct PrintSets;
    /// impl Hooks for PrintSets {
    ///     fn on_event(&self, event: &Event<'_>) {
    ///         if let Event::Set { template, .. } = event {
    ///             println!("stored a value of {template}");
    ///         }
    ///     }
    /// }
    /// let cache = Cache::builder().hooks(PrintSets).build().unwrap();
    /// ```
    pub fn hooks(mut self, hooks: impl Hooks) -> Self {
        self.hooks = Some(Arc::new(hooks));
        self
    }

    /// A manual clock, for tests of expiry.
    ///
    /// ```
    /// use cache_runtime::{testing::ManualClock, Cache};
    /// let clock = ManualClock::new();
    /// let cache = Cache::builder().clock(clock.clone()).build().unwrap();
    /// ```
    pub fn clock(mut self, clock: ManualClock) -> Self {
        self.clock = Clock::Manual(clock);
        self
    }

    /// Where values live: in process (`Memory`, the default), in Redis
    /// (`Redis`), or in process in front of Redis (`Hybrid`). The Redis
    /// backends need [`redis_url`](CacheBuilder::redis_url) and the `redis`
    /// feature.
    ///
    /// ```
    /// use cache_runtime::{Backend, Cache};
    /// let builder = Cache::builder().backend(Backend::Hybrid);
    /// assert!(builder.build().is_err()); // no REDIS_URL
    /// ```
    pub fn backend(mut self, backend: Backend) -> Self {
        self.config.backend = backend;
        self
    }

    /// The Redis of the `redis` and `hybrid` backends:
    /// `redis://[:password@]host:port[/db]`.
    ///
    /// ```
    /// use cache_runtime::{Backend, Cache};
    /// let builder = Cache::builder().backend(Backend::Hybrid).redis_url("redis://127.0.0.1:6379/0");
    /// # drop(builder);
    /// ```
    pub fn redis_url(mut self, url: impl Into<String>) -> Self {
        self.config.redis_url = Some(url.into());
        self
    }

    /// This application's namespace in Redis (default `cache`): its keys
    /// are `<prefix>:<key>`, and `clear` removes only those. ASCII, without
    /// `* ? [ ] \ :` or spaces.
    ///
    /// ```
    /// let cache = cache_runtime::Cache::builder().key_prefix("orders-svc").build().unwrap();
    /// assert_eq!(cache.config().key_prefix, "orders-svc");
    /// assert!(cache_runtime::Cache::builder().key_prefix("a:b").build().is_err());
    /// ```
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.key_prefix = prefix.into();
        self
    }

    /// Writes values longer than `bytes` (encoded) to Redis LZ4-compressed.
    /// Needs the `compression` feature: without it, `build` fails.
    ///
    /// ```
    /// let built = cache_runtime::Cache::builder().l2_compress_above(16 << 10).build();
    /// assert_eq!(built.is_ok(), cfg!(feature = "compression"));
    /// ```
    pub fn l2_compress_above(mut self, bytes: u64) -> Self {
        self.config.l2_compress_above = Some(bytes);
        self
    }

    /// Whether to subscribe to the other instances' invalidations (default
    /// `true`). With it, an invalidation on any instance removes the key
    /// from every instance's in-process tier, and an instance serves from
    /// its in-process tier only while subscribed (after a gap it empties it
    /// first). Turn it off only when no other instance shares the key
    /// prefix: the in-process tier is then trusted as in the `memory`
    /// backend.
    ///
    /// ```
    /// let cache = cache_runtime::Cache::builder().backplane(false).build().unwrap();
    /// assert!(!cache.config().backplane);
    /// ```
    pub fn backplane(mut self, on: bool) -> Self {
        self.config.backplane = on;
        self
    }

    /// The circuit breaker around Redis: it opens after `failures`
    /// consecutive failed calls (or at once when an invalidation fails),
    /// and probes Redis every `cooldown` until it answers and the
    /// invalidations queued meanwhile went through (default: 5, 1 s). While
    /// it is not closed no call waits on Redis: reads are misses, fills are
    /// skipped, invalidations are queued.
    ///
    /// ```
    /// use std::time::Duration;
    /// let cache = cache_runtime::Cache::builder()
    ///     .breaker(3, Duration::from_millis(500))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(cache.config().breaker_failures, 3);
    /// ```
    pub fn breaker(mut self, failures: u32, cooldown: Duration) -> Self {
        self.config.breaker_failures = failures;
        self.config.breaker_cooldown = cooldown;
        self
    }

    /// How long the in-process tier keeps answering while this instance is
    /// out of step with the others (`CACHE_DEGRADED_L1_TTL`; default 0:
    /// it answers nothing). Out of step means Redis is away or the
    /// subscription to the others' invalidations stalled or dropped: the
    /// values held then are served for `ttl` more (each within its own
    /// TTL), and values loaded meanwhile are kept at most `ttl`, so that an
    /// outage does not hand every read to the origin. The price is the
    /// staleness it allows: an invalidation made on another instance
    /// meanwhile may be missed for up to `ttl` (and the
    /// [`stale_bound`](CacheBuilder::stale_bound) on top).
    ///
    /// ```
    /// use std::time::Duration;
    /// let cache = cache_runtime::Cache::builder()
    ///     .degraded_l1_ttl(Duration::from_secs(5))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(cache.config().degraded_l1_ttl, Duration::from_secs(5));
    /// ```
    pub fn degraded_l1_ttl(mut self, ttl: Duration) -> Self {
        self.config.degraded_l1_ttl = ttl;
        self
    }

    /// The longest another instance's invalidation can go unapplied to
    /// this instance's in-process tier when its subscription to them
    /// stalls without a word (a paused server, a dropped route):
    /// `CACHE_STALE_BOUND`, default 250 ms, at least 20 ms. The
    /// subscription is pinged about three times within it, and the
    /// in-process tier is trusted only this long after the last ping it
    /// answered was sent; past it, reads go to Redis (or, with
    /// [`degraded_l1_ttl`](CacheBuilder::degraded_l1_ttl), to process
    /// within that setting). Shorter costs more pings: one every
    /// `bound * 8/25` per instance.
    ///
    /// ```
    /// use std::time::Duration;
    /// let cache = cache_runtime::Cache::builder()
    ///     .stale_bound(Duration::from_millis(100))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(cache.config().stale_bound, Duration::from_millis(100));
    /// ```
    pub fn stale_bound(mut self, bound: Duration) -> Self {
        self.config.stale_bound = bound;
        self
    }

    /// Single flight across instances for every function whose values
    /// reach Redis, as `#[cached(lock = true)]` does for one (default:
    /// off). A cold key then costs one origin call in the whole fleet: the
    /// instance that takes the key's lock in Redis calls the origin, the
    /// others wait for its value in Redis. The holder renews its lock while
    /// its call runs; `lock_ttl` (default 10 s) is how soon a holder that
    /// died frees it, and callers wait at most ten times that.
    ///
    /// ```
    /// use std::time::Duration;
    /// let cache = cache_runtime::Cache::builder()
    ///     .lock(true)
    ///     .lock_ttl(Duration::from_secs(5))
    ///     .build()
    ///     .unwrap();
    /// assert!(cache.config().lock);
    /// ```
    pub fn lock(mut self, on: bool) -> Self {
        self.config.lock = on;
        self
    }

    /// The lifetime of a distributed lock, renewed while its holder's call
    /// runs; see [`CacheBuilder::lock`].
    ///
    /// ```
    /// use std::time::Duration;
    /// let cache = cache_runtime::Cache::builder().lock_ttl(Duration::from_secs(3)).build().unwrap();
    /// assert_eq!(cache.config().lock_ttl, Duration::from_secs(3));
    /// ```
    pub fn lock_ttl(mut self, ttl: Duration) -> Self {
        self.config.lock_ttl = ttl;
        self
    }

    /// How many invalidations that could not reach Redis are kept for
    /// replay (default 10,000); past this the whole namespace is
    /// invalidated in Redis on recovery instead, and the overflow is
    /// counted in [`Stats::invalidation_queue_overflows`].
    ///
    /// ```
    /// let cache = cache_runtime::Cache::builder().pending_invalidations(100).build().unwrap();
    /// assert_eq!(cache.config().pending_invalidations, 100);
    /// ```
    pub fn pending_invalidations(mut self, bound: u64) -> Self {
        self.config.pending_invalidations = bound;
        self
    }

    /// The time limit of each Redis command (default 250 ms): past it the
    /// call goes on without Redis.
    ///
    /// ```
    /// use std::time::Duration;
    /// let cache = cache_runtime::Cache::builder().redis_timeout(Duration::from_millis(100)).build().unwrap();
    /// assert_eq!(cache.config().redis_timeout, Duration::from_millis(100));
    /// ```
    pub fn redis_timeout(mut self, timeout: Duration) -> Self {
        self.config.redis_timeout = timeout;
        self
    }

    /// How values are encoded in Redis (default bincode).
    ///
    /// ```
    /// use cache_runtime::{Cache, Codec};
    /// let cache = Cache::builder().codec(Codec::Json).build().unwrap();
    /// assert_eq!(cache.config().codec, Codec::Json);
    /// ```
    pub fn codec(mut self, codec: crate::Codec) -> Self {
        self.config.codec = codec;
        self
    }

    /// The Redis store with settings of its own (timeouts, SCAN batch
    /// size, longest TTL); its URL and namespace replace `redis_url` and
    /// `key_prefix`. Turns the `memory` backend into `hybrid`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cache_runtime::{Backend, Cache, RedisL2};
    ///
    /// let store = RedisL2::builder("redis://127.0.0.1:6379/0", "orders-svc")
    ///     .timeout(Duration::from_millis(100));
    /// // Nothing connects until the first call, inside a tokio runtime.
    /// let cache = Cache::builder().redis(store).build().unwrap();
    /// assert_eq!(cache.config().backend, Backend::Hybrid);
    /// ```
    #[cfg(feature = "redis")]
    pub fn redis(mut self, store: crate::l2::builder::RedisL2Builder) -> Self {
        if self.config.backend == Backend::Memory {
            self.config.backend = Backend::Hybrid;
        }
        self.config.redis_url = Some(store.url().to_owned());
        self.config.key_prefix = store.namespace().to_owned();
        self.redis = Some(store);
        self
    }

    /// Builds the cache. Nothing connects to Redis here: the connection is
    /// made on first use, inside the tokio runtime of the caller, so a
    /// service starts while Redis is down.
    ///
    /// # Errors
    /// Settings that do not fit together (a zero byte bound, a Redis
    /// backend without a URL, a malformed URL or key prefix), or a Redis
    /// backend in a build without the `redis` feature.
    ///
    /// ```
    /// let cache = cache_runtime::Cache::builder().build().unwrap();
    /// assert!(cache_runtime::Cache::builder().l1_max_bytes(0).build().is_err());
    /// ```
    pub fn build(self) -> Result<Cache, ConfigError> {
        self.config.validate()?;
        if self.config.backend == Backend::Memory {
            return Ok(self.build_local());
        }
        #[cfg(feature = "redis")]
        {
            let mut this = self;
            let shared = this.shared_tier()?;
            this.shared = Some(Arc::clone(&shared));
            let cache = this.build_local();
            let root: std::sync::Weak<dyn crate::shared::Root> = Arc::downgrade(&cache.inner) as _;
            let _ = shared.root.set(root);
            Ok(cache)
        }
        #[cfg(not(feature = "redis"))]
        Err(ConfigError::new(
            "CACHE_BACKEND",
            "this build has no Redis support: enable the `redis` feature of cache-runtime, or use memory",
        ))
    }

    #[cfg(feature = "redis")]
    fn shared_tier(&mut self) -> Result<Arc<SharedTier>, ConfigError> {
        let config = &self.config;
        let url = config.redis_url.clone().unwrap_or_default();
        let store = self.redis.take().unwrap_or_else(|| {
            crate::l2::redis::RedisL2::builder(url, config.key_prefix.clone())
                .timeout(config.redis_timeout)
        });
        store
            .check()
            .map_err(|e| ConfigError::new("REDIS_URL", e.to_string()))?;
        // validate() bounds the value size to 512 MiB.
        let max_bytes = usize::try_from(config.l2_max_value_bytes).unwrap_or(usize::MAX);
        let mut envelope = crate::Envelope::new(config.codec).max_bytes(max_bytes);
        if let Some(threshold) = config.l2_compress_above {
            envelope = envelope.compress_above(usize::try_from(threshold).unwrap_or(usize::MAX));
        }
        let resilience = crate::shared::Resilience {
            breaker: crate::breaker::Breaker::new(config.breaker_failures, config.breaker_cooldown),
            pending_bound: usize::try_from(config.pending_invalidations).unwrap_or(usize::MAX),
            lock_all: config.lock,
            lock_ttl: config.lock_ttl,
            stale_bound: config.stale_bound,
        };
        Ok(SharedTier::new(
            store,
            envelope,
            config.backend == Backend::Hybrid,
            config.backplane,
            resilience,
        ))
    }

    pub(super) fn build_local(self) -> Cache {
        let config = self.config;
        let l1 = match config.engine {
            Engine::QuickCache => {
                L1::Quick(QuickL1::new(config.l1_max_bytes, config.l1_max_entries))
            }
            Engine::Moka => L1::Moka(MokaL1::new(config.l1_max_bytes, self.clock.clone())),
        };
        let min_weight = config.l1_max_bytes.div_ceil(config.l1_max_entries.max(1));
        let root = self.root;
        // One table of tag stamps for a cache and its named caches.
        let tag_stamps = root
            .as_ref()
            .and_then(std::sync::Weak::upgrade)
            .map(|root| Arc::clone(&root.tag_stamps))
            .unwrap_or_default();
        Cache {
            inner: Arc::new_cyclic(|me| Inner {
                tag_stamps,
                root: root.unwrap_or_else(|| me.clone()),
                name: self.name,
                sites: Sites::new(),
                min_weight: u32::try_from(min_weight).unwrap_or(u32::MAX),
                config,
                l1,
                flights: Flights::new(),
                counters: Counters::new(),
                clock: self.clock,
                hooks: self.hooks,
                children: RwLock::new(HashMap::new()),
                warmers: parking_lot::Mutex::default(),
                #[cfg(feature = "redis")]
                shared: self.shared,
            }),
        }
    }
}
