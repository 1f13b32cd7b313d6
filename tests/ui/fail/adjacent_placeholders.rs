use cache_runtime::cached;

#[cached(ttl = "30s", key = "orders:<page><per_page>")]
fn list_orders(page: u32, per_page: u32) -> Vec<u32> {
    vec![page; per_page as usize]
}

#[cached(ttl = "30s", key = "orders:p<page>-pp<per_page>")]
fn list_more(page: u32, per_page: u32) -> Vec<u32> {
    vec![page; per_page as usize]
}

fn main() {}
