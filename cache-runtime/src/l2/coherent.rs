//! The coherence protocol of the shared tier: how fills, reads and
//! invalidations of several processes agree on one Redis, so that a value
//! read from the origin before an invalidation is never served after it
//! (guarantee 2 across instances), and a prefix pattern is invalidated in
//! one write whatever the size of the keyspace.
//!
//! Every namespace has a generation counter (`<ns>[g]`). Each invalidation
//! increments it, atomically with its effect (a Lua script), and leaves the
//! new generation behind as a mark:
//!
//! - an exact key is replaced by a tombstone carrying the generation, for
//!   the fill window (see [`Coherence::fill_window`]);
//! - a prefix pattern (`orders:list:acme:*`, a literal prefix that ends at a
//!   `:`, at most [`MAX_TAG_DEPTH`] segments deep, or `*`) sets the prefix's
//!   tag (`<ns>[t]orders:list:acme:`) to the generation, for as long as a
//!   value may live: one write, whatever the number of keys under it;
//! - any other pattern (`order:*:42`) sets the scan epoch (`<ns>[s]`) to the
//!   generation for the fill window, then removes its matches with `SCAN` +
//!   `UNLINK` batches.
//!
//! A leader that misses reads the generation together with the key (one
//! `MGET`), calls the origin, and fills with a script that stores the value
//! only if no mark newer than that generation covers the key: no tag of the
//! key's prefixes, no tombstone on the key, no scan epoch. The value is
//! stored with its generation in front of the envelope, and a read serves it
//! only if every tag of the key's prefixes is at most that generation: a tag
//! newer than the value means a prefix invalidation came after the value's
//! origin read.
//!
//! The counter is seeded from the server clock in microseconds when it is
//! missing, so a Redis restarted empty issues generations above every one it
//! issued before (unless its clock went back), and a fill that read the
//! generation before the restart cannot slip under a mark made after it.

use std::time::{Duration, Instant};

use redis::Script;

use super::redis::RedisL2;
use super::L2Error;
use crate::pattern::Pattern;

/// Prefix tags are kept for the first this many segments of a key; a prefix
/// pattern deeper than that is invalidated with `SCAN` instead.
pub(crate) const MAX_TAG_DEPTH: usize = 8;

/// First bytes of a tombstone (`0xFF 0xCB` then the generation in decimal).
/// A stored value starts with its generation, big endian, whose first byte
/// is 0 for any generation below 2^56.
const TOMBSTONE: [u8; 2] = [0xFF, 0xCB];

/// Lua shared by the scripts that invalidate: increments the generation,
/// seeding it from the server clock in microseconds when it is missing,
/// and returns it as Redis's decimal text. (Below 2^53 until the year 2255,
/// so the Lua numbers that `tonumber` makes of it are exact; but Lua prints
/// numbers with 14 digits, so it is never turned back into text by Lua.)
const SEED: &str = "local function bump(g)
  if redis.call('EXISTS', g) == 0 then
    local t = redis.call('TIME')
    redis.call('SET', g, t[1] .. string.format('%06d', tonumber(t[2])))
  end
  redis.call('INCR', g)
  return redis.call('GET', g)
end
";

/// KEYS: gen, then the keys; ARGV: tombstone lifetime (ms). Returns how
/// many of the keys held a value.
const INVALIDATE_KEYS: &str = "
local g = bump(KEYS[1])
local existed = 0
for i = 2, #KEYS do
  local head = redis.call('GETRANGE', KEYS[i], 0, 1)
  if head ~= '' and head ~= '\\255\\203' then existed = existed + 1 end
  redis.call('SET', KEYS[i], '\\255\\203' .. g, 'PX', ARGV[1])
end
return existed
";

/// KEYS: gen, the mark (a tag or the scan epoch); ARGV: its lifetime (ms).
/// Returns the generation.
const MARK: &str = "
local g = bump(KEYS[1])
redis.call('SET', KEYS[2], g, 'PX', ARGV[1])
return g
";

/// KEYS: the key, the scan epoch, then the key's tags; ARGV: the
/// generation read before the origin call, the value, its lifetime (ms).
/// Returns 1 when stored, 0 when a newer mark covers the key.
const FILL: &str = "
local g0 = tonumber(ARGV[1])
for i = 2, #KEYS do
  local mark = redis.call('GET', KEYS[i])
  if mark and tonumber(mark) > g0 then return 0 end
end
local head = redis.call('GETRANGE', KEYS[1], 0, 31)
if string.sub(head, 1, 2) == '\\255\\203' and tonumber(string.sub(head, 3)) > g0 then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
";

/// The scripts, built once.
pub(crate) struct Scripts {
    invalidate_keys: Script,
    mark: Script,
    fill: Script,
}

impl Scripts {
    pub(crate) fn new() -> Scripts {
        Scripts {
            invalidate_keys: Script::new(&format!("{SEED}{INVALIDATE_KEYS}")),
            mark: Script::new(&format!("{SEED}{MARK}")),
            fill: Script::new(FILL),
        }
    }
}

/// Lifetimes of the marks.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Coherence {
    /// The longest a value lives in Redis; longer TTLs are cut to it. Tags
    /// live this long plus the fill window, so that a tag outlives every
    /// value it covers.
    pub(crate) max_ttl: Duration,
    /// The longest a leader may take between its read and its fill; a
    /// slower fill is not written. Tombstones and scan epochs live twice
    /// this.
    pub(crate) fill_window: Duration,
}

/// What a checked read found.
#[derive(Debug)]
pub(crate) enum Read {
    /// A value no invalidation covers: the envelope bytes, and the
    /// generation to fill with should the value turn out unusable (expired,
    /// undecodable).
    Value { bytes: Vec<u8>, generation: u64 },
    /// Nothing usable (absent, a tombstone, or a value a newer tag
    /// invalidated): the generation to fill with.
    Absent { generation: u64 },
}

/// How an invalidation reached the shared tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reach {
    /// Exact keys replaced by tombstones: how many held a value.
    Keys(u64),
    /// A prefix tag was bumped: every key under the prefix, uncounted.
    Prefix,
    /// `SCAN` + `UNLINK`: how many keys were removed.
    Scanned(u64),
}

impl Reach {
    /// Keys known to be removed.
    pub(crate) fn counted(self) -> u64 {
        match self {
            Reach::Keys(n) | Reach::Scanned(n) => n,
            Reach::Prefix => 0,
        }
    }
}

/// The prefixes of `key` that carry tags: `""`, then each prefix ending at
/// a `:`, at most [`MAX_TAG_DEPTH`] of them after `""`.
fn tag_prefixes(key: &str) -> impl Iterator<Item = &str> {
    std::iter::once("").chain(
        key.match_indices(':')
            .take(MAX_TAG_DEPTH)
            .map(move |(at, _)| &key[..=at]),
    )
}

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

fn be_u64(bytes: &[u8]) -> Option<u64> {
    let mut b = [0; 8];
    b.copy_from_slice(bytes.get(..8)?);
    Some(u64::from_be_bytes(b))
}

fn parse_mark(bytes: Option<&Vec<u8>>) -> u64 {
    bytes
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl RedisL2 {
    fn gen_key(&self) -> String {
        format!("{}[g]", self.namespace())
    }

    fn scan_epoch_key(&self) -> String {
        format!("{}[s]", self.namespace())
    }

    fn tag_key(&self, prefix: &str) -> String {
        format!("{}[t]{prefix}", self.namespace())
    }

    /// Reads `key` with the generation and the key's tags, in one `MGET`.
    pub(crate) async fn read_checked(&self, key: &str) -> Result<Read, L2Error> {
        let mut cmd = redis::cmd("MGET");
        // One buffer for every name: each `arg` copies it into the command.
        let mut name = String::with_capacity(self.namespace().len() + 4 + key.len());
        name.push_str(self.namespace());
        let base = name.len();
        for part in [":", key] {
            name.push_str(part);
        }
        cmd.arg(&name);
        name.truncate(base);
        name.push_str("[g]");
        cmd.arg(&name);
        for prefix in tag_prefixes(key) {
            name.truncate(base);
            name.push_str("[t]");
            name.push_str(prefix);
            cmd.arg(&name);
        }
        let found: Vec<Option<Vec<u8>>> = self.query("MGET", &cmd).await?;
        let generation = parse_mark(found.get(1).and_then(Option::as_ref));
        let newest_tag = found
            .iter()
            .skip(2)
            .map(|tag| parse_mark(tag.as_ref()))
            .max()
            .unwrap_or(0);
        let Some(Some(mut bytes)) = found.into_iter().next() else {
            return Ok(Read::Absent { generation });
        };
        if bytes.starts_with(&TOMBSTONE) {
            return Ok(Read::Absent { generation });
        }
        match be_u64(&bytes) {
            Some(born) if born >= newest_tag => {
                bytes.drain(..8);
                Ok(Read::Value { bytes, generation })
            }
            // Older than a tag (invalidated), or too short to carry a
            // generation: the envelope check that follows would reject the
            // latter anyway; a fill overwrites both.
            Some(_) => Ok(Read::Absent { generation }),
            None => Ok(Read::Value { bytes, generation }),
        }
    }

    /// Stores `envelope` under `key` unless an invalidation newer than
    /// `generation` covers the key, or the fill comes later than the fill
    /// window after `read_at`. Returns whether it stored.
    pub(crate) async fn fill_checked(
        &self,
        key: &str,
        generation: u64,
        read_at: Instant,
        envelope: &[u8],
        ttl: Duration,
    ) -> Result<bool, L2Error> {
        if read_at.elapsed() >= self.coherence.fill_window {
            return Ok(false);
        }
        let mut value = Vec::with_capacity(8 + envelope.len());
        value.extend_from_slice(&generation.to_be_bytes());
        value.extend_from_slice(envelope);
        let ttl = ttl.min(self.coherence.max_ttl);
        let mut call = self.scripts.fill.key(self.redis_key(key));
        call.key(self.scan_epoch_key());
        for prefix in tag_prefixes(key) {
            call.key(self.tag_key(prefix));
        }
        call.arg(generation).arg(value).arg(millis(ttl));
        let stored: u8 = self.invoke("FILL", &call).await?;
        Ok(stored == 1)
    }

    /// Invalidates `pattern` for every process sharing this store.
    pub(crate) async fn invalidate_checked(&self, pattern: &Pattern) -> Result<Reach, L2Error> {
        if let Some(key) = pattern.exact_key() {
            return self.invalidate_keys(&[key]).await.map(Reach::Keys);
        }
        if let Some(prefix) = tag_prefix(pattern) {
            let lifetime = self.coherence.max_ttl + self.coherence.fill_window;
            self.mark(&self.tag_key(prefix), lifetime).await?;
            return Ok(Reach::Prefix);
        }
        self.mark(&self.scan_epoch_key(), self.coherence.fill_window * 2)
            .await?;
        let removed = self.scan_unlink(&self.redis_key(pattern.as_str())).await?;
        Ok(Reach::Scanned(removed))
    }

    /// Replaces each of `keys` with a tombstone; returns how many held a
    /// value.
    pub(crate) async fn invalidate_keys(&self, keys: &[&str]) -> Result<u64, L2Error> {
        let mut call = self.scripts.invalidate_keys.key(self.gen_key());
        for key in keys {
            call.key(self.redis_key(key));
        }
        call.arg(millis(self.coherence.fill_window * 2));
        self.invoke("INVALIDATE", &call).await
    }

    /// Invalidates the whole namespace (the root tag), then removes its
    /// values to give the memory back. Returns how many it removed.
    pub(crate) async fn clear_checked(&self) -> Result<u64, L2Error> {
        let lifetime = self.coherence.max_ttl + self.coherence.fill_window;
        self.mark(&self.tag_key(""), lifetime).await?;
        self.scan_unlink(&self.redis_key("*")).await
    }

    async fn mark(&self, mark: &str, lifetime: Duration) -> Result<u64, L2Error> {
        let mut call = self.scripts.mark.key(self.gen_key());
        call.key(mark).arg(millis(lifetime));
        self.invoke("INVALIDATE", &call).await
    }
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
