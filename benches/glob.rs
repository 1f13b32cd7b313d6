//! The worst cases of matching one key in process that the limits on
//! patterns allow: the longest tail after a `*` (`Pattern::MAX_TAIL_LEN`
//! bytes) against a 1024-byte key of `a`s, which the matcher tries at
//! every byte of the key and fails at the last byte of the tail. The time
//! is per key: a pattern invalidation pays it for every key of the
//! in-process tier.
//!
//! - `*` + 255 × `a` + `b`: the tail is one literal, compared as a slice;
//! - `*` + 255 × `?` + `b`: the tail is 256 one-byte steps, the densest
//!   a tail can be (a set takes 3 bytes for one step).
//!
//! Run: `cargo bench --bench glob`.

use std::hint::black_box;
use std::time::Duration;

use cache_runtime::Pattern;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const KEY_LEN: usize = 1024;

fn glob(c: &mut Criterion) {
    let key = "a".repeat(KEY_LEN);
    let mut group = c.benchmark_group("glob");
    group.throughput(Throughput::Elements(1));
    for (name, step) in [("literal", "a"), ("`?`", "?")] {
        let tail = format!("{}b", step.repeat(Pattern::MAX_TAIL_LEN - 1));
        let pattern = Pattern::parse(&format!("*{tail}")).expect("the longest tail is allowed");
        assert!(
            Pattern::parse(&format!("*a{tail}")).is_err(),
            "one more byte is refused"
        );
        assert!(!pattern.matches(&key));
        group.bench_function(format!("longest {name} tail, 1 KiB key (per key)"), |b| {
            b.iter(|| black_box(&pattern).matches(black_box(&key)))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3));
    targets = glob
}
criterion_main!(benches);
