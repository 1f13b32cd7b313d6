//! `timeout` with the argument shapes it copies: `&str`, `&[T]`, a named
//! lifetime, a raw identifier, a `mut` binding, an argument used only in
//! the key, a one-expression body; no warning in any of them.
#![deny(warnings)]

use std::sync::Arc;

use cache_runtime::cached;

#[cached(ttl = "1m", stale = "5m", timeout = "1s", key = "a:<tenant>:<id>")]
async fn only_in_key(tenant: &str, id: u64) -> u64 {
    id
}

#[cached(ttl = "1m", stale = "5m", timeout = "1s", key = "b:<name>")]
async fn rebinds(mut name: &str) -> String {
    name = name.trim();
    name.to_uppercase()
}

#[cached(ttl = "1m", fail_safe = "1h", timeout = "1s", key = "c:<r#type>", skip(ids))]
async fn raw(r#type: &str, ids: &[u64]) -> Result<u64, String> {
    Ok(r#type.len() as u64 + ids.iter().sum::<u64>())
}

#[cached(ttl = "1m", stale = "5m", timeout = "1s", key = "d:<label>", skip(shared))]
async fn named<'a>(label: &'a str, shared: &Arc<Vec<u8>>) -> usize {
    label.len() + shared.len()
}

#[tokio::main]
async fn main() {
    assert_eq!(only_in_key("acme", 7).await, 7);
    assert_eq!(rebinds(" ada ").await, "ADA");
    assert_eq!(raw("kind", &[1, 2]).await, Ok(7));
    assert_eq!(named("abc", &Arc::new(vec![1, 2])).await, 5);
}
