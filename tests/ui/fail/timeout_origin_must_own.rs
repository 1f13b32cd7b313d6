use cache_runtime::cached;

struct Repo;

impl Repo {
    // The origin call may go on after the caller has its answer: it cannot
    // borrow `self`.
    #[cached(ttl = "1m", stale = "5m", timeout = "2s", key = "order:<id>", skip(self))]
    async fn order(&self, id: u64) -> u64 {
        id
    }
}

#[cached(ttl = "1m", stale = "5m", timeout = "2s", key = "count:<id>", skip(seen))]
async fn count(id: u64, seen: &mut Vec<u64>) -> u64 {
    seen.push(id);
    id
}

#[cached(ttl = "1m", stale = "5m", timeout = "2s", key = "rate:<currency>")]
fn rate(currency: &str) -> u64 {
    currency.len() as u64
}

trait Store {}

#[cached(ttl = "1m", stale = "5m", timeout = "2s", key = "stock:<id>", skip(store))]
async fn stock(id: u64, store: &dyn Store) -> u64 {
    let _ = store;
    id
}

#[cached(ttl = "1m", stale = "5m", timeout = "2s", key = "label:<id>", skip(prefix))]
async fn label(id: u64, prefix: Option<&str>) -> String {
    format!("{}{id}", prefix.unwrap_or(""))
}

fn main() {}
