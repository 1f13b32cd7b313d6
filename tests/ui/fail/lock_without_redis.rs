use cache_runtime::cached;

#[cached(ttl = "10m", key = "fee:<currency>", tier = "l1", lock = true)]
async fn fee(currency: &str) -> f64 {
    if currency == "EUR" { 0.5 } else { 0.7 }
}

fn main() {}
