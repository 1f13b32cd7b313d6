//! Property tests of the L2 envelope: decoding never panics and never
//! returns a value from bytes that are not a complete envelope of its type.

use std::collections::BTreeMap;

use cache_runtime::{Codec, Deadlines, Envelope, EnvelopeError, TypeFingerprint};
use proptest::prelude::*;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
enum Status {
    Open,
    Paid { at_ms: u64 },
    Refunded(String, Option<u32>),
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Order {
    id: u64,
    tenant: String,
    lines: Vec<(String, u32, i64)>,
    status: Status,
    tags: BTreeMap<String, Vec<u8>>,
    note: Option<String>,
    ratio: f64,
}

fn status() -> impl Strategy<Value = Status> {
    prop_oneof![
        Just(Status::Open),
        any::<u64>().prop_map(|at_ms| Status::Paid { at_ms }),
        (".*", any::<Option<u32>>()).prop_map(|(s, n)| Status::Refunded(s, n)),
    ]
}

fn order() -> impl Strategy<Value = Order> {
    (
        any::<u64>(),
        ".{0,12}",
        prop::collection::vec((".{0,8}", any::<u32>(), any::<i64>()), 0..6),
        status(),
        prop::collection::btree_map(".{0,6}", prop::collection::vec(any::<u8>(), 0..8), 0..4),
        any::<Option<String>>(),
        -1e9f64..1e9,
    )
        .prop_map(|(id, tenant, lines, status, tags, note, ratio)| Order {
            id,
            tenant,
            lines,
            status,
            tags,
            note,
            ratio,
        })
}

fn codec() -> impl Strategy<Value = Codec> {
    prop_oneof![Just(Codec::Bincode), Just(Codec::Json)]
}

/// A well-formed header for `Order` in front of arbitrary payload bytes, so
/// that the codecs themselves see garbage (arbitrary bytes almost never get
/// past the magic).
fn header_then(codec: Codec, payload: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0xFF, 0xCA, 1, codec.id()];
    bytes.extend_from_slice(&TypeFingerprint::of::<Order>().as_u64().to_le_bytes());
    bytes.extend_from_slice(&10u64.to_le_bytes());
    bytes.extend_from_slice(&20u64.to_le_bytes());
    bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let env = Envelope::default();
        let _ = env.header(&bytes);
        let _ = env.decode::<Order>(&bytes);
        let _ = env.decode::<String>(&bytes);
        let _ = env.decode::<Vec<u64>>(&bytes);
    }

    #[test]
    fn arbitrary_payloads_behind_a_valid_header_never_panic(
        codec in codec(),
        payload in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let bytes = header_then(codec, &payload);
        match Envelope::default().decode::<Order>(&bytes) {
            Ok(_) | Err(EnvelopeError::Codec(_)) => {}
            Err(other) => prop_assert!(false, "header should have passed: {other}"),
        }
    }

    #[test]
    fn values_round_trip_and_every_strict_prefix_is_refused(order in order(), codec in codec(), fresh in 0u64..1 << 50, window in 0u64..1 << 20) {
        let env = Envelope::new(codec);
        let deadlines = Deadlines::new(fresh, fresh + window);
        let bytes = env.encode(&order, deadlines).unwrap();
        let decoded = env.decode::<Order>(&bytes).unwrap();
        prop_assert_eq!(&decoded.value, &order);
        prop_assert_eq!(decoded.header.deadlines, deadlines);
        prop_assert_eq!(decoded.header.codec, codec);
        for len in 0..bytes.len() {
            let is_truncated = matches!(env.decode::<Order>(&bytes[..len]), Err(EnvelopeError::Truncated { .. }));
            prop_assert!(is_truncated);
        }
        let is_mismatch = matches!(env.decode::<Status>(&bytes), Err(EnvelopeError::TypeMismatch { .. }));
        prop_assert!(is_mismatch);
    }

    #[test]
    fn flipping_a_header_byte_never_yields_another_value(order in order(), at in 0usize..32, flip in 1u8..=255) {
        let env = Envelope::default();
        let mut bytes = env.encode(&order, Deadlines::new(10, 20)).unwrap();
        bytes[at] ^= flip;
        // Only the deadlines may change and still decode, to the same value.
        if let Ok(decoded) = env.decode::<Order>(&bytes) {
            prop_assert!((12..28).contains(&at), "byte {} changed and still decoded", at);
            prop_assert_eq!(decoded.value, order);
        }
    }
}
