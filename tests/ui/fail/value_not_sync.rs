use std::cell::Cell;
use std::rc::Rc;

use cache_runtime::cached;

#[derive(Clone)]
struct Counter {
    hits: Cell<u64>,
}

#[cached(ttl = "30s", key = "counter:<id>")]
fn counter(id: u64) -> Counter {
    Counter { hits: Cell::new(id) }
}

#[cached(ttl = "30s", key = "names:<id>")]
async fn names(id: u64) -> Result<Rc<String>, String> {
    Ok(Rc::new(id.to_string()))
}

fn main() {}
