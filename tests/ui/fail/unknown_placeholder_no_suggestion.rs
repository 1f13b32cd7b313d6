use cache_runtime::cached;

#[cached(ttl = "2m", key = "order:<customer>:<id>")]
fn get_order(tenant: &str, id: u64) -> String {
    format!("{tenant}{id}")
}

fn main() {}
