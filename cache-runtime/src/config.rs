//! Configuration: from the environment, or set in code through
//! [`CacheBuilder`](crate::CacheBuilder).

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use cache_grammar::{is_glob_meta, parse_duration, parse_size, SEPARATOR};

use crate::codec::Codec;
use crate::secret::redact;

/// Where values live.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// In-process only.
    #[default]
    Memory,
    /// Redis only.
    Redis,
    /// In-process in front of Redis.
    Hybrid,
}

impl Backend {
    /// The name `CACHE_BACKEND` takes.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Backend::Memory => "memory",
            Backend::Redis => "redis",
            Backend::Hybrid => "hybrid",
        }
    }
}

/// The name `CACHE_BACKEND` takes.
///
/// ```
/// assert_eq!(cache_runtime::Backend::Hybrid.to_string(), "hybrid");
/// ```
impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The in-process engine.
///
/// The default is [`Engine::QuickCache`]: in this repository's benchmark
/// (`cargo bench --bench hit`) its lookup costs a fraction of moka's, and
/// its hit ratio on a skewed trace is as good (see docs/performance.md, "Choosing the
/// in-process engine").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Engine {
    /// quick_cache: S3-FIFO, sharded locks.
    #[default]
    QuickCache,
    /// moka: TinyLFU admission, per-entry expiry in the engine.
    Moka,
}

/// Per-namespace settings: a named cache (`#[cached(cache = "lookups")]`)
/// takes these over the defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NamespaceConfig {
    /// `false` makes this namespace pass-through.
    pub enabled: Option<bool>,
    /// TTL for functions that give none.
    pub default_ttl: Option<Duration>,
    /// Byte bound of this namespace's in-process tier.
    pub l1_max_bytes: Option<u64>,
    /// The in-process engine of this namespace.
    pub engine: Option<Engine>,
}

impl NamespaceConfig {
    /// Settings that change nothing.
    ///
    /// ```
    /// use cache_runtime::NamespaceConfig;
    /// let unchanged = NamespaceConfig::new();
    /// assert_eq!(unchanged.enabled, None);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Turns the namespace on or off.
    ///
    /// ```
    /// use cache_runtime::NamespaceConfig;
    /// assert_eq!(NamespaceConfig::new().enabled(false).enabled, Some(false));
    /// ```
    #[must_use]
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = Some(enabled);
        self
    }

    /// Sets the default TTL.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cache_runtime::NamespaceConfig;
    /// let ns = NamespaceConfig::new().default_ttl(Duration::from_secs(3600));
    /// assert_eq!(ns.default_ttl, Some(Duration::from_secs(3600)));
    /// ```
    #[must_use]
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = Some(ttl);
        self
    }

    /// Sets the byte bound of the in-process tier.
    ///
    /// ```
    /// use cache_runtime::NamespaceConfig;
    /// assert_eq!(NamespaceConfig::new().l1_max_bytes(1 << 20).l1_max_bytes, Some(1 << 20));
    /// ```
    #[must_use]
    pub fn l1_max_bytes(mut self, bytes: u64) -> Self {
        self.l1_max_bytes = Some(bytes);
        self
    }

    /// Sets the in-process engine.
    ///
    /// ```
    /// use cache_runtime::{Engine, NamespaceConfig};
    /// assert_eq!(NamespaceConfig::new().engine(Engine::Moka).engine, Some(Engine::Moka));
    /// ```
    #[must_use]
    pub fn engine(mut self, engine: Engine) -> Self {
        self.engine = Some(engine);
        self
    }
}

/// Every setting of a cache.
///
/// ```
/// use cache_runtime::{Backend, Config};
///
/// let vars = [("CACHE_BACKEND", "memory"), ("CACHE_DEFAULT_TTL", "5m")];
/// let config = Config::from_lookup(|name| {
///     vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
/// })
/// .unwrap();
/// assert_eq!(config.backend, Backend::Memory);
/// assert_eq!(config.default_ttl, std::time::Duration::from_secs(300));
///
/// let err = Config::from_lookup(|name| (name == "CACHE_BACKEND").then(|| "memcached".to_string()))
///     .unwrap_err();
/// assert!(err.to_string().contains("expected one of: memory, redis, hybrid"));
/// ```
///
/// `Debug` shows the Redis URL without its password:
///
/// ```
/// let config = cache_runtime::Config::from_lookup(|name| {
///     (name == "REDIS_URL").then(|| "redis://:s3cret@10.0.0.1:6379/0".to_string())
/// })
/// .unwrap();
/// let shown = format!("{config:?}");
/// assert!(shown.contains("redis://***@10.0.0.1:6379/0") && !shown.contains("s3cret"));
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// `false`: every cached function calls its origin (pass-through).
    pub enabled: bool,
    /// Where values live.
    pub backend: Backend,
    /// Redis address for the `redis` and `hybrid` backends.
    pub redis_url: Option<String>,
    /// The namespace of this application in Redis: every key it stores
    /// starts with `<key_prefix>:`, and `clear` removes only those. Give
    /// each application sharing a Redis its own.
    pub key_prefix: String,
    /// How values are encoded in Redis (each value records its codec, so
    /// switching needs no flush).
    pub codec: Codec,
    /// The time limit of each Redis command.
    pub redis_timeout: Duration,
    /// The largest value written to Redis, envelope included; a larger
    /// value stays in the in-process tier only.
    pub l2_max_value_bytes: u64,
    /// Values whose encoding is longer than this many bytes are written to
    /// Redis LZ4-compressed (needs the `compression` feature).
    pub l2_compress_above: Option<u64>,
    /// Subscribe to the other instances' invalidations (the backplane), and
    /// serve from the in-process tier only while subscribed. Turn off only
    /// when no other instance shares the key prefix.
    pub backplane: bool,
    /// Consecutive failed Redis calls that open the circuit breaker: no
    /// call goes to Redis until a probe succeeds. (A failed invalidation
    /// opens it at once.)
    pub breaker_failures: u32,
    /// How long the breaker stays open before it probes Redis.
    pub breaker_cooldown: Duration,
    /// How long the in-process tier keeps answering while this instance is
    /// out of step with the others (Redis away, its subscription stalled or
    /// lost): values it held when it fell out of step are served for this
    /// long after, and values loaded meanwhile live at most this long.
    /// Zero (the default) serves nothing from process while out of step.
    /// What it allows is staleness: an invalidation made elsewhere
    /// meanwhile is missed for up to this long.
    pub degraded_l1_ttl: Duration,
    /// The longest another instance's invalidation can go unapplied to this
    /// instance's in-process tier when its subscription to them stalls
    /// silently (a paused or unreachable server): the subscription is
    /// pinged about three times within it, and the in-process tier is
    /// trusted only this long after the last ping it answered was sent.
    /// Shorter costs more pings; at least 20 ms.
    pub stale_bound: Duration,
    /// How many invalidations that could not reach Redis are kept to be
    /// replayed; past this, the namespace is cleared in Redis on recovery
    /// instead.
    pub pending_invalidations: u64,
    /// Single flight across instances for every function whose values
    /// reach Redis, as `lock = true` does for one.
    pub lock: bool,
    /// The lifetime of a distributed lock: its holder renews it while its
    /// origin call runs, and one that died frees it after this. Callers on
    /// other instances wait at most ten times this before calling the
    /// origin themselves.
    pub lock_ttl: Duration,
    /// TTL of functions that give none.
    pub default_ttl: Duration,
    /// Stale window of functions that give none.
    pub stale_ttl: Duration,
    /// Byte bound of the in-process tier.
    pub l1_max_bytes: u64,
    /// Entry bound of the in-process tier (an upper limit on top of bytes).
    pub l1_max_entries: u64,
    /// The in-process engine.
    pub engine: Engine,
    /// Settings by namespace (named cache).
    pub namespaces: HashMap<String, NamespaceConfig>,
    /// Durations of TTL presets by name ([`TtlPreset`](crate::TtlPreset)),
    /// in place of their defaults in code.
    pub ttl_presets: HashMap<String, Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            enabled: true,
            backend: Backend::Memory,
            redis_url: None,
            key_prefix: "cache".to_owned(),
            codec: Codec::Bincode,
            redis_timeout: Duration::from_millis(250),
            l2_max_value_bytes: 16 << 20,
            l2_compress_above: None,
            backplane: true,
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(1),
            degraded_l1_ttl: Duration::ZERO,
            stale_bound: Duration::from_millis(250),
            pending_invalidations: 10_000,
            lock: false,
            lock_ttl: Duration::from_secs(10),
            default_ttl: Duration::from_secs(60),
            stale_ttl: Duration::ZERO,
            l1_max_bytes: 64 * 1024 * 1024,
            l1_max_entries: 1_000_000,
            engine: Engine::default(),
            namespaces: HashMap::new(),
            ttl_presets: HashMap::new(),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Every field named, so that a new one is not left out by accident.
        let Config {
            enabled,
            backend,
            redis_url,
            key_prefix,
            codec,
            redis_timeout,
            l2_max_value_bytes,
            l2_compress_above,
            backplane,
            breaker_failures,
            breaker_cooldown,
            degraded_l1_ttl,
            stale_bound,
            pending_invalidations,
            lock,
            lock_ttl,
            default_ttl,
            stale_ttl,
            l1_max_bytes,
            l1_max_entries,
            engine,
            namespaces,
            ttl_presets,
        } = self;
        f.debug_struct("Config")
            .field("enabled", enabled)
            .field("backend", backend)
            .field("redis_url", &redis_url.as_deref().map(redact))
            .field("key_prefix", key_prefix)
            .field("codec", codec)
            .field("redis_timeout", redis_timeout)
            .field("l2_max_value_bytes", l2_max_value_bytes)
            .field("l2_compress_above", l2_compress_above)
            .field("backplane", backplane)
            .field("breaker_failures", breaker_failures)
            .field("breaker_cooldown", breaker_cooldown)
            .field("degraded_l1_ttl", degraded_l1_ttl)
            .field("stale_bound", stale_bound)
            .field("pending_invalidations", pending_invalidations)
            .field("lock", lock)
            .field("lock_ttl", lock_ttl)
            .field("default_ttl", default_ttl)
            .field("stale_ttl", stale_ttl)
            .field("l1_max_bytes", l1_max_bytes)
            .field("l1_max_entries", l1_max_entries)
            .field("engine", engine)
            .field("namespaces", namespaces)
            .field("ttl_presets", ttl_presets)
            .finish()
    }
}

/// A configuration value that could not be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    variable: String,
    message: String,
}

impl ConfigError {
    pub(crate) fn new(variable: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            variable: variable.into(),
            message: message.into(),
        }
    }

    /// The variable or setting at fault.
    ///
    /// ```
    /// let err = cache_runtime::Config::from_lookup(|name| {
    ///     (name == "CACHE_ENABLED").then(|| "maybe".to_string())
    /// })
    /// .unwrap_err();
    /// assert_eq!(err.variable(), "CACHE_ENABLED");
    /// ```
    pub fn variable(&self) -> &str {
        &self.variable
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.variable, self.message)
    }
}

impl std::error::Error for ConfigError {}

const NAMESPACE_PREFIX: &str = "CACHE_NAMESPACE_";
/// The shortest [`Config::stale_bound`].
const MIN_STALE_BOUND: Duration = Duration::from_millis(20);

/// The variables of TTL presets: `CACHE_TTL_<NAME>`.
const TTL_PRESET_PREFIX: &str = "CACHE_TTL_";

impl Config {
    /// Reads the process environment:
    ///
    /// | variable | values | default |
    /// |---|---|---|
    /// | `CACHE_ENABLED` | `true`, `false` (also `1`/`0`, `yes`/`no`, `on`/`off`) | `true` |
    /// | `CACHE_BACKEND` | `memory`, `redis`, `hybrid` | `memory` |
    /// | `REDIS_URL` | `redis://[:password@]host:port[/db]`, `rediss://..` (TLS), `redis+cluster://host:port[,host:port..]` (Redis Cluster), `redis+sentinel://host:port[,host:port..]/<service>[/db]` (the master Redis Sentinel names) | none |
    /// | `CACHE_KEY_PREFIX` | this application's namespace in Redis: ASCII without `* ? [ ] \\ :` (on Redis Cluster also `{ }`) | `cache` |
    /// | `CACHE_CODEC` | `bincode`, `json` | `bincode` |
    /// | `CACHE_REDIS_TIMEOUT` | a duration, per Redis command | `250ms` |
    /// | `CACHE_L2_MAX_VALUE_BYTES` | bytes | `16MB` |
    /// | `CACHE_L2_COMPRESS_ABOVE` | bytes; needs the `compression` feature | off |
    /// | `CACHE_BACKPLANE` | `true`, `false`: subscribe to other instances' invalidations | `true` |
    /// | `CACHE_BREAKER_FAILURES` | consecutive failed Redis calls that open the breaker | `5` |
    /// | `CACHE_BREAKER_COOLDOWN` | a duration: open this long before a probe | `1s` |
    /// | `CACHE_DEGRADED_L1_TTL` | a duration: how long the in-process tier answers while out of step with the other instances (the staleness it allows) | `0s` |
    /// | `CACHE_STALE_BOUND` | a duration, at least `20ms`: how late this instance may apply another's invalidation when its subscription stalls | `250ms` |
    /// | `CACHE_PENDING_INVALIDATIONS` | invalidations kept while Redis is away; past it, a clear on recovery | `10000` |
    /// | `CACHE_LOCK` | `true`, `false`: single flight across instances for every function that reaches Redis | `false` |
    /// | `CACHE_LOCK_TTL` | a duration: the lifetime of a distributed lock, renewed while its holder calls | `10s` |
    /// | `CACHE_DEFAULT_TTL` | a duration, `"60s"`, `"1h30m"` | `60s` |
    /// | `CACHE_STALE_TTL` | a duration | `0s` |
    /// | `CACHE_L1_MAX_BYTES` | bytes, with an optional `KiB`/`MiB`/`GiB` (or `KB`/`MB`/`GB`, the same: ×1024) | `64MiB` |
    /// | `CACHE_L1_ENGINE` | `quick_cache`, `moka` | `quick_cache` |
    /// | `CACHE_NAMESPACE_<NAME>_ENABLED` | as `CACHE_ENABLED`, for the named cache `<name>` | |
    /// | `CACHE_NAMESPACE_<NAME>_DEFAULT_TTL` | a duration | |
    /// | `CACHE_NAMESPACE_<NAME>_L1_MAX_BYTES` | bytes | |
    /// | `CACHE_TTL_<PRESET>` | a duration: the TTL preset `<preset>` ([`TtlPreset`](crate::TtlPreset)); `from_lookup` reads the built-in ones | its default in code |
    ///
    /// `<NAME>` is the cache name upper-cased, with `-` as `_`.
    ///
    /// # Errors
    /// A value that is not one of those above; the error names the variable
    /// and what it accepts. Nothing falls back silently.
    ///
    /// ```
    /// // At start-up, so that a bad value is an error here, not a panic later.
    /// let config = cache_runtime::Config::from_env().expect("cache settings");
    /// let cache = cache_runtime::CacheBuilder::from_config(config).build().unwrap();
    /// ```
    pub fn from_env() -> Result<Config, ConfigError> {
        let mut config = Self::from_lookup(|name| std::env::var(name).ok())?;
        for (name, value) in std::env::vars() {
            if let Some(rest) = name.strip_prefix(NAMESPACE_PREFIX) {
                config.apply_namespace_var(&name, rest, &value)?;
            } else if let Some(rest) = name.strip_prefix(TTL_PRESET_PREFIX) {
                config.apply_ttl_preset_var(&name, rest, &value)?;
            }
        }
        Ok(config)
    }

    /// Like [`Config::from_env`], but reads variables through `lookup`
    /// (namespace variables excepted), so tests need not touch the process
    /// environment.
    ///
    /// # Errors
    /// As [`Config::from_env`].
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        if let Some(v) = lookup("CACHE_ENABLED") {
            config.enabled = parse_bool("CACHE_ENABLED", &v)?;
        }
        if let Some(v) = lookup("CACHE_BACKEND") {
            config.backend = match v.trim().to_ascii_lowercase().as_str() {
                "memory" => Backend::Memory,
                "redis" => Backend::Redis,
                "hybrid" => Backend::Hybrid,
                _ => {
                    return Err(ConfigError::new(
                        "CACHE_BACKEND",
                        format!("unknown backend `{v}`: expected one of: memory, redis, hybrid"),
                    ))
                }
            };
        }
        config.redis_url = lookup("REDIS_URL").filter(|url| !url.trim().is_empty());
        if let Some(v) = lookup("CACHE_KEY_PREFIX") {
            config.key_prefix = v.trim().to_owned();
        }
        if let Some(v) = lookup("CACHE_CODEC") {
            config.codec = match v.trim().to_ascii_lowercase().as_str() {
                "bincode" => Codec::Bincode,
                "json" => Codec::Json,
                _ => {
                    return Err(ConfigError::new(
                        "CACHE_CODEC",
                        format!("unknown codec `{v}`: expected one of: bincode, json"),
                    ))
                }
            };
        }
        if let Some(v) = lookup("CACHE_REDIS_TIMEOUT") {
            config.redis_timeout = parse_positive("CACHE_REDIS_TIMEOUT", &v, "timeout")?;
        }
        if let Some(v) = lookup("CACHE_L2_MAX_VALUE_BYTES") {
            config.l2_max_value_bytes = parse_bytes("CACHE_L2_MAX_VALUE_BYTES", &v)?;
        }
        if let Some(v) = lookup("CACHE_BACKPLANE") {
            config.backplane = parse_bool("CACHE_BACKPLANE", &v)?;
        }
        if let Some(v) = lookup("CACHE_BREAKER_FAILURES") {
            config.breaker_failures = u32::try_from(parse_count("CACHE_BREAKER_FAILURES", &v)?)
                .map_err(|_| ConfigError::new("CACHE_BREAKER_FAILURES", "too large"))?;
        }
        if let Some(v) = lookup("CACHE_BREAKER_COOLDOWN") {
            config.breaker_cooldown = parse_duration(&v)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    ConfigError::new(
                        "CACHE_BREAKER_COOLDOWN",
                        format!("`{v}` is not a positive duration: write e.g. 500ms or 2s"),
                    )
                })?;
        }
        if let Some(v) = lookup("CACHE_DEGRADED_L1_TTL") {
            config.degraded_l1_ttl =
                parse_duration(&v).map_err(|e| ConfigError::new("CACHE_DEGRADED_L1_TTL", e))?;
        }
        if let Some(v) = lookup("CACHE_STALE_BOUND") {
            config.stale_bound =
                parse_duration(&v).map_err(|e| ConfigError::new("CACHE_STALE_BOUND", e))?;
        }
        if let Some(v) = lookup("CACHE_PENDING_INVALIDATIONS") {
            config.pending_invalidations = parse_count("CACHE_PENDING_INVALIDATIONS", &v)?;
        }
        if let Some(v) = lookup("CACHE_LOCK") {
            config.lock = parse_bool("CACHE_LOCK", &v)?;
        }
        if let Some(v) = lookup("CACHE_LOCK_TTL") {
            config.lock_ttl = parse_positive("CACHE_LOCK_TTL", &v, "lock lifetime")?;
        }
        if let Some(v) = lookup("CACHE_L2_COMPRESS_ABOVE") {
            config.l2_compress_above = Some(parse_bytes("CACHE_L2_COMPRESS_ABOVE", &v)?);
        }
        if let Some(v) = lookup("CACHE_DEFAULT_TTL") {
            config.default_ttl = parse_ttl("CACHE_DEFAULT_TTL", &v)?;
        }
        for preset in crate::ttl::ALL {
            let var = format!("{TTL_PRESET_PREFIX}{}", preset.name().to_ascii_uppercase());
            if let Some(v) = lookup(&var) {
                config.apply_ttl_preset_var(&var, preset.name(), &v)?;
            }
        }
        if let Some(v) = lookup("CACHE_STALE_TTL") {
            config.stale_ttl =
                parse_duration(&v).map_err(|e| ConfigError::new("CACHE_STALE_TTL", e))?;
        }
        if let Some(v) = lookup("CACHE_L1_MAX_BYTES") {
            config.l1_max_bytes = parse_bytes("CACHE_L1_MAX_BYTES", &v)?;
        }
        if let Some(v) = lookup("CACHE_L1_ENGINE") {
            config.engine = match v.trim().to_ascii_lowercase().as_str() {
                "quick_cache" | "quick-cache" | "quickcache" => Engine::QuickCache,
                "moka" => Engine::Moka,
                _ => {
                    return Err(ConfigError::new(
                        "CACHE_L1_ENGINE",
                        format!("unknown engine `{v}`: expected one of: quick_cache, moka"),
                    ))
                }
            };
        }
        config.validate()?;
        Ok(config)
    }

    /// `CACHE_TTL_<NAME>`: the duration of the preset `<name>`.
    fn apply_ttl_preset_var(
        &mut self,
        var: &str,
        name: &str,
        value: &str,
    ) -> Result<(), ConfigError> {
        let name = name.to_ascii_lowercase();
        if !crate::preset::is_preset_name(&name) {
            return Err(ConfigError::new(
                var,
                "expected CACHE_TTL_<NAME>, <NAME> the name of a TTL preset (letters, digits and `_`)",
            ));
        }
        self.ttl_presets.insert(name, parse_ttl(var, value)?);
        Ok(())
    }

    fn apply_namespace_var(
        &mut self,
        var: &str,
        rest: &str,
        value: &str,
    ) -> Result<(), ConfigError> {
        let settings = ["_ENABLED", "_DEFAULT_TTL", "_L1_MAX_BYTES"];
        let Some((name, setting)) = settings
            .iter()
            .find_map(|s| rest.strip_suffix(s).map(|name| (name, *s)))
            .filter(|(name, _)| !name.is_empty())
        else {
            return Err(ConfigError::new(
                var,
                "expected CACHE_NAMESPACE_<NAME>_ENABLED, _DEFAULT_TTL or _L1_MAX_BYTES",
            ));
        };
        let key = name.to_ascii_lowercase().replace('_', "-");
        let ns = self.namespaces.entry(key).or_default();
        match setting {
            "_ENABLED" => ns.enabled = Some(parse_bool(var, value)?),
            "_DEFAULT_TTL" => ns.default_ttl = Some(parse_ttl(var, value)?),
            _ => ns.l1_max_bytes = Some(parse_bytes(var, value)?),
        }
        Ok(())
    }

    /// Checks that the settings fit together.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        for (name, ttl) in &self.ttl_presets {
            let var = format!("{TTL_PRESET_PREFIX}{}", name.to_ascii_uppercase());
            if !crate::preset::is_preset_name(name) {
                return Err(ConfigError::new(
                    &var,
                    format!("`{name}` is not a TTL preset's name: lower-case letters, digits and `_`, starting with a letter"),
                ));
            }
            if ttl.is_zero() {
                return Err(ConfigError::new(&var, "a TTL of zero would cache nothing"));
            }
        }
        if matches!(self.backend, Backend::Redis | Backend::Hybrid) && self.redis_url.is_none() {
            return Err(ConfigError::new(
                "REDIS_URL",
                "the redis and hybrid backends need REDIS_URL, e.g. redis://127.0.0.1:6379/0",
            ));
        }
        if self.redis_timeout.is_zero() {
            return Err(ConfigError::new(
                "CACHE_REDIS_TIMEOUT",
                "must be more than 0",
            ));
        }
        if self.breaker_failures == 0 {
            return Err(ConfigError::new(
                "CACHE_BREAKER_FAILURES",
                "must be at least 1",
            ));
        }
        if self.breaker_cooldown.is_zero() {
            return Err(ConfigError::new(
                "CACHE_BREAKER_COOLDOWN",
                "must be more than 0",
            ));
        }
        if self.stale_bound < MIN_STALE_BOUND {
            return Err(ConfigError::new(
                "CACHE_STALE_BOUND",
                format!(
                    "{:?} is below the least bound, 20ms (the subscription is pinged about three times within it): write 20ms or more",
                    self.stale_bound
                ),
            ));
        }
        if self.lock_ttl.is_zero() {
            return Err(ConfigError::new("CACHE_LOCK_TTL", "must be more than 0"));
        }
        if self.pending_invalidations == 0 {
            return Err(ConfigError::new(
                "CACHE_PENDING_INVALIDATIONS",
                "must be at least 1",
            ));
        }
        if !(32..=512 << 20).contains(&self.l2_max_value_bytes) {
            return Err(ConfigError::new(
                "CACHE_L2_MAX_VALUE_BYTES",
                "must be between 32 bytes and 512MB (the largest Redis string)",
            ));
        }
        if self.l2_compress_above.is_some() && !cfg!(feature = "compression") {
            return Err(ConfigError::new(
                "CACHE_L2_COMPRESS_ABOVE",
                "compression needs the `compression` feature of cache-runtime",
            ));
        }
        if let Some(bad) = namespace_problem(&self.key_prefix) {
            return Err(ConfigError::new("CACHE_KEY_PREFIX", bad));
        }
        if self.l1_max_bytes == 0 {
            return Err(ConfigError::new(
                "CACHE_L1_MAX_BYTES",
                "must be more than 0",
            ));
        }
        Ok(())
    }

    /// The settings of the named cache `name`: these, with the namespace's
    /// overrides applied.
    pub(crate) fn for_namespace(&self, name: &str) -> Config {
        let mut config = self.clone();
        let key = name.to_ascii_lowercase().replace('_', "-");
        if let Some(ns) = self.namespaces.get(&key) {
            if let Some(enabled) = ns.enabled {
                config.enabled = self.enabled && enabled;
            }
            if let Some(ttl) = ns.default_ttl {
                config.default_ttl = ttl;
            }
            if let Some(bytes) = ns.l1_max_bytes {
                config.l1_max_bytes = bytes;
            }
            if let Some(engine) = ns.engine {
                config.engine = engine;
            }
        }
        config
    }
}

/// What is wrong with a key prefix, if anything: it is put in front of
/// `SCAN` patterns as it is, and no prefix may be a prefix of another's keys.
pub(crate) fn namespace_problem(prefix: &str) -> Option<String> {
    let shown = prefix.escape_debug();
    if prefix.is_empty() {
        return Some(format!(
            "namespace `{shown}` is empty: give each application its own, e.g. `orders-svc`"
        ));
    }
    if prefix.len() > 128 {
        return Some(format!("namespace `{shown}` is longer than 128 bytes"));
    }
    prefix
        .chars()
        .find(|&c| is_glob_meta(c) || c == SEPARATOR || !c.is_ascii_graphic())
        .map(|c| {
            format!(
                "namespace `{shown}` contains `{}`: use ASCII letters, digits and punctuation other than * ? [ ] \\ :",
                c.escape_debug()
            )
        })
}

fn parse_bool(var: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::new(
            var,
            format!("`{value}` is not a switch: expected true or false"),
        )),
    }
}

fn parse_ttl(var: &str, value: &str) -> Result<Duration, ConfigError> {
    match parse_duration(value) {
        Ok(ttl) if ttl.is_zero() => Err(ConfigError::new(
            var,
            "a TTL of zero would cache nothing: set CACHE_ENABLED=false to turn caching off",
        )),
        Ok(ttl) => Ok(ttl),
        Err(e) => Err(ConfigError::new(var, e)),
    }
}

/// A duration that must be above zero, for what is not a TTL.
fn parse_positive(var: &str, value: &str, what: &str) -> Result<Duration, ConfigError> {
    match parse_duration(value) {
        Ok(d) if d.is_zero() => Err(ConfigError::new(
            var,
            format!("a {what} of zero is not allowed: write a duration above zero, e.g. 250ms"),
        )),
        Ok(d) => Ok(d),
        Err(e) => Err(ConfigError::new(var, e)),
    }
}

fn parse_count(var: &str, value: &str) -> Result<u64, ConfigError> {
    value
        .trim()
        .replace('_', "")
        .parse::<u64>()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| {
            ConfigError::new(
                var,
                format!("`{value}` is not a count: write a whole number above 0, e.g. 5"),
            )
        })
}

fn parse_bytes(var: &str, value: &str) -> Result<u64, ConfigError> {
    parse_size(value).map_err(|e| ConfigError::new(var, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn sizes_take_binary_suffixes_and_errors_say_what_is_wrong() {
        let bytes = |v: &str| from(&[("CACHE_L1_MAX_BYTES", v)]).map(|c| c.l1_max_bytes);
        assert_eq!(bytes("64MiB").unwrap(), 64 << 20);
        assert_eq!(bytes("64MB").unwrap(), 64 << 20);
        assert_eq!(bytes("512 KiB").unwrap(), 512 << 10);
        let message = |r: Result<u64, ConfigError>| r.unwrap_err().to_string();
        assert!(message(bytes("0")).contains("must be above 0"));
        assert!(message(bytes("lots")).contains("is not a size"));
        let timeout = from(&[("CACHE_REDIS_TIMEOUT", "0ms")])
            .unwrap_err()
            .to_string();
        assert!(timeout.contains("timeout of zero"), "{timeout}");
        assert!(!timeout.contains("TTL"), "{timeout}");
        let fraction = from(&[("CACHE_DEFAULT_TTL", "1.5s")])
            .unwrap_err()
            .to_string();
        assert!(
            fraction.contains("fraction") && fraction.contains("1s500ms"),
            "{fraction}"
        );
    }

    #[test]
    fn reads_every_variable() {
        let c = from(&[
            ("CACHE_ENABLED", "false"),
            ("CACHE_BACKEND", "hybrid"),
            ("REDIS_URL", "redis://127.0.0.1:6379/0"),
            ("CACHE_DEFAULT_TTL", "1h30m"),
            ("CACHE_STALE_TTL", "5m"),
            ("CACHE_L1_MAX_BYTES", "16MB"),
            ("CACHE_L1_ENGINE", "moka"),
            ("CACHE_BREAKER_FAILURES", "3"),
            ("CACHE_BREAKER_COOLDOWN", "500ms"),
            ("CACHE_PENDING_INVALIDATIONS", "1_000"),
            ("CACHE_LOCK", "yes"),
            ("CACHE_LOCK_TTL", "3s"),
            ("CACHE_DEGRADED_L1_TTL", "5s"),
            ("CACHE_STALE_BOUND", "100ms"),
        ])
        .unwrap();
        assert_eq!(c.degraded_l1_ttl, Duration::from_secs(5));
        assert_eq!(c.stale_bound, Duration::from_millis(100));
        assert!(c.lock);
        assert_eq!(c.lock_ttl, Duration::from_secs(3));
        assert_eq!(c.breaker_failures, 3);
        assert_eq!(c.breaker_cooldown, Duration::from_millis(500));
        assert_eq!(c.pending_invalidations, 1000);
        assert!(!c.enabled);
        assert_eq!(c.backend, Backend::Hybrid);
        assert_eq!(c.default_ttl, Duration::from_secs(5400));
        assert_eq!(c.stale_ttl, Duration::from_secs(300));
        assert_eq!(c.l1_max_bytes, 16 << 20);
        assert_eq!(c.engine, Engine::Moka);
    }

    #[test]
    fn bad_values_are_errors_naming_the_variable() {
        for (var, value) in [
            ("CACHE_BACKEND", "memcached"),
            ("CACHE_ENABLED", "maybe"),
            ("CACHE_DEFAULT_TTL", "2 minutes"),
            ("CACHE_DEFAULT_TTL", "0s"),
            ("CACHE_L1_MAX_BYTES", "lots"),
            ("CACHE_L1_ENGINE", "lru"),
            ("CACHE_BREAKER_FAILURES", "0"),
            ("CACHE_BREAKER_FAILURES", "-1"),
            ("CACHE_BREAKER_COOLDOWN", "0s"),
            ("CACHE_PENDING_INVALIDATIONS", "many"),
            ("CACHE_LOCK", "sometimes"),
            ("CACHE_LOCK_TTL", "0s"),
            ("CACHE_DEGRADED_L1_TTL", "a while"),
            ("CACHE_STALE_BOUND", "soon"),
            ("CACHE_STALE_BOUND", "5ms"),
        ] {
            let err = from(&[(var, value)]).unwrap_err();
            assert_eq!(err.variable(), var, "{err}");
        }
        let err = from(&[("CACHE_BACKEND", "redis")]).unwrap_err();
        assert_eq!(err.variable(), "REDIS_URL");
    }

    #[test]
    fn namespace_overrides() {
        let mut c = Config::default();
        c.apply_namespace_var(
            "CACHE_NAMESPACE_LOOKUPS_ENABLED",
            "LOOKUPS_ENABLED",
            "false",
        )
        .unwrap();
        c.apply_namespace_var(
            "CACHE_NAMESPACE_LOOKUPS_DEFAULT_TTL",
            "LOOKUPS_DEFAULT_TTL",
            "2h",
        )
        .unwrap();
        let ns = c.for_namespace("lookups");
        assert!(!ns.enabled);
        assert_eq!(ns.default_ttl, Duration::from_secs(7200));
        assert!(c.for_namespace("other").enabled);
        assert!(c
            .apply_namespace_var("CACHE_NAMESPACE_X_COLOR", "X_COLOR", "red")
            .is_err());
    }
}
