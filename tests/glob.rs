//! One glob language: `Pattern::matches` against Redis's own `SCAN ..
//! MATCH`, on generated patterns and keys, in a throwaway redis-server.
//!
//! Keys and patterns carry a namespace in front, as the shared tier lays
//! them out (`SCAN 0 MATCH <namespace>:<pattern>` over `<namespace>:<key>`).

mod support;

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;

use cache_runtime::Pattern;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, TestRunner};
use support::RedisServer;

const NAMESPACE: &str = "ns:";

/// The glob's syntax, the separator, two letters and a few bytes at the
/// edges: NUL, `~` (127 is the last ASCII byte, `~` the last graphic one)
/// and `é` (two bytes).
const ALPHABET: &[&str] = &[
    "*", "?", "[", "]", "^", "-", "\\", "a", "b", ":", "é", "\0", "~",
];

fn text(len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(select(ALPHABET), len).prop_map(|parts| parts.concat())
}

/// Patterns: pieces of the alphabet, and sets (`[` and `^` maybe, then
/// pieces, then `]`) so that more of them close.
fn pattern() -> impl Strategy<Value = String> {
    let set = (any::<bool>(), text(0..4))
        .prop_map(|(negated, items)| format!("[{}{items}]", if negated { "^" } else { "" }));
    let piece = prop_oneof![3 => text(1..2), 1 => set];
    prop::collection::vec(piece, 1..6).prop_map(|pieces| pieces.concat())
}

/// Keys likely to match `pattern`: its text with each `*` replaced by the
/// next fill, each `?` by `a`, each set by its first item, each escape by
/// the byte it escapes.
fn instance(pattern: &str, fills: &[String]) -> String {
    let mut fills = fills.iter().cycle();
    let mut key = String::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '*' => key.push_str(fills.next().map_or("", String::as_str)),
            '?' => key.push('a'),
            '\\' => key.extend(chars.next()),
            '[' => {
                let mut items = chars.by_ref().skip_while(|&c| c == '^');
                key.extend(items.next());
                items.find(|&c| c == ']');
            }
            c => key.push(c),
        }
    }
    key
}

/// The keys Redis matches: `SCAN` with `MATCH <namespace><pattern>` in a
/// database that holds `<namespace><key>` for each key, and nothing else.
fn redis_matches(
    redis: &mut redis::Connection,
    pattern: &str,
    keys: &BTreeSet<String>,
) -> BTreeSet<String> {
    redis::cmd("FLUSHDB").query::<()>(redis).unwrap();
    let mut mset = redis::cmd("MSET");
    for key in keys {
        mset.arg(format!("{NAMESPACE}{key}")).arg(1);
    }
    mset.query::<()>(redis).unwrap();
    let mut found = BTreeSet::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{NAMESPACE}{pattern}"))
            .arg("COUNT")
            .arg(1000)
            .query(redis)
            .unwrap();
        found.extend(
            batch
                .iter()
                .map(|k| k.strip_prefix(NAMESPACE).unwrap().to_owned()),
        );
        if next == 0 {
            return found;
        }
        cursor = next;
    }
}

#[test]
fn accepted_patterns_match_what_redis_matches() {
    let server = RedisServer::start();
    // The runner takes a `Fn`.
    let redis = RefCell::new(server.connection());
    let (accepted, matched, unmatched) = (Cell::new(0), Cell::new(0), Cell::new(0));
    let cases = (
        pattern(),
        prop::collection::vec(text(0..7), 16),
        prop::collection::vec(text(0..4), 1..4),
    );
    let mut runner = TestRunner::new(Config {
        cases: 600,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&cases, |(source, random_keys, fills)| {
            let Ok(pattern) = Pattern::parse(&source) else {
                return Ok(());
            };
            accepted.set(accepted.get() + 1);
            let mut keys: BTreeSet<String> = random_keys.into_iter().collect();
            for shift in 0..fills.len() {
                keys.insert(instance(&source, &fills[shift..]));
            }
            let in_redis = redis_matches(&mut redis.borrow_mut(), &source, &keys);
            for key in &keys {
                let ours = pattern.matches(key);
                prop_assert_eq!(
                    ours,
                    in_redis.contains(key),
                    "pattern {:?}, key {:?}: in process {}, Redis the other way",
                    source,
                    key,
                    ours
                );
                let count = if ours { &matched } else { &unmatched };
                count.set(count.get() + 1);
            }
            Ok(())
        })
        .unwrap();
    // Enough of the generated cases say something.
    let (accepted, matched, unmatched) = (accepted.get(), matched.get(), unmatched.get());
    assert!(accepted >= 150, "only {accepted} of 600 patterns accepted");
    assert!(
        matched >= 300 && unmatched >= 300,
        "{matched} keys matched, {unmatched} did not"
    );
}

/// The forms `Pattern::parse` refuses, as Redis reads them: each covers keys
/// that a reader of the pattern would not expect.
#[test]
fn redis_reads_the_refused_sets_in_surprising_ways() {
    let server = RedisServer::start();
    let mut redis = server.connection();
    let cases: [(&str, &[&str], &[&str]); 4] = [
        // `[]` matches nothing.
        ("[]]x", &["]x", "x", "]]x"], &[]),
        // `[^]` matches any byte, then `]x`.
        ("[^]]x", &["a]x", "]]x", "]x", "ax"], &["]]x", "a]x"]),
        // A range from `]` to `a`, then `x`, and the set runs to the end.
        (
            "[a-]x",
            &["a", "x", "^", "]", "-", "ax", "]x"],
            &["]", "^", "a", "x"],
        ),
        // `a`, `-` and `z`.
        (r"[\a-z]", &["a", "-", "z", "m"], &["-", "a", "z"]),
    ];
    for (pattern, keys, in_redis) in cases {
        assert!(Pattern::parse(pattern).is_err(), "{pattern} is accepted");
        let keys = keys.iter().map(|k| k.to_string()).collect();
        let expected: BTreeSet<String> = in_redis.iter().map(|k| k.to_string()).collect();
        assert_eq!(
            redis_matches(&mut redis, pattern, &keys),
            expected,
            "{pattern}"
        );
    }
}

/// The cases of the issue, accepted in their unsurprising spelling.
#[test]
fn the_spellings_the_errors_suggest_agree_with_redis() {
    let server = RedisServer::start();
    let mut redis = server.connection();
    let keys: BTreeSet<String> = ["]x", "x", "-x", "ax", "a]x", "]]x", "bx"]
        .iter()
        .map(|k| k.to_string())
        .collect();
    for source in [r"[\]]x", r"[^\]]x", r"[a\-]x", "[-a]x", "?]x"] {
        let pattern = Pattern::parse(source).unwrap();
        let ours: BTreeSet<String> = keys
            .iter()
            .filter(|k| pattern.matches(k))
            .cloned()
            .collect();
        assert_eq!(redis_matches(&mut redis, source, &keys), ours, "{source}");
    }
}
