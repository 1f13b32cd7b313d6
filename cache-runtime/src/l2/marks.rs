//! The names of the coherence protocol's keys in Redis (see `coherent`),
//! the prefixes of a key that carry tags, and lifetimes for `PX`.

use std::time::Duration;

use crate::pattern::Pattern;

/// Prefix tags are kept for the first this many segments of a key; a prefix
/// pattern deeper than that is invalidated with `SCAN` instead.
pub(crate) const MAX_TAG_DEPTH: usize = 8;

/// The prefixes of `key` that carry tags: `""`, then each prefix ending at
/// a `:`, at most [`MAX_TAG_DEPTH`] of them after `""`.
pub(super) fn tag_prefixes(key: &str) -> TagPrefixes<'_> {
    let mut ends = [0; MAX_TAG_DEPTH];
    let mut found = 0;
    for (at, byte) in key.bytes().enumerate() {
        if found == MAX_TAG_DEPTH {
            break;
        }
        if byte == b':' {
            ends[found] = at + 1;
            found += 1;
        }
    }
    TagPrefixes {
        key,
        ends,
        next: 0,
        len: 1 + found,
    }
}

/// The tag prefixes of a key, found in one pass (a read asks for them
/// several times: to size its command, to write it, to read the reply).
#[derive(Clone)]
pub(super) struct TagPrefixes<'a> {
    key: &'a str,
    /// Where each prefix after `""` ends.
    ends: [usize; MAX_TAG_DEPTH],
    next: usize,
    len: usize,
}

impl<'a> Iterator for TagPrefixes<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let at = self.next;
        if at >= self.len {
            return None;
        }
        self.next += 1;
        // `""` first; a `:` is one byte, so each end is a char boundary.
        Some(match at {
            0 => "",
            _ => &self.key[..self.ends[at - 1]],
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.len - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for TagPrefixes<'_> {}

/// The tagged prefix a pattern invalidates, when it is one: `*`, or a
/// literal prefix ending at a `:` followed by a lone `*`.
pub(crate) fn tag_prefix(pattern: &Pattern) -> Option<&str> {
    let text = pattern.as_str();
    let prefix = text.strip_suffix('*')?;
    let literal = !prefix.contains(['*', '?', '[', ']', '\\']);
    let aligned = prefix.is_empty() || prefix.ends_with(':');
    let shallow = prefix.matches(':').count() <= MAX_TAG_DEPTH;
    (literal && aligned && shallow).then_some(prefix)
}

/// Generations stay below 2^53, so that Lua numbers hold them exactly
/// (they follow the server clock in microseconds: 2^53 is in the year
/// 2255). A marker above is corrupt.
pub(crate) const MAX_GENERATION: u64 = 1 << 53;

/// A marker's text as a generation: decimal digits, at most
/// [`MAX_GENERATION`]; `None` for anything else.
pub(super) fn parse_generation(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 16 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = std::str::from_utf8(text).ok()?.parse().ok()?;
    (n <= MAX_GENERATION).then_some(n)
}

/// A stored value starts with the generation it was filled under and the
/// digest of the key it was written for (see [`key_digest`]); its envelope
/// follows.
pub(super) const VALUE_HEADER: usize = 16;

/// The digest of the Redis key `<base>:<key>` a value is written for, so
/// that a value copied or renamed to another key reads as undecodable
/// there: 64-bit FNV-1a.
pub(super) fn key_digest(base: &str, key: &str) -> u64 {
    [base, ":", key]
        .iter()
        .fold(crate::envelope::FNV_OFFSET, |hash, part| {
            crate::envelope::fnv1a(hash, part.as_bytes())
        })
}

/// The longest lifetime for `PX`, in milliseconds: about three centuries
/// (Redis refuses expiry times that overflow its clock).
pub(super) const MAX_PX: u64 = 10_000_000_000_000;

/// A lifetime in milliseconds for `PX`: at least 1, at most [`MAX_PX`].
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_PX)
}

/// The names of the protocol's keys in a group, after the group's base
/// (the namespace, or on a cluster the namespace and the group's hash tag).
pub(super) const GENERATION: &str = "[g]";
pub(super) const LONGEST: &str = "[l]";
pub(super) const BIRTH: &str = "[i]";
pub(super) const SCAN_EPOCH: &str = "[s]";
pub(super) const TAG: &str = "[t]";
pub(super) const TOMBSTONE: &str = "[x]";
pub(super) const LOCK_OF: &str = "[k]";
/// A tag that values name (`#[cached(tags = ..)]`, `context::tag`), as
/// opposed to a prefix's ([`TAG`]).
pub(super) const VALUE_TAG: &str = "[v]";

/// The bit of a stored value's generation that says its tags follow the
/// header: a count (u16), then each tag's length (u16) and text.
pub(super) const TAGGED: u64 = 1 << 63;

/// The bytes stored for a value filled under `generation` with `tags`:
/// the header, the tags if any, then `envelope`.
pub(super) fn framed(generation: u64, digest: u64, tags: &[Box<str>], envelope: &[u8]) -> Vec<u8> {
    let listed: usize = tags.iter().map(|tag| 2 + tag.len()).sum();
    let mut out = Vec::with_capacity(VALUE_HEADER + 2 + listed + envelope.len());
    let flag = if tags.is_empty() { 0 } else { TAGGED };
    out.extend_from_slice(&(generation | flag).to_be_bytes());
    out.extend_from_slice(&digest.to_be_bytes());
    if !tags.is_empty() {
        out.extend_from_slice(&(tags.len() as u16).to_be_bytes());
        for tag in tags {
            out.extend_from_slice(&(tag.len() as u16).to_be_bytes());
            out.extend_from_slice(tag.as_bytes());
        }
    }
    out.extend_from_slice(envelope);
    out
}

/// The tags listed from `bytes[at..]` (see [`TAGGED`]) and where the
/// envelope starts after them; `None` when they do not read as tags.
pub(super) fn listed_tags(bytes: &[u8], mut at: usize) -> Option<(Vec<Box<str>>, usize)> {
    let u16_at = |at: &mut usize| {
        let n = u16::from_be_bytes(bytes.get(*at..*at + 2)?.try_into().ok()?);
        *at += 2;
        Some(usize::from(n))
    };
    let count = u16_at(&mut at)?;
    let mut tags = Vec::with_capacity(count.min(crate::tags::MAX_TAGS));
    for _ in 0..count {
        let len = u16_at(&mut at)?;
        let text = std::str::from_utf8(bytes.get(at..at + len)?).ok()?;
        at += len;
        tags.push(text.into());
    }
    Some((tags, at))
}

/// The backplane's channel of the group `base`: `<base>[bus]`, in the
/// group's hash slot on a cluster.
pub(crate) fn bus_channel(base: &str) -> String {
    name(base, "[bus]", "")
}

pub(super) fn name(base: &str, kind: &str, rest: &str) -> String {
    let mut out = String::with_capacity(base.len() + kind.len() + rest.len());
    out.push_str(base);
    out.push_str(kind);
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_of_a_key() {
        let all: Vec<&str> = tag_prefixes("orders:list:acme:p1").collect();
        assert_eq!(all, ["", "orders:", "orders:list:", "orders:list:acme:"]);
        assert_eq!(tag_prefixes("plain").collect::<Vec<_>>(), [""]);
        let deep = "a:".repeat(20);
        assert_eq!(tag_prefixes(&deep).count(), 1 + MAX_TAG_DEPTH);
    }

    #[test]
    fn markers_that_make_no_sense_are_not_generations() {
        assert_eq!(parse_generation(b"0"), Some(0));
        assert_eq!(
            parse_generation(b"1733300000000000"),
            Some(1_733_300_000_000_000)
        );
        assert_eq!(parse_generation(b"9007199254740992"), Some(MAX_GENERATION));
        for corrupt in [
            &b"9007199254740993"[..],
            b"99999999999999999",
            b"",
            b"-1",
            b"+1",
            b" 1",
            b"1e5",
            b"0x10",
            b"abc",
        ] {
            assert_eq!(parse_generation(corrupt), None, "{corrupt:?}");
        }
    }

    #[test]
    fn digests_tell_keys_apart() {
        let a = key_digest("ns", "order:1");
        assert_eq!(a, key_digest("ns", "order:1"));
        assert_ne!(a, key_digest("ns", "order:2"));
        assert_ne!(a, key_digest("other", "order:1"));
    }

    #[test]
    fn tags_are_framed_after_the_header() {
        let tags: Vec<Box<str>> = vec!["product:42".into(), "catalog".into()];
        let bytes = framed(7, 9, &tags, b"envelope");
        assert_eq!(
            u64::from_be_bytes(bytes[..8].try_into().unwrap()),
            7 | TAGGED
        );
        let (listed, start) = listed_tags(&bytes, VALUE_HEADER).unwrap();
        assert_eq!((listed, &bytes[start..]), (tags, &b"envelope"[..]));
        let plain = framed(7, 9, &[], b"envelope");
        assert_eq!(
            (plain.len(), &plain[..8]),
            (VALUE_HEADER + 8, &7u64.to_be_bytes()[..])
        );
        assert!(listed_tags(&bytes[..bytes.len() - 12], VALUE_HEADER).is_none());
    }

    #[test]
    fn which_patterns_are_tags() {
        let tag = |p: &str| tag_prefix(&Pattern::parse(p).unwrap()).map(str::to_owned);
        assert_eq!(
            tag("orders:list:acme:*").as_deref(),
            Some("orders:list:acme:")
        );
        assert_eq!(tag("*").as_deref(), Some(""));
        assert_eq!(tag("orders:list:acme*"), None); // not at a segment end
        assert_eq!(tag("orders:*:acme:*"), None);
        assert_eq!(tag("orders:p?:*"), None);
        assert_eq!(tag("order:1"), None);
        assert_eq!(tag(&format!("{}*", "a:".repeat(MAX_TAG_DEPTH + 1))), None);
        assert!(tag(&format!("{}*", "a:".repeat(MAX_TAG_DEPTH))).is_some());
    }
}
