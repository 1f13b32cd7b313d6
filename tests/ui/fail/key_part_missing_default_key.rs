use cache_runtime::cached;

struct Filter {
    org: String,
}

#[cached(ttl = "30s")]
fn list_orders(filter: &Filter, page: u32) -> Vec<String> {
    vec![filter.org.clone(); page as usize]
}

fn main() {}
