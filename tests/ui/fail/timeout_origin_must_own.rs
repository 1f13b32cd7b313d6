use cache_runtime::cached;

struct Repo;

impl Repo {
    // The origin call may go on after the caller has its answer: it cannot
    // borrow `self`.
    #[cached(ttl = "1m", stale = "5m", timeout = "2s", key = "order:<id>")]
    async fn order(&self, id: u64) -> u64 {
        id
    }
}

#[cached(ttl = "1m", stale = "5m", timeout = "2s", key = "count:<id>")]
async fn count(id: u64, seen: &mut Vec<u64>) -> u64 {
    seen.push(id);
    id
}

#[cached(ttl = "1m", stale = "5m", timeout = "2s", key = "rate:<currency>")]
fn rate(currency: &str) -> u64 {
    currency.len() as u64
}

fn main() {}
