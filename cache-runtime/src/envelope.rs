//! The L2 value envelope: a fixed 32-byte header in front of the encoded
//! value, so that a reader can tell a value it may use from anything else
//! under the same key.
//!
//! ```text
//! offset size field
//!      0    2 magic 0xFF 0xCA (0xFF never starts UTF-8 text)
//!      2    1 format version (1)
//!      3    1 codec id (1 bincode, 2 json), + 0x80 when the payload is
//!             LZ4-compressed (its uncompressed length, u32 little endian,
//!             in front)
//!      4    8 type fingerprint, u64 little endian
//!     12    8 fresh until, unix milliseconds, u64 little endian
//!     20    8 stale until, unix milliseconds, u64 little endian
//!     28    4 payload length, u32 little endian
//!     32    n payload
//! ```
//!
//! What it catches: foreign data (magic), other format versions, unknown
//! codecs, truncation and extra bytes (the length), values of another type
//! (the fingerprint, within the limits told on [`TypeFingerprint`]),
//! impossible deadlines, oversized values, and payloads the codec rejects.
//! What it does not: bit flips inside a payload that still decodes. Redis and
//! TCP are trusted not to corrupt bytes, so there is no checksum to pay for
//! on every read.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::{Codec, CodecError};

const MAGIC: [u8; 2] = [0xFF, 0xCA];

/// The envelope format this build writes and the only one it reads.
pub const ENVELOPE_VERSION: u8 = 1;

/// Length of the envelope header in bytes.
pub const ENVELOPE_HEADER_LEN: usize = 32;

/// The largest envelope [`Envelope::max_bytes`] accepts: Redis's own limit
/// on a string value.
pub const ENVELOPE_HARD_MAX_BYTES: usize = 512 << 20;

/// A 64-bit tag for a Rust type, written in each envelope and checked on
/// read, so that bytes stored for one type are never decoded as another.
///
/// [`TypeFingerprint::of`] hashes (FNV-1a) [`std::any::type_name`] and the
/// type's size. Its limits:
///
/// - `type_name` is a diagnostic, not a stable identity: its text may change
///   between compiler versions. A rolling deploy across a compiler upgrade
///   then sees misses, not wrong values.
/// - It names the type, not its definition. A struct that gains, loses or
///   retypes a field keeps its name; the size often changes with it, but not
///   always (a `u32` field becoming an `i32`, or a renamed field under JSON).
///   Such bytes then reach the codec, which rejects most of them as a shape
///   error; when a changed type still decodes, the value is the old data in
///   the new shape. Call [`with_schema`](TypeFingerprint::with_schema) with a
///   number you bump on incompatible changes to make that a miss.
/// - Two types with the same path in two versions of one crate (`foo 1.x`
///   and `foo 2.x` both linked) have the same name; the size may tell them
///   apart, or not.
/// - Renaming or moving a type changes the fingerprint: a miss, the safe
///   direction.
///
/// ```
/// use cache_runtime::TypeFingerprint;
///
/// assert_eq!(TypeFingerprint::of::<Vec<u32>>(), TypeFingerprint::of::<Vec<u32>>());
/// assert_ne!(TypeFingerprint::of::<Vec<u32>>(), TypeFingerprint::of::<Vec<i32>>());
/// assert_ne!(
///     TypeFingerprint::of::<String>(),
///     TypeFingerprint::of::<String>().with_schema(2),
/// );
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TypeFingerprint(u64);

pub(crate) const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

pub(crate) fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

impl TypeFingerprint {
    /// The fingerprint of `T`: its type name and size, hashed.
    ///
    /// ```
    /// use cache_runtime::TypeFingerprint;
    /// struct Order;
    /// struct Invoice;
    /// assert_ne!(TypeFingerprint::of::<Order>(), TypeFingerprint::of::<Invoice>());
    /// ```
    pub fn of<T>() -> TypeFingerprint {
        let hash = fnv1a(FNV_OFFSET, std::any::type_name::<T>().as_bytes());
        TypeFingerprint(fnv1a(
            hash,
            &(std::mem::size_of::<T>() as u64).to_le_bytes(),
        ))
    }

    /// Mixes a schema number into the fingerprint: bump it when a type
    /// changes in a way its old bytes must not be read as.
    ///
    /// ```
    /// use cache_runtime::TypeFingerprint;
    /// let v1 = TypeFingerprint::of::<u64>().with_schema(1);
    /// assert_eq!(v1, TypeFingerprint::of::<u64>().with_schema(1));
    /// assert_ne!(v1, TypeFingerprint::of::<u64>().with_schema(2));
    /// ```
    #[must_use]
    pub fn with_schema(self, schema: u64) -> TypeFingerprint {
        let hash = fnv1a(self.0 ^ 0x5c5c_5c5c_5c5c_5c5c, &schema.to_le_bytes());
        TypeFingerprint(hash)
    }

    /// The raw 64 bits, as written in the header.
    ///
    /// ```
    /// use cache_runtime::TypeFingerprint;
    /// let f = TypeFingerprint::of::<u8>();
    /// assert_eq!(TypeFingerprint::from_u64(f.as_u64()), f);
    /// ```
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// A fingerprint from its raw 64 bits.
    ///
    /// ```
    /// use cache_runtime::TypeFingerprint;
    /// assert_eq!(TypeFingerprint::from_u64(7).as_u64(), 7);
    /// ```
    pub const fn from_u64(bits: u64) -> TypeFingerprint {
        TypeFingerprint(bits)
    }
}

impl fmt::Debug for TypeFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TypeFingerprint({:016x})", self.0)
    }
}

impl fmt::Display for TypeFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// When a stored value stops being fresh, and when it stops being usable
/// even as a stale value, in unix milliseconds.
///
/// ```
/// use cache_runtime::Deadlines;
///
/// let d = Deadlines::new(1_000, 5_000);
/// assert!(d.is_fresh(999));
/// assert!(!d.is_fresh(1_000) && d.is_usable(4_999));
/// assert!(!d.is_usable(5_000));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Deadlines {
    /// Fresh strictly before this instant.
    pub fresh_until_ms: u64,
    /// Usable as a stale value strictly before this instant; never earlier
    /// than `fresh_until_ms`.
    pub stale_until_ms: u64,
}

impl Deadlines {
    /// Deadlines from two unix-millisecond instants.
    ///
    /// ```
    /// use cache_runtime::Deadlines;
    /// let d = Deadlines::new(10, 20);
    /// assert_eq!((d.fresh_until_ms, d.stale_until_ms), (10, 20));
    /// ```
    pub const fn new(fresh_until_ms: u64, stale_until_ms: u64) -> Self {
        Deadlines {
            fresh_until_ms,
            stale_until_ms,
        }
    }

    /// `now_ms` is before the end of freshness.
    ///
    /// ```
    /// use cache_runtime::Deadlines;
    /// assert!(Deadlines::new(10, 20).is_fresh(9));
    /// ```
    pub const fn is_fresh(&self, now_ms: u64) -> bool {
        now_ms < self.fresh_until_ms
    }

    /// `now_ms` is before the end of the stale window.
    ///
    /// ```
    /// use cache_runtime::Deadlines;
    /// assert!(Deadlines::new(10, 20).is_usable(19));
    /// ```
    pub const fn is_usable(&self, now_ms: u64) -> bool {
        now_ms < self.stale_until_ms
    }
}

/// The decoded header of an envelope.
///
/// ```
/// use cache_runtime::{Codec, Deadlines, Envelope, TypeFingerprint};
///
/// let env = Envelope::new(Codec::Json);
/// let bytes = env.encode(&42u32, Deadlines::new(1, 2)).unwrap();
/// let header = env.header(&bytes).unwrap();
/// assert_eq!(header.codec, Codec::Json);
/// assert_eq!(header.fingerprint, TypeFingerprint::of::<u32>());
/// assert_eq!(header.payload_len, 2);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EnvelopeHeader {
    /// The format version ([`ENVELOPE_VERSION`]).
    pub version: u8,
    /// The codec of the payload.
    pub codec: Codec,
    /// The type the payload was written as.
    pub fingerprint: TypeFingerprint,
    /// Freshness of the value.
    pub deadlines: Deadlines,
    /// Payload length in bytes (compressed, when it is).
    pub payload_len: u32,
    /// The payload is LZ4-compressed.
    pub compressed: bool,
}

/// A decoded value with its header.
///
/// ```
/// use cache_runtime::{Deadlines, Envelope};
///
/// let env = Envelope::default();
/// let bytes = env.encode(&"hi".to_string(), Deadlines::new(5, 9)).unwrap();
/// let decoded = env.decode::<String>(&bytes).unwrap();
/// assert_eq!(decoded.value, "hi");
/// assert_eq!(decoded.header.deadlines, Deadlines::new(5, 9));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Decoded<T> {
    /// The value.
    pub value: T,
    /// Its header.
    pub header: EnvelopeHeader,
}

/// Encodes values into envelopes and checks envelopes on the way back: the
/// codec to write with and the size limit on both directions.
///
/// Decoding never panics, whatever the bytes (a property test feeds it
/// arbitrary input), and everything that is not a complete envelope of the
/// expected type within the limit is an [`EnvelopeError`]: the caller counts
/// it and treats it as a miss.
///
/// ```
/// use cache_runtime::{Codec, Deadlines, Envelope, EnvelopeError};
///
/// #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
/// struct Order { id: u64, total_cents: u64 }
///
/// let env = Envelope::new(Codec::Bincode).max_bytes(1 << 20);
/// let bytes = env.encode(&Order { id: 1, total_cents: 4200 }, Deadlines::new(1_000, 2_000)).unwrap();
/// assert_eq!(env.decode::<Order>(&bytes).unwrap().value, Order { id: 1, total_cents: 4200 });
///
/// // Truncated, foreign, or of another type: typed errors.
/// assert!(matches!(env.decode::<Order>(&bytes[..10]), Err(EnvelopeError::Truncated { .. })));
/// assert!(matches!(env.decode::<Order>(b"hello"), Err(EnvelopeError::NotAnEnvelope)));
/// assert!(matches!(env.decode::<String>(&bytes), Err(EnvelopeError::TypeMismatch { .. })));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Envelope {
    codec: Codec,
    max_bytes: usize,
    /// Compress payloads longer than this (the `compression` feature).
    compress_above: Option<usize>,
}

/// The codec byte's flag for a compressed payload.
const COMPRESSED: u8 = 0x80;

impl Default for Envelope {
    /// Bincode, at most [`Envelope::DEFAULT_MAX_BYTES`].
    fn default() -> Self {
        Envelope::new(Codec::default())
    }
}

impl Envelope {
    /// The default size limit of a whole envelope: 16 MiB.
    pub const DEFAULT_MAX_BYTES: usize = 16 << 20;

    /// Envelopes written with `codec`, at most
    /// [`DEFAULT_MAX_BYTES`](Envelope::DEFAULT_MAX_BYTES) long.
    ///
    /// ```
    /// use cache_runtime::{Codec, Envelope};
    /// assert_eq!(Envelope::new(Codec::Json).codec(), Codec::Json);
    /// ```
    pub const fn new(codec: Codec) -> Self {
        Envelope {
            codec,
            max_bytes: Self::DEFAULT_MAX_BYTES,
            compress_above: None,
        }
    }

    /// Compresses (LZ4) payloads longer than `threshold` bytes, when that
    /// makes them smaller. Reading compressed envelopes needs the
    /// `compression` feature; without it they are an
    /// [`EnvelopeError::Compression`] (a miss), and this setting writes
    /// nothing compressed.
    ///
    /// ```
    /// use cache_runtime::{Deadlines, Envelope};
    ///
    /// let env = Envelope::default().compress_above(1024);
    /// let text = "all work and no play ".repeat(500);
    /// let bytes = env.encode(&text, Deadlines::new(1, 1)).unwrap();
    /// # #[cfg(feature = "compression")]
    /// assert!(bytes.len() < text.len() / 4);
    /// assert_eq!(env.decode::<String>(&bytes).unwrap().value, text);
    /// ```
    #[must_use]
    pub const fn compress_above(mut self, threshold: usize) -> Self {
        self.compress_above = Some(threshold);
        self
    }

    /// Sets the size limit of a whole envelope, header included, for
    /// encoding and decoding.
    ///
    /// # Panics
    /// When `max_bytes` is below [`ENVELOPE_HEADER_LEN`] or above
    /// [`ENVELOPE_HARD_MAX_BYTES`].
    ///
    /// ```
    /// use cache_runtime::Envelope;
    /// assert_eq!(Envelope::default().max_bytes(4096).limit(), 4096);
    /// ```
    #[must_use]
    pub const fn max_bytes(mut self, max_bytes: usize) -> Self {
        assert!(
            max_bytes >= ENVELOPE_HEADER_LEN && max_bytes <= ENVELOPE_HARD_MAX_BYTES,
            "Envelope::max_bytes must be between 32 bytes and 512 MiB"
        );
        self.max_bytes = max_bytes;
        self
    }

    /// The codec this envelope writes with.
    ///
    /// ```
    /// use cache_runtime::{Codec, Envelope};
    /// assert_eq!(Envelope::default().codec(), Codec::Bincode);
    /// ```
    pub const fn codec(&self) -> Codec {
        self.codec
    }

    /// The size limit of a whole envelope.
    ///
    /// ```
    /// use cache_runtime::Envelope;
    /// assert_eq!(Envelope::default().limit(), Envelope::DEFAULT_MAX_BYTES);
    /// ```
    pub const fn limit(&self) -> usize {
        self.max_bytes
    }

    /// Encodes `value` as a `T` (its fingerprint is
    /// [`TypeFingerprint::of::<T>()`](TypeFingerprint::of)).
    ///
    /// # Errors
    /// [`EnvelopeError::InvalidDeadlines`] when the stale deadline is before
    /// the fresh one, [`EnvelopeError::Codec`] when the codec fails,
    /// [`EnvelopeError::TooLarge`] when the result exceeds the limit.
    ///
    /// ```
    /// use cache_runtime::{Deadlines, Envelope, EnvelopeError};
    ///
    /// let env = Envelope::default().max_bytes(40);
    /// assert_eq!(env.encode(&1u8, Deadlines::new(1, 1)).unwrap().len(), 33);
    /// assert!(matches!(env.encode(&vec![0u8; 64], Deadlines::new(1, 1)), Err(EnvelopeError::TooLarge { .. })));
    /// assert!(matches!(env.encode(&1u8, Deadlines::new(2, 1)), Err(EnvelopeError::InvalidDeadlines { .. })));
    /// ```
    pub fn encode<T: Serialize>(
        &self,
        value: &T,
        deadlines: Deadlines,
    ) -> Result<Vec<u8>, EnvelopeError> {
        self.encode_as(value, TypeFingerprint::of::<T>(), deadlines)
    }

    /// Encodes `value` under an explicit fingerprint (for example one
    /// [`with_schema`](TypeFingerprint::with_schema)).
    ///
    /// # Errors
    /// As [`encode`](Envelope::encode).
    ///
    /// ```
    /// use cache_runtime::{Deadlines, Envelope, TypeFingerprint};
    ///
    /// let env = Envelope::default();
    /// let v2 = TypeFingerprint::of::<u32>().with_schema(2);
    /// let bytes = env.encode_as(&7u32, v2, Deadlines::new(1, 1)).unwrap();
    /// assert!(env.decode::<u32>(&bytes).is_err());
    /// assert_eq!(env.decode_as::<u32>(&bytes, v2).unwrap().value, 7);
    /// ```
    pub fn encode_as<T: Serialize + ?Sized>(
        &self,
        value: &T,
        fingerprint: TypeFingerprint,
        deadlines: Deadlines,
    ) -> Result<Vec<u8>, EnvelopeError> {
        if deadlines.stale_until_ms < deadlines.fresh_until_ms {
            return Err(EnvelopeError::InvalidDeadlines(deadlines));
        }
        let mut out = Vec::with_capacity(ENVELOPE_HEADER_LEN + 64);
        out.extend_from_slice(&MAGIC);
        out.push(ENVELOPE_VERSION);
        out.push(self.codec.id());
        out.extend_from_slice(&fingerprint.as_u64().to_le_bytes());
        out.extend_from_slice(&deadlines.fresh_until_ms.to_le_bytes());
        out.extend_from_slice(&deadlines.stale_until_ms.to_le_bytes());
        out.extend_from_slice(&[0; 4]); // payload length, below
        debug_assert_eq!(out.len(), ENVELOPE_HEADER_LEN);
        self.codec.encode_into(value, &mut out)?;
        // The limit applies to the uncompressed envelope too: a reader
        // refuses to inflate past it.
        if out.len() > self.max_bytes {
            return Err(EnvelopeError::TooLarge {
                len: out.len(),
                max: self.max_bytes,
            });
        }
        #[cfg(feature = "compression")]
        if let Some(threshold) = self.compress_above {
            let payload = &out[ENVELOPE_HEADER_LEN..];
            if payload.len() > threshold && payload.len() <= u32::MAX as usize {
                let packed = lz4_flex::compress_prepend_size(payload);
                if packed.len() < payload.len() {
                    out.truncate(ENVELOPE_HEADER_LEN);
                    out.extend_from_slice(&packed);
                    out[3] |= COMPRESSED;
                }
            }
        }
        if out.len() > self.max_bytes {
            return Err(EnvelopeError::TooLarge {
                len: out.len(),
                max: self.max_bytes,
            });
        }
        // max_bytes <= 512 MiB, so the payload length fits in a u32.
        let payload_len = (out.len() - ENVELOPE_HEADER_LEN) as u32;
        out[28..32].copy_from_slice(&payload_len.to_le_bytes());
        Ok(out)
    }

    /// Checks and returns the header of `bytes` without decoding the
    /// payload: its length against the limit and the header's, the magic,
    /// the version, the codec and the deadlines (not the fingerprint, which
    /// the caller may compare itself).
    ///
    /// # Errors
    /// Every [`EnvelopeError`] but `TypeMismatch` and `Codec`.
    ///
    /// ```
    /// use cache_runtime::{Deadlines, Envelope};
    ///
    /// let env = Envelope::default();
    /// let bytes = env.encode(&[1u8, 2, 3], Deadlines::new(100, 200)).unwrap();
    /// let header = env.header(&bytes).unwrap();
    /// assert!(!header.deadlines.is_fresh(150) && header.deadlines.is_usable(150));
    /// ```
    pub fn header(&self, bytes: &[u8]) -> Result<EnvelopeHeader, EnvelopeError> {
        if bytes.len() > self.max_bytes {
            return Err(EnvelopeError::TooLarge {
                len: bytes.len(),
                max: self.max_bytes,
            });
        }
        if bytes.len() < MAGIC.len() || bytes[..2] != MAGIC {
            // Shorter than the magic: a prefix of one, or nothing at all.
            return Err(if MAGIC.starts_with(bytes) {
                EnvelopeError::Truncated {
                    len: bytes.len(),
                    expected: ENVELOPE_HEADER_LEN,
                }
            } else {
                EnvelopeError::NotAnEnvelope
            });
        }
        if bytes.len() < ENVELOPE_HEADER_LEN {
            return Err(EnvelopeError::Truncated {
                len: bytes.len(),
                expected: ENVELOPE_HEADER_LEN,
            });
        }
        let version = bytes[2];
        if version != ENVELOPE_VERSION {
            return Err(EnvelopeError::UnsupportedVersion {
                found: version,
                supported: ENVELOPE_VERSION,
            });
        }
        let compressed = bytes[3] & COMPRESSED != 0;
        let id = bytes[3] & !COMPRESSED;
        let codec = Codec::from_id(id).ok_or(EnvelopeError::UnknownCodec { id })?;
        let u64_at = |at: usize| {
            let mut b = [0; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let fingerprint = TypeFingerprint(u64_at(4));
        let deadlines = Deadlines::new(u64_at(12), u64_at(20));
        let mut len = [0; 4];
        len.copy_from_slice(&bytes[28..32]);
        let payload_len = u32::from_le_bytes(len);
        let expected = ENVELOPE_HEADER_LEN + payload_len as usize;
        if bytes.len() < expected {
            return Err(EnvelopeError::Truncated {
                len: bytes.len(),
                expected,
            });
        }
        if bytes.len() > expected {
            return Err(EnvelopeError::TrailingBytes {
                len: bytes.len(),
                expected,
            });
        }
        if deadlines.stale_until_ms < deadlines.fresh_until_ms {
            return Err(EnvelopeError::InvalidDeadlines(deadlines));
        }
        Ok(EnvelopeHeader {
            version,
            codec,
            fingerprint,
            deadlines,
            payload_len,
            compressed,
        })
    }

    /// Decodes an envelope of a `T`: checks the header as
    /// [`header`](Envelope::header) does, then the fingerprint, then decodes
    /// the payload with the codec the header names (which may differ from
    /// this envelope's own codec: switching codecs needs no flush).
    ///
    /// # Errors
    /// Any [`EnvelopeError`]; all of them mean "not a usable value".
    ///
    /// ```
    /// use cache_runtime::{Codec, Deadlines, Envelope};
    ///
    /// let json = Envelope::new(Codec::Json).encode(&vec![1u16, 2], Deadlines::new(1, 1)).unwrap();
    /// let value = Envelope::new(Codec::Bincode).decode::<Vec<u16>>(&json).unwrap().value;
    /// assert_eq!(value, [1, 2]);
    /// ```
    pub fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<Decoded<T>, EnvelopeError> {
        self.decode_as(bytes, TypeFingerprint::of::<T>())
    }

    /// Decodes an envelope that must carry `fingerprint`.
    ///
    /// # Errors
    /// As [`decode`](Envelope::decode).
    ///
    /// ```
    /// use cache_runtime::{Deadlines, Envelope, EnvelopeError, TypeFingerprint};
    ///
    /// let env = Envelope::default();
    /// let bytes = env.encode(&7u32, Deadlines::new(1, 1)).unwrap();
    /// let err = env.decode_as::<u32>(&bytes, TypeFingerprint::from_u64(1)).unwrap_err();
    /// assert!(matches!(err, EnvelopeError::TypeMismatch { .. }));
    /// ```
    pub fn decode_as<T: DeserializeOwned>(
        &self,
        bytes: &[u8],
        fingerprint: TypeFingerprint,
    ) -> Result<Decoded<T>, EnvelopeError> {
        let header = self.header(bytes)?;
        if header.fingerprint != fingerprint {
            return Err(EnvelopeError::TypeMismatch {
                expected: fingerprint,
                found: header.fingerprint,
            });
        }
        let payload = &bytes[ENVELOPE_HEADER_LEN..];
        let value = if header.compressed {
            header.codec.decode(&self.decompress(payload)?)?
        } else {
            header.codec.decode(payload)?
        };
        Ok(Decoded { value, header })
    }

    /// The payload behind an LZ4 envelope, within the size limit.
    fn decompress(&self, packed: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
        #[cfg(feature = "compression")]
        {
            let claimed = packed
                .get(..4)
                .map(|len| u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize)
                .ok_or(EnvelopeError::Compression("no uncompressed length"))?;
            if claimed > self.max_bytes {
                return Err(EnvelopeError::TooLarge {
                    len: claimed,
                    max: self.max_bytes,
                });
            }
            lz4_flex::decompress_size_prepended(packed)
                .map_err(|_| EnvelopeError::Compression("the payload does not decompress"))
        }
        #[cfg(not(feature = "compression"))]
        {
            let _ = (packed, self.max_bytes);
            Err(EnvelopeError::Compression(
                "compressed, and this build has no `compression` feature",
            ))
        }
    }
}

/// Why bytes are not a usable envelope (or a value could not become one).
/// Every variant on the read path means a miss; none carries the data.
///
/// ```
/// use cache_runtime::{Envelope, EnvelopeError};
///
/// let err = Envelope::default().decode::<u32>(&[0xFF, 0xCA, 9]).unwrap_err();
/// assert_eq!(err.to_string(), "truncated envelope: 3 bytes, expected 32");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Longer than the limit.
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Shorter than the header, or than the header says.
    Truncated {
        /// Its length.
        len: usize,
        /// The length it should have had (at least).
        expected: usize,
    },
    /// Longer than the header says.
    TrailingBytes {
        /// Its length.
        len: usize,
        /// The length the header gives.
        expected: usize,
    },
    /// Does not start with the envelope magic: data written by something
    /// else.
    NotAnEnvelope,
    /// Another format version.
    UnsupportedVersion {
        /// The version in the bytes.
        found: u8,
        /// The version this build reads.
        supported: u8,
    },
    /// A codec id this build does not know.
    UnknownCodec {
        /// The id in the bytes.
        id: u8,
    },
    /// Written as another type.
    TypeMismatch {
        /// The fingerprint asked for.
        expected: TypeFingerprint,
        /// The fingerprint in the bytes.
        found: TypeFingerprint,
    },
    /// The stale deadline is before the fresh one.
    InvalidDeadlines(Deadlines),
    /// The codec could not encode the value or decode the payload.
    Codec(CodecError),
    /// A compressed payload that does not decompress, or a build that
    /// cannot decompress.
    Compression(&'static str),
    /// The value type's `Deserialize` panicked on the payload.
    Panicked,
}

impl From<CodecError> for EnvelopeError {
    fn from(e: CodecError) -> Self {
        EnvelopeError::Codec(e)
    }
}

impl fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvelopeError::TooLarge { len, max } => {
                write!(f, "envelope of {len} bytes is over the limit of {max}")
            }
            EnvelopeError::Truncated { len, expected } => {
                write!(f, "truncated envelope: {len} bytes, expected {expected}")
            }
            EnvelopeError::TrailingBytes { len, expected } => {
                write!(f, "envelope of {len} bytes, its header says {expected}")
            }
            EnvelopeError::NotAnEnvelope => f.write_str("not an envelope (no magic)"),
            EnvelopeError::UnsupportedVersion { found, supported } => write!(
                f,
                "envelope format version {found}, this build reads {supported}"
            ),
            EnvelopeError::UnknownCodec { id } => write!(f, "unknown codec id {id}"),
            EnvelopeError::TypeMismatch { expected, found } => {
                write!(f, "envelope holds type {found}, expected type {expected}")
            }
            EnvelopeError::InvalidDeadlines(d) => write!(
                f,
                "stale deadline {} is before fresh deadline {}",
                d.stale_until_ms, d.fresh_until_ms
            ),
            EnvelopeError::Codec(e) => e.fmt(f),
            EnvelopeError::Compression(why) => write!(f, "compressed payload: {why}"),
            EnvelopeError::Panicked => f.write_str("the value's Deserialize panicked"),
        }
    }
}

impl std::error::Error for EnvelopeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EnvelopeError::Codec(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(codec: Codec) -> Vec<u8> {
        Envelope::new(codec)
            .encode(
                &("acme".to_string(), vec![1u64, 2, 3]),
                Deadlines::new(10, 20),
            )
            .unwrap()
    }

    type Sample = (String, Vec<u64>);

    #[test]
    fn every_prefix_and_every_extension_is_an_error() {
        for codec in [Codec::Bincode, Codec::Json] {
            let bytes = sample(codec);
            let env = Envelope::default();
            assert_eq!(env.decode::<Sample>(&bytes).unwrap().value.0, "acme");
            for len in 0..bytes.len() {
                assert!(matches!(
                    env.decode::<Sample>(&bytes[..len]),
                    Err(EnvelopeError::Truncated { .. })
                ));
            }
            let mut longer = bytes.clone();
            longer.push(b' ');
            assert!(matches!(
                env.decode::<Sample>(&longer),
                Err(EnvelopeError::TrailingBytes { .. })
            ));
        }
    }

    #[cfg(feature = "compression")]
    #[test]
    fn compressed_payloads_round_trip_and_are_checked() {
        let env = Envelope::default().compress_above(64);
        let value: Sample = ("x".repeat(4096), vec![7; 512]);
        let bytes = env.encode(&value, Deadlines::new(1, 2)).unwrap();
        let header = env.header(&bytes).unwrap();
        assert!(header.compressed);
        assert!(bytes.len() < 1024, "{}", bytes.len());
        assert_eq!(env.decode::<Sample>(&bytes).unwrap().value, value);
        // Small values stay as they are.
        let small = env.encode(&1u8, Deadlines::new(1, 2)).unwrap();
        assert!(!env.header(&small).unwrap().compressed);
        // A decompressed size over the limit is refused before allocating.
        let strict = Envelope::default().max_bytes(1024);
        assert!(matches!(
            strict.decode::<Sample>(&bytes),
            Err(EnvelopeError::TooLarge { .. })
        ));
        // Garbage in a compressed payload is an error, never a panic.
        for at in ENVELOPE_HEADER_LEN..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0xA5;
            let _ = env.decode::<Sample>(&bad);
        }
        let mut cut = bytes[..ENVELOPE_HEADER_LEN + 6].to_vec();
        let len = (cut.len() - ENVELOPE_HEADER_LEN) as u32;
        cut[28..32].copy_from_slice(&len.to_le_bytes());
        assert!(env.decode::<Sample>(&cut).is_err());
    }

    #[test]
    fn header_fields_are_checked() {
        let bytes = sample(Codec::Bincode);
        let env = Envelope::default();
        let mut other_version = bytes.clone();
        other_version[2] = 2;
        assert_eq!(
            env.decode::<Sample>(&other_version).unwrap_err(),
            EnvelopeError::UnsupportedVersion {
                found: 2,
                supported: 1
            }
        );
        let mut other_codec = bytes.clone();
        other_codec[3] = 0;
        assert_eq!(
            env.decode::<Sample>(&other_codec).unwrap_err(),
            EnvelopeError::UnknownCodec { id: 0 }
        );
        let mut swapped = bytes.clone();
        swapped[12..20].copy_from_slice(&30u64.to_le_bytes());
        assert!(matches!(
            env.decode::<Sample>(&swapped),
            Err(EnvelopeError::InvalidDeadlines(_))
        ));
        let mut huge_len = bytes.clone();
        huge_len[28..32].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            env.decode::<Sample>(&huge_len),
            Err(EnvelopeError::Truncated { .. })
        ));
        assert_eq!(
            env.max_bytes(bytes.len() - 1)
                .decode::<Sample>(&bytes)
                .unwrap_err(),
            EnvelopeError::TooLarge {
                len: bytes.len(),
                max: bytes.len() - 1
            }
        );
    }

    #[test]
    fn a_payload_of_the_wrong_codec_is_a_codec_error() {
        let mut bytes = sample(Codec::Json);
        bytes[3] = Codec::Bincode.id();
        assert!(matches!(
            Envelope::default().decode::<Sample>(&bytes),
            Err(EnvelopeError::Codec(_))
        ));
    }
}
