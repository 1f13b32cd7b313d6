//! `tags = [..]` on every kind of function: an `async fn`, one whose
//! origin runs detached (`timeout`), a plain `fn`, an `#[async_trait]`
//! method with `self` in a tag; and `#[invalidates(tags = [..])]` alone.

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use cache_runtime::{cached, invalidates, Cache};

static CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = "1m", key = "a:<id>", tags = ["item:<id>", "all"])]
async fn direct(id: u64) -> u64 {
    CALLS.fetch_add(1, Ordering::SeqCst);
    id
}

#[cached(ttl = "1m", key = "b:<name>", timeout = "1s", stale = "1m", tags = ["item:<name>"])]
async fn detached(name: &str) -> usize {
    CALLS.fetch_add(1, Ordering::SeqCst);
    name.len()
}

#[cached(ttl = "1m", key = "c:<id>", tags = ["all"])]
fn plain(id: u64) -> u64 {
    CALLS.fetch_add(1, Ordering::SeqCst);
    id
}

#[invalidates(tags = ["item:<id>"])]
async fn touch(id: u64) {
    let _ = id;
}

#[async_trait]
trait Shop {
    async fn price(&self, id: u64) -> u64;
    async fn reprice(&self, id: u64);
}

struct Db {
    tenant: String,
}

#[async_trait]
impl Shop for Db {
    #[cached(ttl = "1m", key = "price:<self.tenant>:<id>", tags = ["tenant:<self.tenant>"])]
    async fn price(&self, id: u64) -> u64 {
        CALLS.fetch_add(1, Ordering::SeqCst);
        id * 10
    }

    #[invalidates(tags = ["tenant:<self.tenant>"])]
    async fn reprice(&self, id: u64) {
        let _ = id;
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cache = Cache::builder().build().unwrap();
    let db = Db { tenant: "acme".into() };
    cache
        .scope(async {
            direct(1).await;
            detached("x").await;
            plain(1);
            db.price(1).await;
            assert_eq!(CALLS.load(Ordering::SeqCst), 4);
            direct(1).await;
            detached("x").await;
            plain(1);
            db.price(1).await;
            assert_eq!(CALLS.load(Ordering::SeqCst), 4);
            touch(1).await;
            direct(1).await;
            assert_eq!(CALLS.load(Ordering::SeqCst), 5);
            db.reprice(1).await;
            db.price(1).await;
            assert_eq!(CALLS.load(Ordering::SeqCst), 6);
            cache.invalidate_tag("all").await.unwrap();
            plain(1);
            direct(1).await;
            detached("x").await;
            assert_eq!(CALLS.load(Ordering::SeqCst), 8);
        })
        .await;
}
