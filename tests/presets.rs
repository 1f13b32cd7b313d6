//! TTL presets: `ttl = "@list"` (built in) and `ttl = PRESET` (the
//! application's constant), with their durations changed in one place,
//! from the builder or the environment.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cache_runtime::testing::ManualClock;
use cache_runtime::{cached, Cache, Config, TtlPreset};

static LIST_CALLS: AtomicU64 = AtomicU64::new(0);
static CATALOG_CALLS: AtomicU64 = AtomicU64::new(0);

#[cached(ttl = "@list", key = "orders:list:<tenant>")]
async fn orders(tenant: &str) -> u64 {
    let _ = tenant;
    LIST_CALLS.fetch_add(1, Ordering::SeqCst)
}

const CATALOG: TtlPreset = TtlPreset::new("catalog", Duration::from_secs(6 * 3600));

#[cached(ttl = CATALOG, key = "catalog:<page>")]
async fn catalog(page: u32) -> u64 {
    let _ = page;
    CATALOG_CALLS.fetch_add(1, Ordering::SeqCst)
}

/// Whether a read `after` the first one, in a cache built by `builder`,
/// called the origin again.
async fn reloaded_after(
    builder: cache_runtime::CacheBuilder,
    after: Duration,
    read: impl AsyncFn(&Cache) -> u64,
) -> bool {
    let clock = ManualClock::new();
    let cache = builder.clock(clock.clone()).build().unwrap();
    let first = read(&cache).await;
    clock.advance(after);
    read(&cache).await != first
}

#[tokio::test]
async fn a_built_in_preset_lives_its_default_or_its_override() {
    let read = async |cache: &Cache| cache.scope(orders("acme")).await;
    let secs = Duration::from_secs;
    assert!(!reloaded_after(Cache::builder(), secs(29), read).await);
    assert!(reloaded_after(Cache::builder(), secs(31), read).await);
    let five = || Cache::builder().ttl_preset("list", secs(5));
    assert!(!reloaded_after(five(), secs(4), read).await);
    assert!(reloaded_after(five(), secs(6), read).await);
}

#[tokio::test]
async fn an_application_preset_lives_its_default_or_its_override() {
    let read = async |cache: &Cache| cache.scope(catalog(1)).await;
    let hours = |h: u64| Duration::from_secs(h * 3600);
    assert!(!reloaded_after(Cache::builder(), hours(5), read).await);
    assert!(reloaded_after(Cache::builder(), hours(7), read).await);
    let one = || Cache::builder().ttl_preset("catalog", hours(1));
    assert!(reloaded_after(one(), hours(2), read).await);
}

#[test]
fn the_environment_overrides_presets_and_a_bad_one_is_a_start_up_error() {
    let config = Config::from_lookup(|var| (var == "CACHE_TTL_LIST").then(|| "5m".into())).unwrap();
    assert_eq!(config.ttl_presets["list"], Duration::from_secs(300));

    let zero = Config::from_lookup(|var| (var == "CACHE_TTL_REPORT").then(|| "0s".into()));
    let error = zero.unwrap_err().to_string();
    assert!(error.contains("CACHE_TTL_REPORT"), "{error}");
    let garbage = Config::from_lookup(|var| (var == "CACHE_TTL_SHORT").then(|| "soon".into()));
    assert!(garbage.unwrap_err().to_string().contains("CACHE_TTL_SHORT"));

    let bad_name = Cache::builder()
        .ttl_preset("Catalog Page", Duration::from_secs(1))
        .build();
    let Err(error) = bad_name.map(drop) else {
        panic!("a bad name is refused");
    };
    let error = error.to_string();
    assert!(error.contains("not a TTL preset's name"), "{error}");
}
