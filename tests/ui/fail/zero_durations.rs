use cache_runtime::cached;

#[cached(ttl = "1m", stale = "0ms", l1_ttl = "0s", fail_safe = "0h", timeout = "0s", key = "order:<id>")]
fn get_order(id: u64) -> u64 {
    id
}

fn main() {}
