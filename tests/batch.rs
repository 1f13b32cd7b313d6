//! Batch reads and batch loading: `Cache::get_many` / `set_many`, and
//! `#[cached(batch = "ids")]`, which calls its body once with only the ids
//! no tier holds and stores each value under its own key, in process and
//! across instances on a real redis-server (and a local cluster).

mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use cache_runtime::{cached, invalidates, Cache};
use serde::{Deserialize, Serialize};
use support::{hybrid, synced};

const MIN: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Product {
    id: u64,
    name: String,
}

fn product_row(id: u64) -> Product {
    Product {
        id,
        name: format!("product {id}"),
    }
}

/// What the origin was asked, call by call, per test (tests run in
/// parallel: each keeps to its own tenant).
static ASKED: Mutex<Vec<(String, Vec<u64>)>> = Mutex::new(Vec::new());

fn asked(tenant: &str) -> Vec<Vec<u64>> {
    ASKED
        .lock()
        .unwrap()
        .iter()
        .filter(|(t, _)| t == tenant)
        .map(|(_, ids)| ids.clone())
        .collect()
}

/// Products with an odd id exist below 1,000; the origin takes a while.
#[cached(ttl = "10m", key = "product:<tenant>:<ids>", batch = "ids")]
async fn products(tenant: &str, ids: &[u64]) -> HashMap<u64, Product> {
    ASKED
        .lock()
        .unwrap()
        .push((tenant.to_owned(), ids.to_vec()));
    tokio::time::sleep(Duration::from_millis(20)).await;
    ids.iter()
        .filter(|&&id| id < 1_000)
        .map(|&id| (id, product_row(id)))
        .collect()
}

/// One product through the same keys: it shares the batch's entries.
#[cached(ttl = "10m", key = "product:<tenant>:<id>")]
async fn product(tenant: &str, id: u64) -> Option<Product> {
    ASKED.lock().unwrap().push((tenant.to_owned(), vec![id]));
    tokio::time::sleep(Duration::from_millis(20)).await;
    (id < 1_000).then(|| product_row(id))
}

#[invalidates("product:<tenant>:<id>")]
async fn rename(tenant: &str, id: u64) {
    let _ = (tenant, id);
}

/// Absent ids remembered (`none = true`), owned ids, a `Result`.
#[cached(ttl = "10m", key = "sku:<tenant>:<ids>", batch = "ids", none = true)]
async fn skus(tenant: String, ids: Vec<u64>) -> Result<BTreeMap<u64, String>, String> {
    ASKED.lock().unwrap().push((tenant.clone(), ids.clone()));
    if ids.contains(&666) {
        return Err("the origin refused 666".into());
    }
    Ok(ids
        .into_iter()
        .filter(|id| id % 2 == 0)
        .map(|id| (id, format!("sku {id}")))
        .collect())
}

fn memory() -> Cache {
    Cache::builder().build().expect("a cache")
}

#[tokio::test]
async fn fifty_ids_forty_cached_make_one_origin_call_with_the_ten_others() {
    let cache = memory();
    let warm: Vec<u64> = (0..40).collect();
    let all: Vec<u64> = (0..50).collect();
    cache.scope(products("fifty", &warm)).await;
    let found = cache.scope(products("fifty", &all)).await;

    assert_eq!(asked("fifty"), [warm, (40..50).collect::<Vec<_>>()]);
    assert_eq!(found.len(), 50);
    assert_eq!(found[&7], product_row(7));
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.loads), (40, 2));

    // Each value sits under its own key: a single read is a hit.
    assert_eq!(
        cache.scope(product("fifty", 45)).await,
        Some(product_row(45))
    );
    assert_eq!(asked("fifty").len(), 2);
    // Ids repeated in a call are asked for once.
    let found = cache.scope(products("fifty", &[60, 60, 61])).await;
    assert_eq!(asked("fifty")[2], [60, 61]);
    assert_eq!(found.len(), 2);
}

#[tokio::test]
async fn ids_without_a_value_are_asked_again_unless_none_is_cached() {
    let cache = memory();
    let found = cache.scope(products("absent", &[1, 5_000])).await;
    assert_eq!(found.keys().copied().collect::<Vec<_>>(), [1]);
    cache.scope(products("absent", &[1, 5_000])).await;
    assert_eq!(asked("absent"), [vec![1, 5_000], vec![5_000]]);

    // `none = true`: the odd ids are remembered as absent.
    let found = cache.scope(skus("absent-none".into(), vec![1, 2, 3])).await;
    assert_eq!(found, Ok(BTreeMap::from([(2, "sku 2".to_string())])));
    let again = cache
        .scope(skus("absent-none".into(), vec![1, 2, 3, 4]))
        .await;
    assert_eq!(again.unwrap().len(), 2);
    assert_eq!(asked("absent-none"), [vec![1, 2, 3], vec![4]]);
}

#[tokio::test]
async fn an_error_is_returned_and_nothing_of_its_call_is_stored() {
    let cache = memory();
    let failed = cache.scope(skus("error".into(), vec![2, 666])).await;
    assert_eq!(failed, Err("the origin refused 666".to_string()));
    let found = cache.scope(skus("error".into(), vec![2, 4])).await;
    assert_eq!(found.unwrap().len(), 2);
    assert_eq!(asked("error"), [vec![2, 666], vec![2, 4]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_batches_load_each_id_once() {
    let cache = memory();
    let calls: Vec<Vec<u64>> = (0..8).map(|i| (i * 10..i * 10 + 30).collect()).collect();
    let tasks: Vec<_> = calls
        .iter()
        .cloned()
        .map(|ids| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.scope(products("overlap", &ids)).await })
        })
        .collect();
    for (task, ids) in tasks.into_iter().zip(&calls) {
        let found = task.await.unwrap();
        assert_eq!(found.len(), ids.len(), "every id of {ids:?} answered");
    }
    let mut loaded: Vec<u64> = asked("overlap").concat();
    loaded.sort_unstable();
    assert_eq!(loaded, (0..100).collect::<Vec<_>>(), "each id loaded once");
}

#[tokio::test]
async fn a_single_load_running_is_waited_for_not_repeated() {
    let cache = memory();
    let single = cache.scope(product("join", 3));
    let batch = cache.scope(products("join", &[1, 2, 3]));
    let (one, many) = tokio::join!(single, batch);
    assert_eq!(one, Some(product_row(3)));
    assert_eq!(many[&3], product_row(3));
    assert_eq!(asked("join"), [vec![3], vec![1, 2]]);
}

/// One price, through the batch function on the same key: the batch is
/// asked for the very key this call computes.
#[cached(ttl = "10m", key = "price:<id>")]
async fn price(id: u64) -> Option<u64> {
    prices(&[id]).await.remove(&id).flatten()
}

#[cached(ttl = "10m", key = "price:<ids>", batch = "ids")]
async fn prices(ids: &[u64]) -> HashMap<u64, Option<u64>> {
    ASKED.lock().unwrap().push(("price".into(), ids.to_vec()));
    ids.iter().map(|&id| (id, Some(id * 100))).collect()
}

/// A batch whose body asks, one at a time, for the keys it is loading.
#[cached(ttl = "10m", key = "loop:<ids>", batch = "ids")]
async fn looping(ids: &[u64]) -> HashMap<u64, Option<u64>> {
    let mut found = HashMap::new();
    for &id in ids {
        found.insert(id, looped(id).await);
    }
    found
}

#[cached(ttl = "10m", key = "loop:<id>")]
async fn looped(id: u64) -> Option<u64> {
    Some(id)
}

#[tokio::test]
async fn a_single_call_may_ask_the_batch_for_its_own_key() {
    let cache = memory();
    assert_eq!(cache.scope(price(3)).await, Some(300));
    assert_eq!(cache.scope(price(3)).await, Some(300));
    assert_eq!(
        asked("price"),
        [vec![3]],
        "loaded once, stored by the single call"
    );
}

#[tokio::test]
async fn a_batch_body_asking_for_a_key_it_loads_panics_instead_of_hanging() {
    let cache = memory();
    let task = tokio::spawn(async move { cache.scope(looping(&[1, 2])).await });
    let outcome = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("no hang");
    let panic = outcome.expect_err("a panic").into_panic();
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("loop:1"), "{message}");
}

#[tokio::test]
async fn disabled_the_body_gets_every_id() {
    let cache = Cache::builder().enabled(false).build().unwrap();
    cache.scope(products("disabled", &[1, 2])).await;
    cache.scope(products("disabled", &[1, 2])).await;
    assert_eq!(asked("disabled"), [vec![1, 2], vec![1, 2]]);
}

#[tokio::test]
async fn the_handle_gets_and_sets_many() {
    let cache = memory();
    let entries = [("user:1", 10u32), ("user:2", 20)];
    assert_eq!(cache.set_many(entries, MIN).await, 2);
    let found = cache
        .get_many::<u32, _>(["user:2", "user:3", "user:1", "user:2"])
        .await;
    assert_eq!(found, [Some(20), None, Some(10), Some(20)]);
}

on_server_and_cluster! {
#[tokio::test]
async fn another_instance_reads_a_batch_from_redis_and_sees_its_invalidations(server: &Redis) {
    let tenant = if server.as_server().is_some() { "two-server" } else { "two-cluster" };
    let (a, b) = (
        synced(hybrid(server, "batch")).await,
        synced(hybrid(server, "batch")).await,
    );
    let ids: Vec<u64> = (0..50).collect();
    a.scope(products(tenant, &ids)).await;
    let found = b.scope(products(tenant, &ids)).await;
    assert_eq!(found.len(), 50);
    assert_eq!(asked(tenant).len(), 1, "b read all 50 from Redis");
    assert_eq!(b.stats().l2_hits, 50);

    // An invalidation on a reaches b's in-process copies and Redis: b's
    // next batch (once a's announcement arrived) asks for that id alone.
    a.scope(rename(tenant, 7)).await;
    for _ in 0..2_000 {
        let found = b.scope(products(tenant, &ids)).await;
        assert_eq!(found[&7], product_row(7));
        if asked(tenant).len() > 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(asked(tenant), [ids, vec![7]]);
}

#[tokio::test]
async fn get_many_reads_what_another_instance_set_many(server: &Redis) {
    let (a, b) = (
        synced(hybrid(server, "many")).await,
        synced(hybrid(server, "many")).await,
    );
    let entries: Vec<(String, u64)> = (0..300).map(|i| (format!("n:{i}"), i)).collect();
    assert_eq!(a.set_many(entries, MIN).await, 300);
    let keys: Vec<String> = (0..301).map(|i| format!("n:{i}")).collect();
    let found = b.get_many::<u64, _>(&keys).await;
    assert_eq!(found[..300], (0..300).map(Some).collect::<Vec<_>>());
    assert_eq!(found[300], None);
    assert_eq!(b.stats().l2_hits, 300);
}
}
