//! Runtime behaviour through the macros: each test runs with a cache of its
//! own (`Cache::scope` / `Cache::scope_sync`) and counts origin calls.

use std::fmt::Display;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use cache_runtime::{cached, invalidates, Cache, KeyPart};

fn new_cache() -> Cache {
    Cache::builder().build().unwrap()
}

fn count(counter: &AtomicUsize) -> usize {
    counter.load(Ordering::SeqCst)
}

// ---------------------------------------------------------------------------
// Free functions: async and plain.

static DOUBLE_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = "1m", key = "double:<n>")]
async fn double(n: u64) -> u64 {
    DOUBLE_CALLS.fetch_add(1, Ordering::SeqCst);
    n * 2
}

#[tokio::test]
async fn async_fn_hits_after_a_miss() {
    let cache = new_cache();
    cache
        .scope(async {
            assert_eq!(double(21).await, 42);
            assert_eq!(double(21).await, 42);
            assert_eq!(count(&DOUBLE_CALLS), 1);
            assert_eq!(double(5).await, 10);
            assert_eq!(count(&DOUBLE_CALLS), 2);
            assert_eq!(cache.get::<u64>("double:21").await, Some(42));
        })
        .await;
    assert_eq!(cache.stats().hits, 2);
}

static SQUARE_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = "1m", key = "square:<n>")]
fn square(n: u32) -> u32 {
    SQUARE_CALLS.fetch_add(1, Ordering::SeqCst);
    if n == 0 {
        // `return` stays inside the cached body.
        return 0;
    }
    n * n
}

#[test]
fn plain_fn_hits_after_a_miss() {
    let cache = new_cache();
    cache.scope_sync(|| {
        assert_eq!(square(3), 9);
        assert_eq!(square(3), 9);
        assert_eq!(square(0), 0);
        assert_eq!(square(0), 0);
    });
    assert_eq!(count(&SQUARE_CALLS), 2);
}

static DEFAULT_KEY_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = "1m")]
fn default_key(a: &str, b: u8) -> String {
    DEFAULT_KEY_CALLS.fetch_add(1, Ordering::SeqCst);
    format!("{a}{b}")
}

#[tokio::test]
async fn default_key_is_module_path_name_and_arguments() {
    let cache = new_cache();
    cache.scope_sync(|| {
        assert_eq!(default_key("x", 1), "x1");
        assert_eq!(default_key("x", 1), "x1");
        assert_eq!(default_key("x", 2), "x2");
    });
    assert_eq!(count(&DEFAULT_KEY_CALLS), 2);
    let key = concat!(module_path!(), "::default_key#:x:1");
    assert_eq!(cache.get::<String>(key).await.as_deref(), Some("x1"));
}

// ---------------------------------------------------------------------------
// Borrowed arguments and user key types.

#[derive(KeyPart)]
struct TenantId(String);

#[derive(KeyPart)]
struct Region {
    country: String,
    zone: u8,
}

#[derive(KeyPart, Clone, Copy)]
enum Currency {
    Eur,
    Usd,
}

static ORDER_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = "2m", key = "order:<tenant>:<id>")]
async fn get_order(tenant: &TenantId, id: u64) -> Result<String, String> {
    ORDER_CALLS.fetch_add(1, Ordering::SeqCst);
    Ok(format!("{}-{id}", tenant.0))
}

static LABEL_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = "2m", key = "label:<name>:<region>:<currency>")]
fn label(name: &str, region: &Region, currency: Currency) -> String {
    LABEL_CALLS.fetch_add(1, Ordering::SeqCst);
    format!(
        "{name}/{}{}/{}",
        region.country, region.zone, currency as u8
    )
}

#[tokio::test]
async fn borrowed_arguments_and_derived_key_parts() {
    let cache = new_cache();
    let acme = TenantId("acme".to_owned());
    cache
        .scope(async {
            assert_eq!(get_order(&acme, 1).await.unwrap(), "acme-1");
            assert_eq!(get_order(&acme, 1).await.unwrap(), "acme-1");
            assert_eq!(count(&ORDER_CALLS), 1);
            let region = Region {
                country: "fr".to_owned(),
                zone: 3,
            };
            assert_eq!(label("a b", &region, Currency::Eur), "a b/fr3/0");
            assert_eq!(label("a b", &region, Currency::Eur), "a b/fr3/0");
            assert_eq!(label("a b", &region, Currency::Usd), "a b/fr3/1");
            assert_eq!(count(&LABEL_CALLS), 2);
        })
        .await;
    assert_eq!(
        cache.get::<String>("order:acme:1").await.as_deref(),
        Some("acme-1")
    );
    assert_eq!(
        cache.get::<String>("label:a%20b:fr,3:Eur").await.as_deref(),
        Some("a b/fr3/0")
    );
}

// ---------------------------------------------------------------------------
// Methods.

struct Catalog {
    tenant: TenantId,
    calls: AtomicUsize,
}

impl Catalog {
    #[cached(ttl = "1m", key = "price:<self.tenant>:<sku>")]
    async fn price(&self, sku: &str) -> Option<u64> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Some(sku.len() as u64)
    }

    #[cached(ttl = "1m", key = "name:<self.tenant.0>")]
    fn name(&self) -> String {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.tenant.0.to_uppercase()
    }
}

#[tokio::test]
async fn methods_are_keyed_by_their_instance() {
    let cache = new_cache();
    let acme = Catalog {
        tenant: TenantId("acme".to_owned()),
        calls: AtomicUsize::new(0),
    };
    let globex = Catalog {
        tenant: TenantId("globex".to_owned()),
        calls: AtomicUsize::new(0),
    };
    cache
        .scope(async {
            assert_eq!(acme.price("abc").await, Some(3));
            assert_eq!(acme.price("abc").await, Some(3));
            assert_eq!(globex.price("abc").await, Some(3));
            assert_eq!(acme.name(), "ACME");
            assert_eq!(acme.name(), "ACME");
            assert_eq!(globex.name(), "GLOBEX");
        })
        .await;
    assert_eq!(count(&acme.calls), 2);
    assert_eq!(count(&globex.calls), 2);
    assert_eq!(
        cache.get::<Option<u64>>("price:globex:abc").await,
        Some(Some(3))
    );
}

// ---------------------------------------------------------------------------
// Generic functions.

static DESCRIBE_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = "1m", key = "describe:<item>")]
fn describe<T: KeyPart + Display>(item: T) -> String {
    DESCRIBE_CALLS.fetch_add(1, Ordering::SeqCst);
    format!("<{item}>")
}

#[test]
fn generic_functions() {
    let cache = new_cache();
    cache.scope_sync(|| {
        assert_eq!(describe(7u8), "<7>");
        assert_eq!(describe(7u8), "<7>");
        assert_eq!(describe("seven"), "<seven>");
        assert_eq!(describe(String::from("seven")), "<seven>");
    });
    // `"seven"` and `String::from("seven")` write the same key.
    assert_eq!(count(&DESCRIBE_CALLS), 2);
}

// ---------------------------------------------------------------------------
// `#[async_trait]`.

#[async_trait]
trait Repo {
    async fn user(&self, id: u64) -> Result<String, String>;
    async fn rename(&self, id: u64, name: String) -> Result<(), String>;
    async fn count(&self) -> usize;
}

struct PgRepo {
    tenant: String,
    calls: AtomicUsize,
}

#[async_trait]
impl Repo for PgRepo {
    #[cached(ttl = "1m", key = "user:<self.tenant>:<id>")]
    async fn user(&self, id: u64) -> Result<String, String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if id == 0 {
            return Err("no user 0".to_owned());
        }
        Ok(format!("{}#{id}", self.tenant))
    }

    #[invalidates("user:<self.tenant>:<id>")]
    async fn rename(&self, id: u64, name: String) -> Result<(), String> {
        if name.is_empty() {
            return Err("empty name".to_owned());
        }
        Ok(())
    }

    #[cached(ttl = "1m", key = "count:<self.tenant>")]
    async fn count(&self) -> usize {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.tenant.len()
    }
}

#[tokio::test]
async fn async_trait_methods() {
    let cache = new_cache();
    let repo = PgRepo {
        tenant: "acme".to_owned(),
        calls: AtomicUsize::new(0),
    };
    let repo: &dyn Repo = &repo;
    cache
        .scope(async {
            assert_eq!(repo.user(1).await.unwrap(), "acme#1");
            assert_eq!(repo.user(1).await.unwrap(), "acme#1");
            assert_eq!(repo.count().await, 4);
            assert_eq!(repo.count().await, 4);
            assert!(repo.user(0).await.is_err());
            assert!(repo.user(0).await.is_err());
        })
        .await;
    // 1 + 1 + 2 errors, which are never cached.
    assert_eq!(cache.stats().hits, 2);
    assert_eq!(
        cache.get::<String>("user:acme:1").await.as_deref(),
        Some("acme#1")
    );
    cache
        .scope(async { repo.rename(1, String::new()).await.unwrap_err() })
        .await;
    assert!(cache.get::<String>("user:acme:1").await.is_some());
    cache
        .scope(async { repo.rename(1, "new".to_owned()).await.unwrap() })
        .await;
    assert!(cache.get::<String>("user:acme:1").await.is_none());
}

#[tokio::test]
async fn async_trait_futures_are_send() {
    fn assert_send<T: Send>(t: T) -> T {
        t
    }
    let repo = PgRepo {
        tenant: "acme".to_owned(),
        calls: AtomicUsize::new(0),
    };
    let cache = new_cache();
    let name =
        tokio::spawn(async move { cache.scope(assert_send(async { repo.user(2).await })).await })
            .await
            .unwrap();
    assert_eq!(name.unwrap(), "acme#2");
}

// ---------------------------------------------------------------------------
// What is cached: `None` with `none = true` only, `Err` never.

static FIND_CALLS: AtomicUsize = AtomicUsize::new(0);
static FIND_NONE_CALLS: AtomicUsize = AtomicUsize::new(0);
static FALLIBLE_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = "1m", key = "find:<id>")]
async fn find(id: u64) -> Option<u64> {
    FIND_CALLS.fetch_add(1, Ordering::SeqCst);
    (id > 0).then_some(id)
}

#[cached(ttl = "1m", key = "find_none:<id>", none = true)]
async fn find_caching_none(id: u64) -> Option<u64> {
    FIND_NONE_CALLS.fetch_add(1, Ordering::SeqCst);
    (id > 0).then_some(id)
}

#[cached(ttl = "1m", key = "fallible:<id>")]
fn fallible(id: u64) -> std::io::Result<u64> {
    FALLIBLE_CALLS.fetch_add(1, Ordering::SeqCst);
    if id == 0 {
        Err(std::io::Error::other("zero"))?;
    }
    Ok(id)
}

#[tokio::test]
async fn none_is_cached_only_when_asked_and_err_never() {
    let cache = new_cache();
    cache
        .scope(async {
            assert_eq!(find(0).await, None);
            assert_eq!(find(0).await, None);
            assert_eq!(count(&FIND_CALLS), 2);
            assert_eq!(find(1).await, Some(1));
            assert_eq!(find(1).await, Some(1));
            assert_eq!(count(&FIND_CALLS), 3);

            assert_eq!(find_caching_none(0).await, None);
            assert_eq!(find_caching_none(0).await, None);
            assert_eq!(count(&FIND_NONE_CALLS), 1);

            assert!(fallible(0).is_err());
            assert!(fallible(0).is_err());
            assert_eq!(count(&FALLIBLE_CALLS), 2);
            assert_eq!(fallible(1).unwrap(), 1);
            assert_eq!(fallible(1).unwrap(), 1);
            assert_eq!(count(&FALLIBLE_CALLS), 3);
        })
        .await;
}

// ---------------------------------------------------------------------------
// `#[invalidates]`.

static PROFILE_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = "1m", key = "profile:<tenant>:<id>")]
async fn profile(tenant: &str, id: u64) -> Result<String, String> {
    PROFILE_CALLS.fetch_add(1, Ordering::SeqCst);
    Ok(format!("{tenant}/{id}"))
}

#[invalidates("profile:<tenant>:<id>")]
async fn update_profile(tenant: &str, id: u64, ok: bool) -> Result<u64, String> {
    if ok {
        Ok(id)
    } else {
        Err("refused".to_owned())
    }
}

#[invalidates("profile:<tenant>:*")]
fn reset_tenant(tenant: String) {
    drop(tenant); // the body may consume what the pattern uses
}

#[invalidates("profile:<tenant>:<id>", before = true)]
async fn reload_profile(tenant: &str, id: u64) -> Result<String, String> {
    // Runs after the first invalidation: this call reaches the origin.
    profile(tenant, id).await
}

#[tokio::test]
async fn invalidates_runs_on_ok_only() {
    let cache = new_cache();
    cache
        .scope(async {
            profile("acme", 1).await.unwrap();
            profile("acme", 1).await.unwrap();
            assert_eq!(count(&PROFILE_CALLS), 1);

            update_profile("acme", 1, false).await.unwrap_err();
            profile("acme", 1).await.unwrap();
            assert_eq!(count(&PROFILE_CALLS), 1, "an `Err` invalidates nothing");

            assert_eq!(update_profile("acme", 1, true).await, Ok(1));
            profile("acme", 1).await.unwrap();
            assert_eq!(count(&PROFILE_CALLS), 2, "an `Ok` invalidates");

            profile("acme", 2).await.unwrap();
            profile("globex", 1).await.unwrap();
            assert_eq!(count(&PROFILE_CALLS), 4);
            reset_tenant("acme".to_owned());
            profile("acme", 1).await.unwrap();
            profile("acme", 2).await.unwrap();
            profile("globex", 1).await.unwrap();
            assert_eq!(count(&PROFILE_CALLS), 6, "the pattern covers acme only");

            let before = count(&PROFILE_CALLS);
            reload_profile("acme", 1).await.unwrap();
            assert_eq!(
                count(&PROFILE_CALLS),
                before + 1,
                "`before = true` invalidates before the body"
            );
            // ... and after it: the value the body cached is gone too.
            profile("acme", 1).await.unwrap();
            assert_eq!(count(&PROFILE_CALLS), before + 2);
        })
        .await;
}

// ---------------------------------------------------------------------------
// Named caches.

static RATE_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = "1m", key = "rate:<currency>", cache = "lookups")]
fn rate(currency: &str) -> u64 {
    RATE_CALLS.fetch_add(1, Ordering::SeqCst);
    currency.len() as u64
}

#[invalidates("rate:<currency>", cache = "lookups")]
fn set_rate(currency: &str) {
    let _ = currency;
}

#[tokio::test]
async fn named_caches() {
    let cache = new_cache();
    cache.scope_sync(|| {
        assert_eq!(rate("EUR"), 3);
        assert_eq!(rate("EUR"), 3);
    });
    assert_eq!(count(&RATE_CALLS), 1);
    assert_eq!(cache.named("lookups").get::<u64>("rate:EUR").await, Some(3));
    assert_eq!(cache.get::<u64>("rate:EUR").await, None);
    cache.scope_sync(|| set_rate("EUR"));
    assert_eq!(cache.named("lookups").get::<u64>("rate:EUR").await, None);
}

// ---------------------------------------------------------------------------
// Keys cannot be forged through arguments.

static JOIN_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = "1m", key = "join:<a>:<b>")]
fn join(a: &str, b: &str) -> String {
    JOIN_CALLS.fetch_add(1, Ordering::SeqCst);
    format!("{a}|{b}")
}

static PAIR_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = "1m", key = "pair:<a>:<b>")]
fn pair(a: &str, b: u64) -> String {
    PAIR_CALLS.fetch_add(1, Ordering::SeqCst);
    format!("{a}|{b}")
}

#[invalidates("join:<a>:*")]
fn forget_joins(a: &str) {
    let _ = a;
}

#[test]
fn arguments_never_forge_a_key() {
    let cache = new_cache();
    cache.scope_sync(|| {
        assert_eq!(join("a:b", "1"), "a:b|1");
        assert_eq!(join("a", "b:1"), "a|b:1");
        assert_eq!(count(&JOIN_CALLS), 2);
        assert_eq!(pair("a:b", 1), "a:b|1");
        assert_eq!(pair("a", 1), "a|1");
        assert_eq!(count(&PAIR_CALLS), 2);

        // A `*` in an argument does not widen an invalidation pattern.
        assert_eq!(join("x", "1"), "x|1");
        forget_joins("*");
        assert_eq!(join("x", "1"), "x|1");
        assert_eq!(count(&JOIN_CALLS), 3);
        forget_joins("x");
        assert_eq!(join("x", "1"), "x|1");
        assert_eq!(count(&JOIN_CALLS), 4);
    });
}
