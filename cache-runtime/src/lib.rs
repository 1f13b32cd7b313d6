#![doc = include_str!("../../README.md")]
#![warn(missing_docs)]

mod cache;
mod clock;
mod config;
#[allow(dead_code)] // `parse_percent` serves the macros, which compile this file too.
mod duration;
mod entry;
mod flight;
mod hooks;
mod key;
mod l1;
mod outcome;
mod pattern;
mod scope;
mod stats;

#[doc(hidden)]
#[allow(missing_docs)]
pub mod __private;

pub use cache::{Cache, CacheBuilder};
pub use config::{Backend, Config, ConfigError, Engine, NamespaceConfig};
pub use hooks::{Event, Hooks, Tier};
pub use key::{key_text, KeyBuf, KeyPart, KeyWriter};
pub use pattern::{Pattern, PatternError};
pub use stats::Stats;

pub use cache_macros::{cached, invalidates, KeyPart};

/// Helpers for tests of code that uses the cache.
pub mod testing {
    pub use crate::clock::ManualClock;
}
