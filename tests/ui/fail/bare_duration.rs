use cache_runtime::cached;

// A bare string that reads as a duration is taken for a TTL.
#[cached("2m")]
fn get_order(id: u64) -> u64 {
    id
}

fn main() {}
