//! Integration tests, examples and benchmarks of the cache workspace.

/// The examples of the workspace's README, compiled and run as doc tests
/// (cache-runtime's crate documentation is its own, shorter README).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
