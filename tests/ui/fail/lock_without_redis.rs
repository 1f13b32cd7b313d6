use cache_runtime::cached;

#[cached(ttl = "10m", key = "rate:<currency>", lock = true)]
fn rate(currency: &str) -> f64 {
    if currency == "EUR" { 1.0 } else { 1.1 }
}

#[cached(ttl = "10m", key = "fee:<currency>", tier = "l1", lock = true)]
async fn fee(currency: &str) -> f64 {
    if currency == "EUR" { 0.5 } else { 0.7 }
}

fn main() {}
