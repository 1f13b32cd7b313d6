//! Cached and invalidating futures are `Send` when the body's is, so they can
//! be spawned; borrowed arguments work across `.await`.

use cache_runtime::{cached, invalidates, Cache};

#[cached(ttl = "1m", key = "slow:<name>:<n>")]
async fn slow(name: &str, n: u64) -> Result<String, String> {
    tokio::task::yield_now().await;
    Ok(format!("{name}{n}"))
}

#[invalidates("slow:<name>:*")]
async fn forget(name: String) -> Result<(), String> {
    tokio::task::yield_now().await;
    drop(name);
    Ok(())
}

fn assert_send<T: Send>(t: T) -> T {
    t
}

#[tokio::main]
async fn main() {
    let cache = Cache::builder().build().unwrap();
    let task = tokio::spawn(cache.scope(assert_send(async {
        let name = String::from("x");
        let a = slow(&name, 1).await.unwrap();
        forget(name.clone()).await.unwrap();
        a
    })));
    assert_eq!(task.await.unwrap(), "x1");
}
