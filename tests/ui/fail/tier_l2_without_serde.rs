use cache_runtime::cached;

#[derive(Clone)]
struct Report {
    rows: Vec<String>,
}

#[derive(Clone, Debug)]
struct DbError;

// `tier = "l2"` stores the value in Redis: the value must be serde.
#[cached(ttl = "10m", key = "report:<id>", tier = "l2")]
async fn report(id: u64) -> Result<Report, DbError> {
    Ok(Report { rows: vec![id.to_string()] })
}

fn main() {}
