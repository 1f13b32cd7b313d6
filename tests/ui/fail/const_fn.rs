use cache_runtime::cached;

#[cached(ttl = "30s", key = "id:<id>")]
const fn id(id: u64) -> u64 {
    id
}

fn main() {}
