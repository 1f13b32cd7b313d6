use cache_runtime::cached;

#[cached(ttl = "30s", key = "order:<id>")]
async fn get_order(id: u64) -> Result<u64, String> {
    let doubled: u64 = id * 2;
    let text: String = doubled;
    Ok(text.len() as u64)
}

#[cached(ttl = "30s", key = "total:<id>")]
fn total(id: u64) -> u64 {
    if id == 0 {
        return "zero";
    }
    id
}

fn main() {}
