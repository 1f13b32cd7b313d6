//! The small languages that `cache-macros` and `cache-runtime` both read,
//! written once so that the compile-time checks and the runtime agree:
//!
//! - durations (`"2m"`, `"1h30m"`, `"250ms"`) and percentages (`"10%"`), in
//!   `#[cached(..)]` and in the environment;
//! - sizes (`"64MiB"`), in the environment;
//! - the characters that keys and patterns reserve: what a template's text
//!   may not hold, what an argument's text escapes, what is glob syntax.
//!
//! Every error is a sentence that says what to write instead.
//!
//! ```
//! use std::time::Duration;
//!
//! assert_eq!(cache_grammar::parse_duration("2m"), Ok(Duration::from_secs(120)));
//! assert_eq!(cache_grammar::parse_size("64MiB"), Ok(64 << 20));
//! assert!(cache_grammar::reserved('*').is_some());
//! ```

#![warn(missing_docs)]

mod duration;
mod key;
mod size;

pub use duration::{parse_duration, parse_percent};
pub use key::{is_escaped, is_glob_meta, reserved, Reserved, SEPARATOR, WILDCARD};
pub use size::parse_size;
