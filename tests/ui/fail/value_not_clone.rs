use cache_runtime::cached;

struct Order {
    id: u64,
}

#[cached(ttl = "30s", key = "order:<id>")]
async fn get_order(id: u64) -> Result<Order, String> {
    Ok(Order { id })
}

fn main() {}

struct Report;

#[cached(ttl = "30s", key = "report:<id>")]
fn report(id: u64) -> Report {
    let _ = id;
    Report
}
