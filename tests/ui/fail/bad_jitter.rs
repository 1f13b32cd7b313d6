use cache_runtime::cached;

#[cached(ttl = "30s", jitter = "150%", key = "order:<id>")]
fn get_order(id: u64) -> u64 {
    id
}

#[cached(ttl = "30s", jitter = "ten", key = "other:<id>")]
fn get_other(id: u64) -> u64 {
    id
}

fn main() {}
