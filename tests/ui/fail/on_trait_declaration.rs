use cache_runtime::cached;

trait Repo {
    #[cached(ttl = "30s", key = "user:<id>")]
    fn user(&self, id: u64) -> String;
}

fn main() {}
