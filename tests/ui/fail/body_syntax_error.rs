use cache_runtime::cached;

// Mid-edit: the body does not parse. The error is the body's own.
#[cached(ttl = "1m", key = "order:<id>")]
fn order(id: u64) -> u64 {
    let doubled = id * ;
    doubled
}

fn main() {
    let _ = order(1);
}
