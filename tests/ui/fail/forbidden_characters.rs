use cache_runtime::cached;

#[cached(ttl = "30s", key = "orders {id}: <id>?")]
fn get_order(id: u64) -> u64 {
    id
}

fn main() {}
