//! `#[cached]` and `#[invalidates]` on methods rewritten by `#[async_trait]`.

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use cache_runtime::{cached, invalidates, Cache};

#[derive(Clone, Debug, PartialEq)]
struct User {
    name: String,
}

#[async_trait]
trait Users {
    async fn user(&self, id: u64) -> Result<User, String>;
    async fn by_name(&self, name: &str) -> Option<User>;
    async fn rename(&self, id: u64, name: String) -> Result<(), String>;
    async fn total(&self) -> usize;
}

struct Db {
    tenant: String,
    calls: AtomicUsize,
}

#[async_trait]
impl Users for Db {
    /// Docs stay.
    #[cached(ttl = "1m", key = "user:<self.tenant>:<id>")]
    async fn user(&self, id: u64) -> Result<User, String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let name = self.tenant.clone();
        Ok(User { name: format!("{name}{id}") })
    }

    #[cached(ttl = "1m", key = "by_name:<self.tenant>:<name>")]
    async fn by_name(&self, name: &str) -> Option<User> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        (!name.is_empty()).then(|| User { name: name.to_owned() })
    }

    #[invalidates("user:<self.tenant>:<id>", "by_name:<self.tenant>:*")]
    async fn rename(&self, id: u64, name: String) -> Result<(), String> {
        drop(name);
        Ok(())
    }

    #[cached(ttl = "1m", key = "total:<self.tenant>", tier = "both")]
    async fn total(&self) -> usize {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.calls.load(Ordering::SeqCst)
    }
}

/// `?Send` traits too.
#[async_trait(?Send)]
trait Local {
    async fn get(&self, id: u64) -> u64;
}

struct Cell(std::rc::Rc<u64>);

#[async_trait(?Send)]
impl Local for Cell {
    #[cached(ttl = "1m", key = "cell:<self.0>:<id>")]
    async fn get(&self, id: u64) -> u64 {
        *self.0 + id
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cache = Cache::builder().build().unwrap();
    let db = Db {
        tenant: "acme".to_owned(),
        calls: AtomicUsize::new(0),
    };
    cache
        .scope(async {
            let users: &dyn Users = &db;
            assert_eq!(users.user(1).await.unwrap().name, "acme1");
            assert_eq!(users.user(1).await.unwrap().name, "acme1");
            assert_eq!(users.by_name("bob").await.unwrap().name, "bob");
            assert_eq!(users.by_name("bob").await.unwrap().name, "bob");
            assert_eq!(users.total().await, 3);
            assert_eq!(users.total().await, 3);
            users.rename(1, "x".to_owned()).await.unwrap();
            assert_eq!(users.user(1).await.unwrap().name, "acme1");
            assert_eq!(db.calls.load(Ordering::SeqCst), 4);
            assert_eq!(Cell(std::rc::Rc::new(1)).get(2).await, 3);
        })
        .await;
}
