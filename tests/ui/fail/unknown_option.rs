use cache_runtime::cached;

#[cached(ttll = "2m", key = "order:<id>")]
fn get_order(id: u64) -> u64 {
    id
}

fn main() {}
