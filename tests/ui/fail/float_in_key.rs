use cache_runtime::cached;

#[cached(ttl = "30s", key = "price:<amount>")]
fn price(amount: f64) -> u64 {
    amount as u64
}

fn main() {}

// By reference, in a default key, and in a pattern of `#[invalidates]`.
#[cached(ttl = "30s", key = "rate:<currency>:<rate>")]
fn convert(currency: &str, rate: &f32) -> u64 {
    currency.len() as u64 + *rate as u64
}

#[cached(ttl = "30s")]
fn fee(amount: f64, count: u32) -> u64 {
    amount as u64 + u64::from(count)
}

#[cache_runtime::invalidates("price:<amount>")]
fn set_price(amount: f64) {
    let _ = amount;
}

// A float reached through a field is rustc's error, with the one note that
// applies to every type.
struct Price {
    amount: f64,
}

#[cached(ttl = "30s", key = "total:<price.amount>")]
fn total(price: &Price) -> u64 {
    price.amount as u64
}
