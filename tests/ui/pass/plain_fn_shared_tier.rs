// A plain `fn` reaches the shared tier too: `tier` and `lock` are accepted.
use cache_runtime::cached;

#[cached(ttl = "10m", key = "rate:<currency>", tier = "both")]
fn rate(currency: &str) -> f64 {
    if currency == "EUR" { 1.0 } else { 1.1 }
}

#[cached(ttl = "10m", key = "fee:<currency>", tier = "l2", lock = true)]
fn fee(currency: &str) -> Result<f64, String> {
    Ok(if currency == "EUR" { 0.5 } else { 0.7 })
}

fn main() {
    assert_eq!(rate("EUR"), 1.0);
    assert_eq!(fee("USD"), Ok(0.7));
}
