//! Every option of `#[cached]` at once, and the ones of `#[invalidates]`.

use cache_runtime::{cached, invalidates, Cache};

#[cached(
    ttl = "1h30m",
    key = "rates:<currency>",
    stale = "5m",
    l1_ttl = "20s",
    tier = "both",
    fail_safe = "2h",
    timeout = "250ms",
    lock = true,
    cache = "lookups",
    jitter = "10%",
    refresh_ahead = "80%",
    crate = "::cache_runtime",
)]
async fn rate(currency: &str) -> Result<u64, String> {
    Ok(currency.len() as u64)
}

#[cached(ttl = "1d", key = "maybe:<id>", none = true, tier = "l1")]
fn maybe(id: u64) -> Option<u64> {
    (id > 1).then_some(id)
}

#[cached(key = "l2:<id>", tier = "l2", none = false, lock = false)]
async fn only_l2(id: u64) -> u64 {
    id
}

#[invalidates("rates:<currency>", "maybe:*", before = true, cache = "lookups", crate = "::cache_runtime")]
async fn set_rate(currency: &str, rate: u64) -> Result<u64, String> {
    Ok(rate + currency.len() as u64)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cache = Cache::builder().build().unwrap();
    cache
        .scope(async {
            assert_eq!(rate("EUR").await, Ok(3));
            assert_eq!(maybe(1), None);
            assert_eq!(only_l2(4).await, 4);
            assert_eq!(set_rate("EUR", 1).await, Ok(4));
        })
        .await;
}
