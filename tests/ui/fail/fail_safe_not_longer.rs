use cache_runtime::cached;

#[cached(ttl = "30s", stale = "10m", fail_safe = "5m", key = "order:<id>")]
fn get_order(id: u64) -> Result<u64, String> {
    Ok(id)
}

fn main() {}
