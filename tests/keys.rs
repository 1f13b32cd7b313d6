//! Key escaping, by property: no two argument tuples of one template make
//! the same key, and no argument widens a pattern.

use cache_runtime::{KeyBuf, KeyPart, Pattern};
use proptest::prelude::*;

/// Strings heavy in the characters that mean something to keys and globs.
fn nasty() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a:*?\\[\\]\\\\{}%, \n\t\r^\\-€é漢x0]{0,12}",
        1 => "[a-z:*%]{200,600}",
        1 => any::<String>(),
    ]
}

/// `order:<a>:<b>:<c>`, as `#[cached(key = "order:<a>:<b>:<c>")]` builds it.
fn key(a: &str, b: &Option<String>, c: i64) -> String {
    let mut k = KeyBuf::new();
    k.push_literal("order:");
    k.push_part(a);
    k.push_literal(":");
    k.push_part(b);
    k.push_literal(":");
    k.push_part(&c);
    k.as_str().to_owned()
}

/// `orders:list:<a>:*`, as `#[invalidates("orders:list:<a>:*")]` builds it.
fn pattern(a: &str) -> Pattern {
    let mut k = KeyBuf::new();
    k.push_literal("orders:list:");
    k.push_part(a);
    k.push_literal(":");
    k.push_wildcard();
    Pattern::parse(k.as_str()).expect("a built pattern always parses")
}

fn list_key(a: &str, page: u32) -> String {
    let mut k = KeyBuf::new();
    k.push_literal("orders:list:");
    k.push_part(a);
    k.push_literal(":p");
    k.push_part(&page);
    k.as_str().to_owned()
}

const RESERVED: [char; 11] = [':', '*', '?', '[', ']', '\\', '{', '}', ',', ' ', '\n'];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn different_arguments_make_different_keys(
        a1 in nasty(), b1 in proptest::option::of(nasty()), c1 in any::<i64>(),
        a2 in nasty(), b2 in proptest::option::of(nasty()), c2 in any::<i64>(),
    ) {
        let same_args = (&a1, &b1, c1) == (&a2, &b2, c2);
        prop_assert_eq!(key(&a1, &b1, c1) == key(&a2, &b2, c2), same_args);
    }

    #[test]
    fn near_collisions_stay_apart(a in nasty(), b in nasty()) {
        // Moving text across the separator never yields the same key.
        let joined = format!("{a}:{b}");
        prop_assert_ne!(key(&joined, &None, 1), key(&a, &Some(b.clone()), 1));
        prop_assert_ne!(key(&a, &None, 1), key(&a, &Some("%N".into()), 1));
    }

    #[test]
    fn an_argument_never_widens_a_pattern(a in nasty(), other in nasty(), page in any::<u32>()) {
        let p = pattern(&a);
        prop_assert!(p.matches(&list_key(&a, page)));
        if other != a {
            prop_assert!(!p.matches(&list_key(&other, page)), "{:?} matched {:?}", p, other);
        }
    }

    #[test]
    fn key_text_never_holds_reserved_characters(s in nasty()) {
        let text = cache_runtime::key_text(s.as_str());
        let reserved = RESERVED.iter().find(|&&c| text.contains(c));
        prop_assert_eq!(reserved, None);
    }

    #[test]
    fn patterns_never_panic_on_any_input(s in any::<String>(), k in any::<String>()) {
        if let Ok(p) = Pattern::parse(&s) {
            let _ = p.matches(&k);
        }
    }
}

#[test]
fn composite_parts_separate_their_fields() {
    struct Region(&'static str, &'static str);
    impl KeyPart for Region {
        fn write_key(&self, out: &mut cache_runtime::KeyWriter<'_>) {
            out.write_str(self.0);
            out.write_separator();
            out.write_str(self.1);
        }
    }
    let ab = cache_runtime::key_text(&Region("a,b", "c"));
    let a_bc = cache_runtime::key_text(&Region("a", "b,c"));
    assert_ne!(ab, a_bc);
    assert_eq!(ab, "a%2Cb,c");
}

/// `uuid` feature: a `Uuid` argument keys a `#[cached]` function, and an
/// invalidation built from it removes that key only.
#[tokio::test]
async fn uuids_are_key_parts() {
    use std::sync::atomic::{AtomicU32, Ordering};
    static CALLS: AtomicU32 = AtomicU32::new(0);

    #[cache_runtime::cached(ttl = "1h", key = "doc:<id>")]
    async fn doc(id: uuid::Uuid) -> String {
        CALLS.fetch_add(1, Ordering::SeqCst);
        id.to_string()
    }
    #[cache_runtime::invalidates("doc:<id>")]
    async fn edit(id: uuid::Uuid) {
        let _ = id;
    }

    let (a, b) = (uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2));
    let cache = cache_runtime::Cache::builder().build().unwrap();
    cache
        .scope(async {
            assert_eq!(doc(a).await, a.to_string());
            assert_eq!(doc(b).await, b.to_string());
            doc(a).await;
            assert_eq!(CALLS.load(Ordering::SeqCst), 2);
            edit(a).await;
            doc(a).await;
            doc(b).await;
            assert_eq!(CALLS.load(Ordering::SeqCst), 3, "only a's key was removed");
        })
        .await;
    assert!(cache.exists(&format!("doc:{a}")).await);
}
