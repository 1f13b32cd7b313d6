use cache_runtime::cached;

#[cached(ttll = "2m", stale = "5 min", tier = "l3", key = "order:<tenat>:<id>", key = "x")]
fn get_order(tenant: &str, id: u64) -> String {
    format!("{tenant}{id}")
}

fn main() {}
