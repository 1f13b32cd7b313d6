//! Integration tests, examples and benchmarks of the cache workspace.
