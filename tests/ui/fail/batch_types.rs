use std::collections::HashMap;

use cache_runtime::cached;

// The ids are no collection.
#[cached(ttl = "1m", key = "product:<ids>", batch = "ids")]
async fn products(ids: u64) -> HashMap<u64, String> {
    HashMap::from([(ids, ids.to_string())])
}

// The answer is not values by id.
#[cached(ttl = "1m", key = "price:<ids>", batch = "ids")]
async fn prices(ids: Vec<u64>) -> Vec<u64> {
    ids
}

fn main() {}
