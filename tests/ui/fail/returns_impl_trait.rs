use cache_runtime::cached;

#[cached(ttl = "30s", key = "name:<id>")]
fn name(id: u64) -> impl std::fmt::Display {
    id
}

fn main() {}
