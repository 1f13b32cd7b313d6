use cache_runtime::{cached, invalidates};

#[cached(ttl = "30s")]
struct Order {
    id: u64,
}

#[invalidates("order:*")]
const LIMIT: u32 = 1;

fn main() {
    let order = Order { id: u64::from(LIMIT) };
    let _ = order.id;
}
