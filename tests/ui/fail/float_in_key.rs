use cache_runtime::cached;

#[cached(ttl = "30s", key = "price:<amount>")]
fn price(amount: f64) -> u64 {
    amount as u64
}

fn main() {}
