//! Tags: `#[cached(tags = [..])]`, tags named from inside the function
//! (`context::tag`), `#[invalidates(tags = [..])]` and
//! `Cache::invalidate_tag`: one write invalidates every value carrying the
//! tag, in process and in Redis, on every instance, with no stale fill.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use cache_runtime::{
    cached, context, invalidates, Cache, SharedInvalidation, TagError, MAX_TAGS, MAX_TAG_BYTES,
};
use serde::{Deserialize, Serialize};
use support::{hybrid, synced};
use tokio::sync::Notify;

/// Origin calls, per test key (tests run in parallel: each keeps to its
/// own names).
static CALLS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn called(name: &str) {
    CALLS.lock().unwrap().push(name.to_owned());
}

fn calls(name: &str) -> usize {
    CALLS.lock().unwrap().iter().filter(|n| *n == name).count()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Page {
    slug: String,
    version: u64,
}

/// The data the pages are made from: a version each product has.
static VERSION: AtomicU64 = AtomicU64::new(0);

/// A page tagged by its site (from the attribute) and by the products it
/// shows (found out in the body).
#[cached(ttl = "10m", key = "page:<site>:<slug>", tags = ["site:<site>", "pages"], skip(products))]
async fn page(site: u32, slug: &str, products: Vec<u64>) -> Page {
    called(&format!("page:{site}:{slug}"));
    for product in products {
        assert!(context::tag(format!("product:{product}")));
    }
    Page {
        slug: slug.to_owned(),
        version: VERSION.load(Ordering::SeqCst),
    }
}

#[invalidates(tags = ["product:<id>"])]
async fn update_product(id: u64) {
    VERSION.fetch_add(1, Ordering::SeqCst);
    let _ = id;
}

/// A plain `fn`, tagged and invalidated by tag.
#[cached(ttl = "10m", key = "label:<id>", tags = ["label:<id>"])]
fn label(id: u64) -> String {
    called(&format!("label:{id}"));
    format!("label {id}")
}

#[invalidates("unrelated:<id>", tags = ["label:<id>"])]
fn relabel(id: u64) {
    let _ = id;
}

#[tokio::test]
async fn a_tag_from_the_attribute_or_the_body_invalidates_what_carries_it() {
    let cache = Cache::builder().build().unwrap();
    let read = |site, slug: &'static str, products: Vec<u64>| {
        let cache = cache.clone();
        async move { cache.scope(page(site, slug, products)).await }
    };
    read(1, "home", vec![42, 7]).await;
    read(1, "about", vec![]).await;
    read(2, "home", vec![7]).await;
    read(1, "home", vec![42, 7]).await;
    assert_eq!(calls("page:1:home"), 1, "a hit");

    // The attribute's tag, resolved from the arguments.
    let done = cache.invalidate_tag("site:1").await.unwrap();
    assert_eq!(done, SharedInvalidation::NotConfigured);
    read(1, "home", vec![42, 7]).await;
    read(1, "about", vec![]).await;
    read(2, "home", vec![7]).await;
    assert_eq!(
        (
            calls("page:1:home"),
            calls("page:1:about"),
            calls("page:2:home")
        ),
        (2, 2, 1),
        "site 1's pages only"
    );

    // A tag named in the body; the invalidating function runs its body.
    cache.scope(update_product(7)).await;
    let home = read(2, "home", vec![7]).await;
    assert_eq!(calls("page:2:home"), 2);
    assert_eq!(home.version, VERSION.load(Ordering::SeqCst));
    read(1, "about", vec![]).await;
    assert_eq!(calls("page:1:about"), 2, "not tagged with product:7");

    // A tag every page carries.
    cache.invalidate_tag("pages").await.unwrap();
    read(1, "about", vec![]).await;
    assert_eq!(calls("page:1:about"), 3);

    let stats = cache.stats();
    assert_eq!(stats.tag_invalidations, 3);
    assert!(cache
        .prometheus_text()
        .contains("cache_tag_invalidations_total{cache=\"default\"} 3"));
}

#[test]
fn a_plain_fn_is_tagged_and_invalidated_by_tag() {
    let cache = Cache::builder().build().unwrap();
    cache.scope_sync(|| {
        assert_eq!(label(5), "label 5");
        label(5);
        label(6);
        relabel(5);
        label(5);
        label(6);
    });
    assert_eq!((calls("label:5"), calls("label:6")), (2, 1));
}

#[tokio::test]
async fn the_handle_tags_from_the_closure_and_reports_bad_tags() {
    let cache = Cache::builder().build().unwrap();
    let ttl = Duration::from_secs(60);
    let n = cache
        .get_or_insert_with("n", ttl, || async {
            assert!(context::tag("numbers"));
            assert!(context::tag("numbers"), "a tag twice is one tag");
            1u32
        })
        .await;
    assert_eq!(n, 1);
    assert!(cache.exists("n").await);
    assert!(!context::tag("numbers"), "outside an origin call");

    assert_eq!(cache.invalidate_tag("").await, Err(TagError::Empty));
    let long = "t".repeat(MAX_TAG_BYTES + 1);
    let refused = cache.invalidate_tag(&long).await.unwrap_err();
    assert_eq!(refused, TagError::TooLong(MAX_TAG_BYTES + 1));
    assert!(refused.to_string().contains("MAX_TAG_BYTES"), "{refused}");
    assert!(cache.exists("n").await);
    cache.invalidate_tag("numbers").await.unwrap();
    assert!(!cache.exists("n").await);
    assert_eq!(cache.get::<u32>("n").await, None);

    // A tag no invalidation can name: returned, not stored.
    let v = cache
        .get_or_insert_with("unnamed", ttl, || async {
            assert!(!context::tag(""));
            3u32
        })
        .await;
    assert_eq!(v, 3);
    assert!(!cache.exists("unnamed").await);

    // Too many tags: returned, not stored (the tags past the bound could
    // not invalidate it).
    let v = cache
        .get_or_insert_with("many", ttl, || async {
            for i in 0..=MAX_TAGS {
                context::tag(format!("t:{i}"));
            }
            2u32
        })
        .await;
    assert_eq!(v, 2);
    assert!(!cache.exists("many").await);
}

#[tokio::test]
async fn named_caches_share_the_tags() {
    let cache = Cache::builder().build().unwrap();
    let lookups = cache.named("lookups");
    let ttl = Duration::from_secs(60);
    let tagged = || async {
        context::tag("country:fr");
        "France".to_string()
    };
    lookups.get_or_insert_with("country:fr", ttl, tagged).await;
    cache.get_or_insert_with("flag:fr", ttl, tagged).await;
    lookups.invalidate_tag("country:fr").await.unwrap();
    assert!(!lookups.exists("country:fr").await);
    assert!(!cache.exists("flag:fr").await);
}

/// A load that read its data before a tag invalidation stores nothing that
/// is served after it, and callers arriving after it do not join it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_running_across_a_tag_invalidation_is_not_served_after_it() {
    let cache = Cache::builder().build().unwrap();
    let read_done = std::sync::Arc::new(Notify::new());
    let release = std::sync::Arc::new(Notify::new());
    let version = std::sync::Arc::new(AtomicU64::new(1));
    let load = |cache: Cache| {
        let (read_done, release, version) = (read_done.clone(), release.clone(), version.clone());
        async move {
            cache
                .get_or_insert_with("report", Duration::from_secs(60), || async move {
                    called("report");
                    let seen = version.load(Ordering::SeqCst);
                    read_done.notify_one();
                    release.notified().await;
                    context::tag("reports");
                    seen
                })
                .await
        }
    };
    let first = tokio::spawn(load(cache.clone()));
    read_done.notified().await; // the first load read version 1

    version.store(2, Ordering::SeqCst);
    cache.invalidate_tag("reports").await.unwrap();
    // A caller after the invalidation makes its own call (it does not
    // wait for the first's value).
    let second = tokio::spawn(load(cache.clone()));
    let own_call = tokio::time::timeout(Duration::from_secs(10), read_done.notified()).await;
    assert!(
        own_call.is_ok(),
        "the second caller joined the load that read before the invalidation"
    );
    release.notify_one();
    release.notify_one();
    let (first, second) = (first.await.unwrap(), second.await.unwrap());
    assert_eq!((first, second), (1, 2));
    assert_eq!(calls("report"), 2);
    // Version 1 is never served again.
    assert_eq!(
        cache.get::<u64>("report").await,
        Some(2),
        "the first load stored nothing"
    );
    for _ in 0..3 {
        let now = cache
            .get_or_insert_with("report", Duration::from_secs(60), || async { 3 })
            .await;
        assert_ne!(now, 1);
    }
}

/// A tag invalidation marks every running load, so that a later
/// invalidation of its key still reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_across_a_tag_invalidation_still_obeys_its_keys_invalidation() {
    let cache = Cache::builder().build().unwrap();
    let read_done = std::sync::Arc::new(Notify::new());
    let release = std::sync::Arc::new(Notify::new());
    let slow = {
        let (cache, read_done, release) = (cache.clone(), read_done.clone(), release.clone());
        tokio::spawn(async move {
            cache
                .get_or_insert_with("profile:1", Duration::from_secs(60), || async move {
                    read_done.notify_one();
                    release.notified().await;
                    1u64 // read before the writes below
                })
                .await
        })
    };
    read_done.notified().await;
    cache.invalidate_tag("unrelated").await.unwrap();
    assert!(!cache.delete("profile:1").await);
    release.notify_one();
    assert_eq!(slow.await.unwrap(), 1);
    let now = cache
        .get_or_insert_with("profile:1", Duration::from_secs(60), || async { 2u64 })
        .await;
    assert_eq!(now, 2);
}

/// Products shown on a page, from a version that updates move on.
static SHOWN: AtomicU64 = AtomicU64::new(0);

#[cached(ttl = "10m", key = "shown:<name>", skip(product))]
async fn shown(name: &str, product: u64) -> u64 {
    called(&format!("shown:{name}"));
    context::tag(format!("shown-product:{name}:{product}"));
    SHOWN.load(Ordering::SeqCst)
}

on_server_and_cluster! {
#[tokio::test]
async fn a_tag_invalidation_reaches_every_instance_and_redis(server: &Redis) {
    let name = if server.as_server().is_some() { "server" } else { "cluster" };
    let (a, b) = (
        synced(hybrid(server, "tags")).await,
        synced(hybrid(server, "tags")).await,
    );
    a.scope(shown(name, 42)).await;
    b.scope(shown(name, 42)).await;
    assert_eq!(calls(&format!("shown:{name}")), 1, "b read a's value from Redis");
    assert_eq!(b.stats().l2_hits, 1);
    b.scope(shown(name, 42)).await;
    assert_eq!(b.stats().hits, 1, "kept in b's process, with its tag");

    let done = a.invalidate_tag(&format!("shown-product:{name}:42")).await.unwrap();
    assert!(matches!(done, SharedInvalidation::Tag(_)), "{done:?}");
    assert_eq!(a.stats().tag_invalidations, 1, "counted once");
    // b applies a's announcement within the backplane's bound.
    let mut reloaded = false;
    for _ in 0..400 {
        b.scope(shown(name, 42)).await;
        if calls(&format!("shown:{name}")) == 2 {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(reloaded, "b's copy was invalidated");
    assert_eq!(b.stats().tag_invalidations, 1, "through the backplane");

    // What Redis holds was judged against the tag's mark: a fresh instance,
    // which never heard the announcement, reads the value b stored after
    // the invalidation, not the one before.
    let c = synced(hybrid(server, "tags")).await;
    c.scope(shown(name, 42)).await;
    assert_eq!(calls(&format!("shown:{name}")), 2);
    assert_eq!(c.stats().l2_hits, 1);
}

#[tokio::test]
async fn a_value_in_redis_older_than_its_tag_is_not_read(server: &Redis) {
    let name = if server.as_server().is_some() { "old-server" } else { "old-cluster" };
    let a = synced(hybrid(server, "tags-old")).await;
    a.scope(shown(name, 1)).await;
    a.invalidate_tag(&format!("shown-product:{name}:1")).await.unwrap();
    // A new instance's read finds the value in Redis, tagged older than
    // the mark: a miss, and the origin is called.
    let c = synced(hybrid(server, "tags-old")).await;
    c.scope(shown(name, 1)).await;
    assert_eq!(calls(&format!("shown:{name}")), 2);
    assert_eq!((c.stats().l2_hits, c.stats().l2_misses), (0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_that_read_before_another_instances_tag_invalidation_is_refused(server: &Redis) {
    let (a, b) = (
        synced(hybrid(server, "tags-fill")).await,
        synced(hybrid(server, "tags-fill")).await,
    );
    // The generation counter exists before the load reads it (a counter
    // made anew after a read refuses that fill for a reason of its own).
    b.invalidate_tag("warm-up").await.unwrap();
    let read_done = std::sync::Arc::new(Notify::new());
    let release = std::sync::Arc::new(Notify::new());
    let slow = {
        let (a, read_done, release) = (a.clone(), read_done.clone(), release.clone());
        tokio::spawn(async move {
            a.get_or_insert_with("stock:9", Duration::from_secs(60), || async move {
                read_done.notify_one();
                release.notified().await;
                context::tag("stock");
                1u64
            })
            .await
        })
    };
    read_done.notified().await;
    b.invalidate_tag("stock").await.unwrap();
    release.notify_one();
    assert_eq!(slow.await.unwrap(), 1);
    assert_eq!(a.stats().l2_fills_rejected, 1, "the fill read before the tag's mark");
    // Neither instance serves it.
    let fresh = || async { 2u64 };
    assert_eq!(b.get_or_insert_with("stock:9", Duration::from_secs(60), fresh).await, 2);
    let mut served = 0;
    for _ in 0..400 {
        served = a.get_or_insert_with("stock:9", Duration::from_secs(60), fresh).await;
        if served != 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(served, 2);
}
}
