//! Serde codecs for values stored in the shared tier: bincode 2.x (compact,
//! the default) and JSON (readable with `redis-cli`).
//!
//! Errors are typed and never carry the value's content: the messages of
//! serde and bincode can quote the data they choked on, and values must not
//! reach logs, so a [`CodecError`] keeps only a coarse reason.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// How a value is turned into bytes for the shared tier.
///
/// Its [`id`](Codec::id) is written in every L2 envelope, so a reader decodes
/// a value with the codec that wrote it, whatever codec it writes with
/// itself: switching codecs needs no flush.
///
/// ```
/// use cache_runtime::Codec;
///
/// let bytes = Codec::Json.encode(&vec![1u32, 2, 3]).unwrap();
/// assert_eq!(bytes, b"[1,2,3]");
/// let back: Vec<u32> = Codec::Json.decode(&bytes).unwrap();
/// assert_eq!(back, [1, 2, 3]);
///
/// let bytes = Codec::default().encode(&("order", 42u64)).unwrap();
/// let back: (String, u64) = Codec::Bincode.decode(&bytes).unwrap();
/// assert_eq!(back, ("order".to_string(), 42));
///
/// // Bytes of another shape are an error, never a panic or a wrong value.
/// assert!(Codec::Bincode.decode::<(String, u64)>(&[0xfd, 0xff, 0xff]).is_err());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    /// bincode 2.x with serde, standard configuration (variable-length
    /// integers, little endian).
    #[default]
    Bincode,
    /// JSON through serde_json.
    Json,
}

/// Limits on what bincode may claim to allocate while decoding a payload of a
/// given size, in tiers (bincode's limit is a const generic).
///
/// bincode allocates a container from the length it reads before it reads the
/// elements, so garbage that passes as a length (a changed struct read with an
/// old layout does this) would otherwise ask for any amount of memory. A claim
/// is counted in in-memory bytes (`len * size_of::<T>()`), which can exceed
/// the encoded size; these tiers leave 64 times the payload up to 16 MiB
/// payloads, and 2 GiB above. A legitimate value that claims more (say a
/// long `Vec` of a large enum whose variants encode in one byte) fails to
/// decode: a miss, never a wrong value.
const CLAIM_TIER_SMALL: usize = 4 << 20; // payloads up to 64 KiB
const CLAIM_TIER_MEDIUM: usize = 64 << 20; // payloads up to 1 MiB
const CLAIM_TIER_LARGE: usize = 1 << 30; // payloads up to 16 MiB
const CLAIM_TIER_HUGE: usize = if usize::BITS >= 64 { 2 << 30 } else { 1 << 30 };

impl Codec {
    /// The byte that names this codec in an envelope.
    ///
    /// ```
    /// use cache_runtime::Codec;
    /// assert_eq!(Codec::from_id(Codec::Json.id()), Some(Codec::Json));
    /// assert_eq!(Codec::from_id(0), None);
    /// ```
    pub const fn id(self) -> u8 {
        match self {
            Codec::Bincode => 1,
            Codec::Json => 2,
        }
    }

    /// The codec an envelope byte names, if any.
    ///
    /// ```
    /// use cache_runtime::Codec;
    /// assert_eq!(Codec::from_id(1), Some(Codec::Bincode));
    /// assert_eq!(Codec::from_id(7), None);
    /// ```
    pub const fn from_id(id: u8) -> Option<Codec> {
        match id {
            1 => Some(Codec::Bincode),
            2 => Some(Codec::Json),
            _ => None,
        }
    }

    /// A short name: `bincode` or `json`.
    ///
    /// ```
    /// use cache_runtime::Codec;
    /// assert_eq!(Codec::Bincode.name(), "bincode");
    /// ```
    pub const fn name(self) -> &'static str {
        match self {
            Codec::Bincode => "bincode",
            Codec::Json => "json",
        }
    }

    /// Encodes `value` into a new buffer.
    ///
    /// # Errors
    /// The value's `Serialize` impl failed, or JSON was asked for a map whose
    /// keys are not strings.
    ///
    /// ```
    /// use cache_runtime::Codec;
    /// assert_eq!(Codec::Json.encode("hi").unwrap(), b"\"hi\"");
    /// ```
    pub fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::new();
        self.encode_into(value, &mut out)?;
        Ok(out)
    }

    /// Appends the encoding of `value` to `out`; on error `out` may hold a
    /// partial encoding after its original length.
    ///
    /// # Errors
    /// As [`encode`](Codec::encode).
    ///
    /// ```
    /// use cache_runtime::Codec;
    /// let mut out = b"head:".to_vec();
    /// Codec::Json.encode_into(&7u8, &mut out).unwrap();
    /// assert_eq!(out, b"head:7");
    /// ```
    pub fn encode_into<T: Serialize + ?Sized>(
        self,
        value: &T,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        match self {
            Codec::Bincode => {
                bincode::serde::encode_into_std_write(value, out, bincode::config::standard())
                    .map(drop)
                    .map_err(|e| CodecError::new(self, Op::Encode, bincode_encode_reason(&e)))
            }
            Codec::Json => serde_json::to_writer(out, value)
                .map_err(|e| CodecError::new(self, Op::Encode, json_reason(&e))),
        }
    }

    /// Decodes a whole buffer as a `T`. Bytes left over after the value are
    /// an error, as are bytes of another shape; nothing here panics on any
    /// input, and bincode's allocations are bounded by a limit scaled to the
    /// input's length.
    ///
    /// # Errors
    /// The bytes are not one complete encoding of a `T`.
    ///
    /// ```
    /// use cache_runtime::Codec;
    /// assert_eq!(Codec::Json.decode::<u8>(b"7").unwrap(), 7);
    /// let err = Codec::Json.decode::<u8>(b"\"seven\"").unwrap_err();
    /// assert_eq!(err.to_string(), "json could not decode the value: data of another shape (line 1, column 7)");
    /// ```
    pub fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, CodecError> {
        match self {
            Codec::Bincode => {
                let decoded = match bytes.len() {
                    n if n <= 64 << 10 => bincode_decode::<T, CLAIM_TIER_SMALL>(bytes),
                    n if n <= 1 << 20 => bincode_decode::<T, CLAIM_TIER_MEDIUM>(bytes),
                    n if n <= 16 << 20 => bincode_decode::<T, CLAIM_TIER_LARGE>(bytes),
                    _ => bincode_decode::<T, CLAIM_TIER_HUGE>(bytes),
                };
                match decoded {
                    Ok((value, read)) if read == bytes.len() => Ok(value),
                    Ok(_) => Err(CodecError::new(
                        self,
                        Op::Decode,
                        "bytes left after the value",
                    )),
                    Err(e) => Err(CodecError::new(self, Op::Decode, bincode_decode_reason(&e))),
                }
            }
            Codec::Json => serde_json::from_slice(bytes)
                .map_err(|e| CodecError::new(self, Op::Decode, json_reason(&e))),
        }
    }
}

fn bincode_decode<T: DeserializeOwned, const LIMIT: usize>(
    bytes: &[u8],
) -> Result<(T, usize), bincode::error::DecodeError> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard().with_limit::<LIMIT>())
}

fn bincode_encode_reason(e: &bincode::error::EncodeError) -> &'static str {
    use bincode::error::EncodeError as E;
    match e {
        E::UnexpectedEnd => "the output ended early",
        E::Io { .. } => "an I/O error",
        _ => "the value's Serialize impl failed",
    }
}

fn bincode_decode_reason(e: &bincode::error::DecodeError) -> &'static str {
    use bincode::error::DecodeError as E;
    match e {
        E::UnexpectedEnd { .. } => "the bytes end before the value does (truncated)",
        E::LimitExceeded => "a length larger than the decode limit",
        E::InvalidIntegerType { .. } => "an integer of another width",
        E::NonZeroTypeIsZero { .. } => "a zero where a non-zero integer belongs",
        E::UnexpectedVariant { .. } => "an enum variant that does not exist",
        E::Utf8 { .. } => "a string that is not UTF-8",
        E::InvalidCharEncoding(_) => "an invalid char",
        E::InvalidBooleanValue(_) => "an invalid bool",
        E::OutsideUsizeRange(_) => "a length that does not fit in usize",
        E::EmptyEnum { .. } => "a value of an empty enum",
        _ => "data of another shape",
    }
}

fn json_reason(e: &serde_json::Error) -> JsonReason {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Io => "an I/O error",
        Category::Syntax => "invalid JSON",
        Category::Data => "data of another shape",
        Category::Eof => "the bytes end before the value does (truncated)",
    };
    JsonReason {
        what,
        line: e.line(),
        column: e.column(),
    }
}

struct JsonReason {
    what: &'static str,
    line: usize,
    column: usize,
}

impl From<&'static str> for Reason {
    fn from(what: &'static str) -> Self {
        Reason { what, at: None }
    }
}

impl From<JsonReason> for Reason {
    fn from(r: JsonReason) -> Self {
        Reason {
            what: r.what,
            at: (r.line > 0).then_some((r.line, r.column)),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Reason {
    what: &'static str,
    at: Option<(usize, usize)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Encode,
    Decode,
}

/// A value could not be encoded, or bytes could not be decoded as the
/// expected type. The message names the codec and a coarse reason, never
/// the data.
///
/// ```
/// use cache_runtime::Codec;
///
/// let err = Codec::Bincode.decode::<String>(&[5, b'a']).unwrap_err();
/// assert_eq!(err.codec(), Codec::Bincode);
/// assert!(err.is_decode());
/// assert_eq!(err.to_string(), "bincode could not decode the value: the bytes end before the value does (truncated)");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodecError {
    codec: Codec,
    op: Op,
    reason: Reason,
}

impl CodecError {
    fn new(codec: Codec, op: Op, reason: impl Into<Reason>) -> Self {
        CodecError {
            codec,
            op,
            reason: reason.into(),
        }
    }

    /// The codec that failed.
    ///
    /// ```
    /// use cache_runtime::Codec;
    /// assert_eq!(Codec::Json.decode::<u8>(b"").unwrap_err().codec(), Codec::Json);
    /// ```
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// `true` when decoding failed, `false` when encoding did.
    ///
    /// ```
    /// use cache_runtime::Codec;
    /// assert!(Codec::Json.decode::<u8>(b"x").unwrap_err().is_decode());
    /// ```
    pub fn is_decode(&self) -> bool {
        self.op == Op::Decode
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            Op::Encode => "encode",
            Op::Decode => "decode",
        };
        write!(
            f,
            "{} could not {op} the value: {}",
            self.codec.name(),
            self.reason.what
        )?;
        if let Some((line, column)) = self.reason.at {
            write!(f, " (line {line}, column {column})")?;
        }
        Ok(())
    }
}

impl std::error::Error for CodecError {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Order {
        id: u64,
        tenant: String,
        lines: Vec<(String, u32)>,
        note: Option<String>,
        tags: BTreeMap<String, i64>,
    }

    fn order() -> Order {
        Order {
            id: 7,
            tenant: "acme".into(),
            lines: vec![("widget".into(), 3), ("gadget".into(), 1)],
            note: None,
            tags: [("vip".to_string(), 1)].into_iter().collect(),
        }
    }

    #[test]
    fn round_trips_in_both_codecs() {
        for codec in [Codec::Bincode, Codec::Json] {
            let bytes = codec.encode(&order()).unwrap();
            assert_eq!(codec.decode::<Order>(&bytes).unwrap(), order(), "{codec:?}");
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        for codec in [Codec::Bincode, Codec::Json] {
            let bytes = codec.encode(&order()).unwrap();
            for len in 0..bytes.len() {
                let err = codec.decode::<Order>(&bytes[..len]).unwrap_err();
                assert!(err.is_decode());
            }
        }
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let mut bytes = Codec::Bincode.encode(&order()).unwrap();
        bytes.push(0);
        let err = Codec::Bincode.decode::<Order>(&bytes).unwrap_err();
        assert_eq!(
            err.to_string(),
            "bincode could not decode the value: bytes left after the value"
        );
        assert!(Codec::Json.decode::<u8>(b"1 2").is_err());
    }

    #[test]
    fn a_huge_claimed_length_is_refused_before_allocating() {
        // varint 253 = u64 length follows: a String of 2^62 bytes.
        let mut bytes = vec![253];
        bytes.extend_from_slice(&(1u64 << 62).to_le_bytes());
        let err = Codec::Bincode.decode::<String>(&bytes).unwrap_err();
        assert!(err.to_string().contains("decode limit"), "{err}");
        // Sequences go through serde's cautious preallocation instead.
        let err = Codec::Bincode.decode::<Vec<u64>>(&bytes).unwrap_err();
        assert!(err.is_decode());
    }

    #[test]
    fn messages_never_quote_the_data() {
        let err = Codec::Json.decode::<u64>(br#""secret-token""#).unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
        let bytes = Codec::Bincode.encode("secret-token").unwrap();
        let err = Codec::Bincode.decode::<u64>(&bytes).unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
    }
}
