//! TTL presets: named durations a `#[cached]` function takes as its `ttl`
//! (`ttl = "@list"` for the built-in ones, `ttl = MY_PRESET` for a
//! constant of the application's), with a default in code and an override
//! from the environment (`CACHE_TTL_LIST=5m`) or the builder
//! ([`CacheBuilder::ttl_preset`](crate::CacheBuilder::ttl_preset)): the
//! durations of a service change in one place.

use std::time::Duration;

/// A named TTL. The built-in ones are in [`ttl`](crate::ttl); an
/// application declares its own as a constant and writes its path in the
/// attribute. A name is lower-case ASCII letters, digits and `_`,
/// starting with a letter (checked at compile time in a constant): the
/// environment overrides it as `CACHE_TTL_<NAME>`.
///
/// ```
/// use std::time::Duration;
/// use cache_runtime::{cached, Cache, TtlPreset};
///
/// const CATALOG: TtlPreset = TtlPreset::new("catalog", Duration::from_secs(6 * 3600));
///
/// #[cached(ttl = CATALOG, key = "catalog:<page>")]
/// async fn catalog(page: u32) -> Vec<u64> {
///     vec![u64::from(page)]
/// }
///
/// let cache = Cache::builder().ttl_preset("catalog", Duration::from_secs(60)).build().unwrap();
/// assert_eq!(CATALOG.resolve(&cache), Duration::from_secs(60));
/// assert_eq!(CATALOG.default(), Duration::from_secs(6 * 3600));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TtlPreset {
    name: &'static str,
    default: Duration,
}

impl TtlPreset {
    /// A preset named `name`, `default` long unless overridden.
    ///
    /// # Panics
    /// When `name` is not a preset name (at compile time in a constant)
    /// or `default` is zero.
    pub const fn new(name: &'static str, default: Duration) -> TtlPreset {
        assert!(
            is_preset_name(name),
            "a TTL preset's name is lower-case ASCII letters, digits and `_`, starting with a letter"
        );
        assert!(
            !default.is_zero(),
            "a TTL preset of zero would cache nothing"
        );
        TtlPreset { name, default }
    }

    /// Its name.
    ///
    /// ```
    /// assert_eq!(cache_runtime::ttl::LIST.name(), "list");
    /// ```
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// Its duration in code, before any override.
    ///
    /// ```
    /// assert_eq!(cache_runtime::ttl::LOOKUP.default().as_secs(), 24 * 3600);
    /// ```
    pub const fn default(&self) -> Duration {
        self.default
    }

    /// Its duration in `cache`: the override of its configuration
    /// ([`Config::ttl_presets`](crate::Config::ttl_presets)), or the
    /// default.
    ///
    /// ```
    /// let cache = cache_runtime::Cache::builder().build().unwrap();
    /// assert_eq!(cache_runtime::ttl::SHORT.resolve(&cache).as_secs(), 60);
    /// ```
    pub fn resolve(&self, cache: &crate::Cache) -> Duration {
        cache
            .config()
            .ttl_presets
            .get(self.name)
            .copied()
            .unwrap_or(self.default)
    }
}

/// Whether `name` is lower-case ASCII letters, digits and `_`, starting
/// with a letter.
pub(crate) const fn is_preset_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    if bytes.is_empty() || !bytes[0].is_ascii_lowercase() {
        return false;
    }
    let mut at = 1;
    while at < bytes.len() {
        let b = bytes[at];
        if !(b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
            return false;
        }
        at += 1;
    }
    true
}

/// The built-in TTL presets, written `ttl = "@name"` in the attribute
/// (`ttl = "@list"` is [`ttl::LIST`](crate::ttl::LIST)).
///
/// ```
/// use cache_runtime::cached;
///
/// #[cached(ttl = "@list", key = "orders:list:<tenant>")]
/// async fn orders(tenant: &str) -> Vec<u64> {
///     vec![tenant.len() as u64]
/// }
/// ```
pub mod ttl {
    use super::TtlPreset;
    use std::time::Duration;

    /// `@short`: 1 minute.
    pub const SHORT: TtlPreset = TtlPreset::new("short", Duration::from_secs(60));
    /// `@medium`: 10 minutes.
    pub const MEDIUM: TtlPreset = TtlPreset::new("medium", Duration::from_secs(600));
    /// `@long`: 1 hour.
    pub const LONG: TtlPreset = TtlPreset::new("long", Duration::from_secs(3600));
    /// `@list`: 30 seconds, for lists that change with every write.
    pub const LIST: TtlPreset = TtlPreset::new("list", Duration::from_secs(30));
    /// `@report`: 15 minutes, for costly aggregates.
    pub const REPORT: TtlPreset = TtlPreset::new("report", Duration::from_secs(900));
    /// `@lookup`: 24 hours, for reference data (countries, currencies).
    pub const LOOKUP: TtlPreset = TtlPreset::new("lookup", Duration::from_secs(86_400));

    /// Every built-in preset.
    pub const ALL: [TtlPreset; 6] = [SHORT, MEDIUM, LONG, LIST, REPORT, LOOKUP];
}
