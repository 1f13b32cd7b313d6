use cache_runtime::cached;

#[cached(ttl = "30s", l1_ttl = "1m", key = "order:<id>")]
fn get_order(id: u64) -> u64 {
    id
}

fn main() {}
