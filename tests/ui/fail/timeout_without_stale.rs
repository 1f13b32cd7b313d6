use cache_runtime::cached;

#[cached(ttl = "30s", timeout = "2s", key = "order:<id>")]
async fn get_order(id: u64) -> u64 {
    id
}

fn main() {}
