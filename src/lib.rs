//! Integration tests, examples and benchmarks of the cache workspace.

/// The examples of the workspace's README and of its guides (`docs/`),
/// compiled and run as doc tests (cache-runtime's crate documentation is
/// its own, shorter README).
macro_rules! doctested {
    ($($name:ident = $path:literal),* $(,)?) => {
        $(
            #[cfg(doctest)]
            #[doc = include_str!($path)]
            pub struct $name;
        )*
    };
}

doctested! {
    Readme = "../README.md",
    Attributes = "../docs/attributes.md",
    Configuration = "../docs/configuration.md",
    FromCached = "../docs/from-cached.md",
    Handle = "../docs/handle.md",
    Instances = "../docs/instances.md",
    KnownLimits = "../docs/known-limits.md",
    Layout = "../docs/layout.md",
    Loading = "../docs/loading.md",
    Operations = "../docs/operations.md",
    OrdersService = "../docs/orders-service.md",
    Performance = "../docs/performance.md",
    Security = "../docs/security.md",
    SharedTier = "../docs/shared-tier.md",
    Tags = "../docs/tags.md",
    WhenRedisFails = "../docs/when-redis-fails.md",
}
