use cache_runtime::cached;

struct Db;

// Not a parameter: a "did you mean".
#[cached(ttl = "1m", key = "order:<id>", skip(dbb))]
fn order(db: &Db, id: u64) -> u64 {
    let _ = db;
    id
}

// In the key and in `skip`: a contradiction.
#[cached(ttl = "1m", key = "rate:<currency>", skip(currency))]
fn rate(currency: &str) -> u64 {
    currency.len() as u64
}

// `self` in a free function, and a name listed twice.
#[cached(ttl = "1m", key = "stock:<id>", skip(self, db, db))]
fn stock(db: &Db, id: u64) -> u64 {
    let _ = db;
    id
}

// `skip` takes a list.
#[cached(ttl = "1m", key = "fee:<id>", skip = "db")]
fn fee(db: &Db, id: u64) -> u64 {
    let _ = db;
    id
}

fn main() {}
