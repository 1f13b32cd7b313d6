use cache_runtime::cached;

#[cached(ttl = "1.5s", key = "order:<id>")]
fn get_order(id: u64) -> u64 {
    id
}

fn main() {}
