use std::collections::HashMap;

use cache_runtime::cached;

// Not a parameter: a "did you mean".
#[cached(ttl = "1m", key = "product:<ids>", batch = "idss")]
async fn products(ids: &[u64]) -> HashMap<u64, String> {
    ids.iter().map(|id| (*id, id.to_string())).collect()
}

// No key, so no key for one id.
#[cached(ttl = "1m", batch = "ids")]
async fn prices(ids: &[u64]) -> HashMap<u64, u64> {
    ids.iter().map(|id| (*id, *id)).collect()
}

// A key that does not name the ids.
#[cached(ttl = "1m", key = "stock:<tenant>", batch = "ids", skip(ids))]
async fn stock(tenant: &str, ids: &[u64]) -> HashMap<u64, u64> {
    let _ = tenant;
    ids.iter().map(|id| (*id, *id)).collect()
}

// Options a batch does not take, and a plain `fn`.
#[cached(ttl = "1m", key = "fee:<ids>", batch = "ids", stale = "5m", fail_safe = "1h", lock = true)]
fn fees(ids: &[u64]) -> HashMap<u64, u64> {
    ids.iter().map(|id| (*id, *id)).collect()
}

// A `&mut` parameter: the body may run twice.
#[cached(ttl = "1m", key = "tax:<ids>", batch = "ids", skip(log))]
async fn taxes(log: &mut Vec<u64>, ids: &[u64]) -> HashMap<u64, u64> {
    log.extend(ids);
    ids.iter().map(|id| (*id, *id)).collect()
}

fn main() {}
