use cache_runtime::{cached, KeyPart};

#[derive(Clone, KeyPart)]
struct Org(String);

struct Filter {
    org: Org,
    page: u32,
}

// A misspelt field: rustc's error at the placeholder, without a suggestion
// that would rewrite the key's string into code.
#[cached(ttl = "1m", key = "orders:<filter.orgg>:<filter.page>")]
fn orders(filter: &Filter) -> u64 {
    u64::from(filter.page) + filter.org.0.len() as u64
}

fn main() {}
