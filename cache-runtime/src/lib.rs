#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

#[cfg(feature = "axum")]
pub mod admin;
mod batch;
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
mod breaker;
mod cache;
mod clock;
mod codec;
#[cfg(feature = "http")]
pub mod conditional;
mod config;
pub mod context;
mod entry;
#[cfg(feature = "redis")]
mod envelope;
mod flight;
mod health;
mod hooks;
mod invalidation;
mod key;
mod l1;
#[cfg(feature = "redis")]
mod l2;
#[cfg(feature = "metrics")]
mod metrics_hooks;
mod outcome;
mod pattern;
#[cfg(feature = "redis")]
mod pending;
mod preset;
mod prometheus;
mod scope;
mod secret;
#[cfg(feature = "redis")]
mod shared;
mod site;
mod stats;
mod tags;
#[cfg(feature = "tracing")]
mod trace;

#[doc(hidden)]
#[allow(missing_docs)]
pub mod __private;

use __private::{RedisCodec, Stores, ValueCodec};

/// Called by `#[cached]` with the kind of its return type, before anything
/// else: a value that is not a [`CachedValue`] is reported here, in that
/// trait's words (rustc then leaves out the same error of the runtime's
/// internals, at the same place).
#[doc(hidden)]
#[inline(always)]
pub fn cached_value<K, R>(kind: K) -> K
where
    K: Stores<R>,
    K::Value: CachedValue,
{
    kind
}

/// Called by `#[cached]` with `tier = "l2"`, `"both"` or `lock = true`: the
/// codec of its value, which must be serde; a value that is not is reported
/// here, in [`StorableInRedis`]'s words.
#[doc(hidden)]
#[inline(always)]
pub fn codec_for_redis<C>(codec: C) -> Option<ValueCodec>
where
    C: RedisCodec,
    C::Unencodable: StorableInRedis,
{
    codec.codec()
}

/// Called by `#[cached(batch = "..")]` with its ids: a collection that is
/// not [`BatchIds`] is reported here, in that trait's words.
#[doc(hidden)]
#[inline(always)]
pub fn batch_ids<I: BatchIds>(ids: I) -> Vec<I::Id> {
    ids.into_ids()
}

/// Called by `#[cached(batch = "..")]` before anything else: a return type
/// that is not a [`BatchReturn`], or whose values are not a
/// [`CachedValue`], is reported here, in those traits' words.
#[doc(hidden)]
#[inline(always)]
pub fn batch_return<R>()
where
    R: BatchReturn,
    R::Value: CachedValue,
{
}

/// Called by `#[cached(ttl = PRESET)]` with its preset: a path to what is
/// not a [`TtlPreset`] is reported here.
#[doc(hidden)]
#[inline(always)]
pub const fn ttl_preset(preset: &'static TtlPreset) -> &'static TtlPreset {
    preset
}

#[doc(hidden)]
/// Implemented only by a marker of the runtime: the bound that `tier = "l2"` and `tier = "both"` put
/// on a value that is not serde, so that the mistake is a compile error.
#[diagnostic::on_unimplemented(
    message = "`tier = \"l2\"`, `tier = \"both\"` and `lock = true` store values in Redis, but the value of `{Self}` cannot be encoded",
    label = "the cached value must implement `serde::Serialize` and `serde::de::DeserializeOwned`",
    note = "derive them on the value type (for `Result<T, E>` that is `T`): `#[derive(serde::Serialize, serde::Deserialize)]`",
    note = "or keep the function in process with `tier = \"l1\"` (and without `lock`)"
)]
pub trait StorableInRedis {}

pub use batch::{BatchIds, BatchReturn};
pub use breaker::BreakerState;
pub use cache::{
    Cache, CacheBuilder, Local, Shareable, WarmOptions, WarmReport, WarmerError, WarmerHealth,
};
pub use config::{Backend, Config, ConfigError, Engine, NamespaceConfig};
#[cfg(feature = "redis")]
pub use health::ReadyError;
pub use health::{Health, HealthStatus};
pub use hooks::{Event, Hooks, Tier};
pub use invalidation::{Invalidation, SharedInvalidation};
pub use key::{key_text, KeyBuf, KeyPart, KeyWriter, MAX_KEY_BYTES};
#[cfg(feature = "metrics")]
pub use metrics_hooks::MetricsHooks;
pub use outcome::CachedValue;
pub use pattern::{Pattern, PatternError};
pub use preset::{ttl, TtlPreset};
pub use stats::Stats;
pub use tags::{TagError, MAX_TAGS, MAX_TAG_BYTES};

pub use codec::{Codec, CodecError};
#[cfg(feature = "redis")]
pub use envelope::{
    Deadlines, Decoded, Envelope, EnvelopeError, EnvelopeHeader, TypeFingerprint,
    ENVELOPE_HARD_MAX_BYTES, ENVELOPE_HEADER_LEN, ENVELOPE_VERSION,
};
#[cfg(feature = "redis")]
pub use l2::builder::RedisL2Builder;
#[cfg(feature = "redis")]
pub use l2::cluster::CLUSTER_GROUPS;
#[cfg(feature = "redis")]
pub use l2::redis::RedisL2;
#[cfg(feature = "redis")]
pub use l2::{L2Error, L2ErrorKind};

pub use cache_macros::{cached, invalidates, KeyPart};

/// Helpers for tests of code that uses the cache.
pub mod testing {
    pub use crate::clock::ManualClock;
}
