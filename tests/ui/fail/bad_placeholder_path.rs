use cache_runtime::cached;

#[cached(ttl = "2m", key = "order:<filter..org>:<id-1>")]
fn get_order(filter: &str, id: u64) -> u64 {
    let _ = filter;
    id
}

fn main() {}
