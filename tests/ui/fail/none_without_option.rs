use cache_runtime::cached;

#[cached(ttl = "30s", key = "order:<id>", none = true)]
fn get_order(id: u64) -> Result<u64, String> {
    Ok(id)
}

fn main() {}
