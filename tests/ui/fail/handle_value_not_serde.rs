// The `Cache` handle shares its values with the other instances through
// Redis, so they must be serde; the error says what to write instead.
use std::time::Duration;

use cache_runtime::Cache;

#[derive(Clone)]
struct Connection(u32);

async fn store(cache: &Cache) {
    cache.set("conn:eu", Connection(1), Duration::from_secs(60)).await;
}

fn main() {
    let _ = store;
}
