//! The type-erased codecs that `#[cached]` functions and the handle give
//! the shared tier, and the clock of the deadlines in envelopes.

use std::any::Any;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::entry::AnyValue;
use crate::envelope::{Deadlines, Envelope, EnvelopeError};

/// Encodes and decodes the values of one type, behind type erasure: what a
/// `#[cached]` function whose value is `Serialize + DeserializeOwned` hands
/// to the cache.
#[derive(Clone, Copy)]
pub struct ValueCodec {
    pub(crate) encode: EncodeFn,
    pub(crate) decode: DecodeFn,
}

type EncodeFn =
    fn(&(dyn Any + Send + Sync), &Envelope, Deadlines) -> Result<Vec<u8>, EnvelopeError>;
type DecodeFn = fn(&Envelope, &[u8]) -> Result<(AnyValue, Deadlines), EnvelopeError>;

impl std::fmt::Debug for ValueCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ValueCodec")
    }
}

fn encode_as<V: Serialize + 'static>(
    value: &(dyn Any + Send + Sync),
    envelope: &Envelope,
    deadlines: Deadlines,
) -> Result<Vec<u8>, EnvelopeError> {
    match value.downcast_ref::<V>() {
        Some(value) => envelope.encode(value, deadlines),
        // The cache hands each codec values of its own type only.
        None => Err(EnvelopeError::InvalidDeadlines(deadlines)),
    }
}

fn decode_as<V: DeserializeOwned + Send + Sync + 'static>(
    envelope: &Envelope,
    bytes: &[u8],
) -> Result<(AnyValue, Deadlines), EnvelopeError> {
    let decoded = envelope.decode::<V>(bytes)?;
    Ok((Arc::new(decoded.value), decoded.header.deadlines))
}

impl ValueCodec {
    /// The codec of `V`.
    pub(crate) fn of<V: Serialize + DeserializeOwned + Send + Sync + 'static>() -> ValueCodec {
        ValueCodec {
            encode: encode_as::<V>,
            decode: decode_as::<V>,
        }
    }
}

/// Now, in unix milliseconds: the clock of the deadlines in envelopes,
/// which several processes read.
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
