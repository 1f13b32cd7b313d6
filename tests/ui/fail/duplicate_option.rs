use cache_runtime::cached;

#[cached(ttl = "2m", key = "order:<id>", ttl = "5m")]
fn get_order(id: u64) -> u64 {
    id
}

fn main() {}
