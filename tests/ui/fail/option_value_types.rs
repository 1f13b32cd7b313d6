use cache_runtime::cached;

#[cached(ttl = 120, lock = "yes", none)]
fn get_order(id: u64) -> Option<u64> {
    Some(id)
}

#[cached("order:<id>")]
fn get_other(id: u64) -> u64 {
    id
}

fn main() {}
