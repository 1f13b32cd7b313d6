use cache_runtime::cached;

#[cached(ttl = "30s", key = "render:<buf>:<id>")]
fn render(buf: &mut Vec<u8>, id: u64) -> usize {
    buf.push(id as u8);
    buf.len()
}

fn main() {}
