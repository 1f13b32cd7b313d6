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
//! - an exact key is removed (`UNLINK`) and leaves a tombstone carrying the
//!   generation under a key of its own (`<ns>[x]<key>`), for twice the fill
//!   window ([`FILL_WINDOW`]): a later fill cannot overwrite it;
//! - a prefix pattern (`orders:list:acme:*`, a literal prefix that ends at a
//!   `:`, at most [`MAX_TAG_DEPTH`] segments deep, or `*`) sets the prefix's
//!   tag (`<ns>[t]orders:list:acme:`) to the generation, for as long as the
//!   longest value any instance wrote (recorded in `<ns>[l]`) may live: one
//!   write, whatever the number of keys under it;
//! - any other pattern (`order:*:42`) sets the scan epoch (`<ns>[s]`) to the
//!   generation for the fill window, then removes its matches with `SCAN` +
//!   `UNLINK` batches.
//!
//! A leader that misses reads the generation together with the key (one
//! `MGET`), calls the origin, and fills with a script that stores the value
//! only if no mark newer than that generation covers the key: no tag of the
//! key's prefixes, no tombstone of the key, no scan epoch. The value is
//! stored with its generation in front of the envelope, and a read serves it
//! only if every tag of the key's prefixes is at most that generation: a tag
//! newer than the value means a prefix invalidation came after the value's
//! origin read.
//!
//! Each increment takes the counter to at least the server clock in
//! microseconds, so a Redis that lost data (restarted empty, restored from
//! an older snapshot, failed over to a replica that lagged) issues
//! generations above every one it issued before, unless its clock went back
//! or more than a million invalidations a second ran the counter ahead of
//! the clock. A counter made anew records when (`<ns>[i]`). A fill refuses
//! to write when the counter was made anew after its read, or went below
//! the generation it read: the marks it must respect may be gone. (Marks
//! that Redis lost with its data are lost for everyone; no protocol can
//! respect an invalidation nobody remembers.)
//!
//! On a Redis Cluster a script may only touch keys of one slot, so the
//! namespace is split into [`CLUSTER_GROUPS`](super::redis::CLUSTER_GROUPS)
//! groups, each a hash tag (`<ns>{<tag>}`) with its own counter, tags,
//! tombstones, scan epoch and locks, and a key belongs to one group. Reads
//! and fills touch their key's group only; an invalidation of a prefix or
//! a scanning pattern marks every group (concurrently, announcing after the
//! last), and an exact key's its own. A fill checks the marks of its own
//! group, which its invalidations always set, so the guarantee holds per
//! key as on one server.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::time::{Duration, Instant};

use foldhash::fast::RandomState;
use futures_util::future::try_join_all;
use redis::{Cmd, RedisWrite, Script, Value};

use super::redis::RedisL2;
use super::L2Error;
use crate::invalidation::SharedInvalidation;
use crate::pattern::Pattern;

/// Prefix tags are kept for the first this many segments of a key; a prefix
/// pattern deeper than that is invalidated with `SCAN` instead.
pub(crate) const MAX_TAG_DEPTH: usize = 8;

/// Lua shared by the scripts that invalidate: moves the generation to the
/// larger of itself plus one and the server clock in microseconds, and
/// returns it as decimal text. (Below 2^53 until the year 2255, so Lua
/// numbers hold it exactly; `%.0f` prints it whole, where Lua's own
/// conversion keeps 14 digits.)
///
/// KEYS[1] is the counter and KEYS[2] the time it was made.
const SEED: &str = "if redis.replicate_commands then pcall(redis.replicate_commands) end
local function bump()
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
  local text = string.format('%.0f', math.max(cur + 1, now))
  if cur == 0 then redis.call('SET', KEYS[2], text) end
  redis.call('SET', KEYS[1], text)
  return text
end
";

/// KEYS: gen, its birth, then pairs of (key, its tombstone); ARGV: the
/// tombstones' lifetime (ms), the channel to announce on ('' for none),
/// then one announcement per key. Returns how many of the keys held a
/// value.
const INVALIDATE_KEYS: &str = "
local g = bump()
local existed = 0
for i = 3, #KEYS, 2 do
  existed = existed + redis.call('UNLINK', KEYS[i])
  redis.call('SET', KEYS[i + 1], g, 'PX', ARGV[1])
end
if ARGV[2] ~= '' then
  for i = 3, #ARGV do redis.call('PUBLISH', ARGV[2], ARGV[i]) end
end
return existed
";

/// KEYS: gen, its birth, the mark (a tag or the scan epoch), the longest
/// value's lifetime; ARGV: the mark's lifetime (ms), what to add to the
/// longest value's lifetime for a mark that must outlive every value (a
/// tag) or -1, the channel to announce on ('' for none) and the
/// announcement. Returns the generation.
const MARK: &str = "
local g = bump()
local px = tonumber(ARGV[1])
if tonumber(ARGV[2]) >= 0 then
  local longest = tonumber(redis.call('GET', KEYS[4]) or '0') or 0
  px = math.max(px, longest + tonumber(ARGV[2]))
end
redis.call('SET', KEYS[3], g, 'PX', string.format('%.0f', px))
if ARGV[3] ~= '' then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
return g
";

/// KEYS: the key, gen, its birth, the longest value's lifetime, then the
/// marks that may cover the key (scan epoch, tombstone, tags); ARGV: the
/// generation read before the origin call, the value, its lifetime (ms).
/// Returns 1 when stored, 0 when not.
const FILL: &str = "
local g0 = tonumber(ARGV[1])
local cur = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
local born = tonumber(redis.call('GET', KEYS[3]) or '0') or 0
if cur < g0 or born > g0 then return 0 end
for i = 5, #KEYS do
  local mark = redis.call('GET', KEYS[i])
  if mark and tonumber(mark) > g0 then return 0 end
end
local longest = tonumber(redis.call('GET', KEYS[4]) or '0') or 0
if tonumber(ARGV[3]) > longest then redis.call('SET', KEYS[4], ARGV[3]) end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
";

/// KEYS: gen, its birth, the key, the longest value's lifetime, the key's
/// tombstone; ARGV: the value (its envelope), its lifetime (ms), the
/// tombstone's lifetime (ms), the channel to announce on ('' for none) and
/// the announcement. Stores the value under a new generation, so that no
/// tag older than the write hides it, and leaves a tombstone of that
/// generation, so that no fill of an older read overwrites it: a write of
/// the value itself (`Cache::set`), newer than every load running.
const SET: &str = "
local g = bump()
redis.call('SET', KEYS[5], g, 'PX', ARGV[3])
local longest = tonumber(redis.call('GET', KEYS[4]) or '0') or 0
if tonumber(ARGV[2]) > longest then redis.call('SET', KEYS[4], ARGV[2]) end
redis.call('SET', KEYS[3], struct.pack('>I8', tonumber(g)) .. ARGV[1], 'PX', ARGV[2])
if ARGV[4] ~= '' then redis.call('PUBLISH', ARGV[4], ARGV[5]) end
return 1
";

/// KEYS: a lock; ARGV: a holder's token, the lock's lifetime (ms). Takes
/// the lock if it is free (returns nil), else returns who holds it (or
/// [`VACATED`]).
const LOCK: &str = "
local held = redis.call('GET', KEYS[1])
if held then return held end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
";

/// KEYS: a lock; ARGV: its holder's token, then what to leave in its place
/// ('' for nothing) and for how long (ms). Releases the lock only if this
/// holder still holds it (it may have expired and been taken since); with
/// ARGV[3] a lifetime, renews it instead when ARGV[2] is ''.
const UNLOCK: &str = "
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] ~= '' then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
if ARGV[3] ~= '' then return redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return redis.call('DEL', KEYS[1])
";

/// What a holder that stored nothing (its origin failed, say) leaves in
/// the lock's place for a moment: the instances waiting for its value call
/// the origin themselves at once, instead of taking the lock in turn.
pub(crate) const VACATED: &str = "-";

/// How long [`VACATED`] stays.
const VACATED_FOR: Duration = Duration::from_secs(1);

/// What trying a lock found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Lock {
    /// Taken: this caller holds it.
    Taken,
    /// Another instance holds it.
    Held,
    /// Its last holder stored nothing.
    Vacated,
}

/// The scripts, built once.
pub(crate) struct Scripts {
    invalidate_keys: Script,
    mark: Script,
    fill: Script,
    set: Script,
    lock: Script,
    unlock: Script,
}

impl Scripts {
    pub(crate) fn new() -> Scripts {
        Scripts {
            invalidate_keys: Script::new(&format!("{SEED}{INVALIDATE_KEYS}")),
            mark: Script::new(&format!("{SEED}{MARK}")),
            fill: Script::new(FILL),
            set: Script::new(&format!("{SEED}{SET}")),
            lock: Script::new(LOCK),
            unlock: Script::new(UNLOCK),
        }
    }
}

/// The longest a leader may take between its read and its fill; a slower
/// fill is not written. Tombstones and scan epochs live twice this. The
/// same for every instance (not a setting), since one instance's marks must
/// outlast another's fills.
pub(crate) const FILL_WINDOW: Duration = Duration::from_secs(60);

const TOMBSTONE_LIFETIME: Duration = Duration::from_secs(120);

/// How long values may live.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Coherence {
    /// The longest a value lives in Redis; longer TTLs are cut to it.
    pub(crate) max_ttl: Duration,
}

impl Coherence {
    /// At least this instance's longest value plus the fill window; the
    /// mark script raises it to the longest value any instance wrote.
    fn tag_lifetime(&self) -> Duration {
        self.max_ttl.saturating_add(FILL_WINDOW)
    }
}

/// What a checked read found.
#[derive(Debug)]
pub(crate) enum Read {
    /// A value no invalidation covers: the stored bytes, whose envelope
    /// starts at `start` (after the generation it was filled under), and
    /// the generation to fill with should the value turn out unusable
    /// (expired, undecodable).
    Value {
        bytes: Vec<u8>,
        start: usize,
        generation: u64,
    },
    /// Nothing usable (absent, or a value a newer tag invalidated): the
    /// generation to fill with.
    Absent { generation: u64 },
}

/// The prefixes of `key` that carry tags: `""`, then each prefix ending at
/// a `:`, at most [`MAX_TAG_DEPTH`] of them after `""`.
fn tag_prefixes(key: &str) -> TagPrefixes<'_> {
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
struct TagPrefixes<'a> {
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

fn be_u64(bytes: &[u8]) -> Option<u64> {
    let mut b = [0; 8];
    b.copy_from_slice(bytes.get(..8)?);
    Some(u64::from_be_bytes(b))
}

/// A reply item without the RESP3 attributes around it, if any.
fn bare(item: &Value) -> &Value {
    match item {
        Value::Attribute { data, .. } => bare(data),
        other => other,
    }
}

/// The generation a reply item holds: 0 when absent (or not a number,
/// which only a foreign writer leaves); `None` for an item of another type
/// than a `GET` returns.
fn generation_in(item: &Value) -> Option<u64> {
    match bare(item) {
        Value::Nil => Some(0),
        Value::BulkString(bytes) => Some(
            std::str::from_utf8(bytes)
                .ok()
                .and_then(|text| text.parse().ok())
                .unwrap_or(0),
        ),
        _ => None,
    }
}

/// The group's generation in a checked read's reply.
fn mark(reply: Option<&Value>) -> u64 {
    reply.and_then(generation_in).unwrap_or(0)
}

/// The tag at `at` of a checked read's reply; one that did not come back,
/// or came back as something else than a `GET` returns, counts as newer
/// than any value.
fn tag_at(reply: &[Value], at: usize) -> u64 {
    reply.get(at).and_then(generation_in).unwrap_or(u64::MAX)
}

/// What a checked read of one key found, from its value (if it came back)
/// and the newest tag of its prefixes.
fn judge(value: Option<Value>, generation: u64, newest_tag: u64) -> Read {
    let mut value = value;
    while let Some(Value::Attribute { data, .. }) = value {
        value = Some(*data);
    }
    let Some(Value::BulkString(bytes)) = value else {
        return Read::Absent { generation };
    };
    match be_u64(&bytes) {
        Some(born) if born >= newest_tag => Read::Value {
            bytes,
            start: 8,
            generation,
        },
        // Older than a tag (invalidated), or too short to carry a
        // generation: the envelope check that follows would reject the
        // latter anyway; a fill overwrites both.
        Some(_) => Read::Absent { generation },
        None => Read::Value {
            bytes,
            start: 0,
            generation,
        },
    }
}

/// A lifetime in milliseconds for `PX`: at least 1, at most about three
/// centuries (Redis refuses expiry times that overflow its clock).
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, 10_000_000_000_000)
}

/// The names of the protocol's keys in a group, after the group's base
/// (the namespace, or on a cluster the namespace and the group's hash tag).
const GENERATION: &str = "[g]";
const LONGEST: &str = "[l]";
const BIRTH: &str = "[i]";
const SCAN_EPOCH: &str = "[s]";
const TAG: &str = "[t]";
const TOMBSTONE: &str = "[x]";
const LOCK_OF: &str = "[k]";

fn name(base: &str, kind: &str, rest: &str) -> String {
    let mut out = String::with_capacity(base.len() + kind.len() + rest.len());
    out.push_str(base);
    out.push_str(kind);
    out.push_str(rest);
    out
}

impl RedisL2 {
    fn lock_key(&self, key: &str) -> String {
        name(self.base(key), LOCK_OF, key)
    }

    /// Takes the lock of `key` for `holder`, for `ttl`, if it is free.
    pub(crate) async fn try_lock(
        &self,
        key: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Lock, L2Error> {
        let mut call = self.scripts.lock.key(self.lock_key(key));
        call.arg(holder).arg(millis(ttl));
        let held: Option<String> = self.invoke("LOCK", &call).await?;
        Ok(match held.as_deref() {
            None => Lock::Taken,
            Some(VACATED) => Lock::Vacated,
            Some(_) => Lock::Held,
        })
    }

    /// Extends the lock of `key` to `ttl` from now if `holder` still holds
    /// it; returns whether it does.
    pub(crate) async fn renew_lock(
        &self,
        key: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, L2Error> {
        let mut call = self.scripts.unlock.key(self.lock_key(key));
        call.arg(holder).arg("").arg(millis(ttl));
        self.invoke::<u8>("RENEW", &call).await.map(|n| n == 1)
    }

    /// Releases the lock of `key` if `holder` still holds it; `vacated`:
    /// leaves [`VACATED`] for a moment instead (the holder stored nothing).
    pub(crate) async fn unlock(
        &self,
        key: &str,
        holder: &str,
        vacated: bool,
    ) -> Result<(), L2Error> {
        let mut call = self.scripts.unlock.key(self.lock_key(key));
        call.arg(holder);
        if vacated {
            call.arg(VACATED).arg(millis(VACATED_FOR));
        } else {
            call.arg("").arg("");
        }
        self.invoke::<u8>("UNLOCK", &call).await.map(drop)
    }

    /// Reads `key` with its group's generation and the tags of its
    /// prefixes, in one `MGET`.
    pub(super) async fn read_checked_one(&self, key: &str) -> Result<Read, L2Error> {
        let prefixes = tag_prefixes(key);
        let expected = 2 + prefixes.len();
        let cmd = self.checked_read(&[key], prefixes);
        let reply: Vec<Value> = self.query("MGET", &cmd).await?;
        // The prefixes of one key are distinct: the marks come back in
        // their order, the generation first.
        let newest_tag = (2..expected).map(|at| tag_at(&reply, at)).max();
        let generation = mark(reply.get(1));
        let value = reply.into_iter().next();
        Ok(judge(value, generation, newest_tag.unwrap_or(0)))
    }

    /// Reads `keys`, all of one group, with the group's generation and the
    /// tags of the keys' prefixes, in one `MGET`: a read per key, in order.
    pub(super) async fn read_checked_many(&self, keys: &[&str]) -> Result<Vec<Read>, L2Error> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // Each tag once, however many keys of the batch share it.
        let mut prefixes: Vec<&str> = Vec::new();
        let mut at: HashMap<&str, usize, RandomState> = HashMap::default();
        for prefix in keys.iter().flat_map(|key| tag_prefixes(key)) {
            at.entry(prefix).or_insert_with(|| {
                prefixes.push(prefix);
                prefixes.len() - 1
            });
        }
        let cmd = self.checked_read(keys, prefixes.iter().copied());
        let mut reply: Vec<Value> = self.query("MGET", &cmd).await?;
        let generation = mark(reply.get(keys.len()));
        let tags: Vec<u64> = (0..prefixes.len())
            .map(|i| tag_at(&reply, keys.len() + 1 + i))
            .collect();
        let tag = |prefix: &str| at.get(prefix).map_or(u64::MAX, |&i| tags[i]);
        reply.truncate(keys.len());
        let values = reply
            .into_iter()
            .map(Some)
            .chain(std::iter::repeat_with(|| None));
        Ok(keys
            .iter()
            .zip(values)
            .map(|(key, value)| {
                let newest_tag = tag_prefixes(key).map(tag).max().unwrap_or(0);
                judge(value, generation, newest_tag)
            })
            .collect())
    }

    /// `MGET` of `keys` (of one group), then the group's generation, then
    /// the tags of `prefixes`: each name written straight into the command.
    fn checked_read<'p>(
        &self,
        keys: &[&str],
        prefixes: impl ExactSizeIterator<Item = &'p str> + Clone,
    ) -> Cmd {
        let group = self.base(keys[0]);
        let names = keys.len() + 1 + prefixes.len();
        let bytes = names * (group.len() + TAG.len())
            + keys.iter().map(|key| key.len()).sum::<usize>()
            + prefixes.clone().map(str::len).sum::<usize>();
        let mut cmd = Cmd::with_capacity(1 + names, "MGET".len() + bytes);
        cmd.arg("MGET");
        let mut arg = |kind: &str, rest: &str| {
            let mut out = cmd.writer_for_next_arg();
            for part in [group, kind, rest] {
                out.write_all(part.as_bytes()).expect("writes to memory");
            }
        };
        for key in keys {
            arg(":", key);
        }
        arg(GENERATION, "");
        for prefix in prefixes {
            arg(TAG, prefix);
        }
        cmd
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
        if read_at.elapsed() >= FILL_WINDOW {
            return Ok(false);
        }
        let mut value = Vec::with_capacity(8 + envelope.len());
        value.extend_from_slice(&generation.to_be_bytes());
        value.extend_from_slice(envelope);
        let ttl = ttl.min(self.coherence.max_ttl);
        let base = self.base(key);
        let mut call = self.scripts.fill.key(self.redis_key(key));
        call.key(name(base, GENERATION, ""))
            .key(name(base, BIRTH, ""))
            .key(name(base, LONGEST, ""))
            .key(name(base, SCAN_EPOCH, ""))
            .key(name(base, TOMBSTONE, key));
        for prefix in tag_prefixes(key) {
            call.key(name(base, TAG, prefix));
        }
        call.arg(generation).arg(value).arg(millis(ttl));
        let stored: u8 = self.invoke("FILL", &call).await?;
        Ok(stored == 1)
    }

    /// Stores `envelope` under `key` as a write of the value itself: under
    /// a new generation, so that loads that read before it do not
    /// overwrite it, and announced, so that the other instances drop their
    /// in-process copy of the key.
    pub(crate) async fn set_checked(
        &self,
        key: &str,
        envelope: &[u8],
        ttl: Duration,
    ) -> Result<(), L2Error> {
        let ttl = ttl.min(self.coherence.max_ttl);
        let base = self.base(key);
        let mut call = self.scripts.set.key(name(base, GENERATION, ""));
        call.key(name(base, BIRTH, ""))
            .key(self.redis_key(key))
            .key(name(base, LONGEST, ""))
            .key(name(base, TOMBSTONE, key))
            .arg(envelope)
            .arg(millis(ttl))
            .arg(millis(TOMBSTONE_LIFETIME));
        match &self.bus {
            Some((channel, _)) => {
                call.arg(&**channel)
                    .arg(self.announcement(&Pattern::escape(key)));
            }
            None => {
                call.arg("").arg("");
            }
        }
        self.invoke::<u8>("SET", &call).await.map(drop)
    }

    /// Invalidates `pattern` for every process sharing this store; says
    /// how (never `Failed` or `NotConfigured`: those are the caller's).
    pub(crate) async fn invalidate_checked(
        &self,
        pattern: &Pattern,
    ) -> Result<SharedInvalidation, L2Error> {
        if let Some(key) = pattern.exact_key() {
            return self
                .invalidate_keys(&[key])
                .await
                .map(SharedInvalidation::Keys);
        }
        if let Some(prefix) = tag_prefix(pattern) {
            self.mark_tag(prefix, pattern.as_str()).await?;
            return Ok(SharedInvalidation::Prefix(prefix.to_owned()));
        }
        self.mark(SCAN_EPOCH, TOMBSTONE_LIFETIME, None, None)
            .await?;
        // Announced once the matches are gone, not with the mark: an
        // instance told earlier could read a match back from Redis. Also
        // when the walk failed half-way: an extra announcement costs little.
        let removed = self.scan_unlink(&self.scan_pattern(pattern.as_str())).await;
        self.announce(pattern.as_str()).await;
        Ok(SharedInvalidation::Scanned(removed?))
    }

    /// Removes each of `keys` and leaves its tombstone; returns how many
    /// held a value. When the script cannot run (a Redis out of memory
    /// refuses its writes), still removes the values, and reports the
    /// error: fills that were running may then land. On a cluster, one
    /// script per group of the keys, concurrently.
    pub(crate) async fn invalidate_keys(&self, keys: &[&str]) -> Result<u64, L2Error> {
        let mut groups: BTreeMap<_, Vec<&str>> = BTreeMap::new();
        for key in keys {
            groups.entry(self.base(key)).or_default().push(key);
        }
        let calls = groups
            .iter()
            .map(|(base, keys)| self.invalidate_group(base, keys));
        Ok(try_join_all(calls).await?.into_iter().sum())
    }

    /// [`invalidate_keys`](Self::invalidate_keys) of keys of one group.
    async fn invalidate_group(&self, base: &str, keys: &[&str]) -> Result<u64, L2Error> {
        let mut call = self.scripts.invalidate_keys.key(name(base, GENERATION, ""));
        call.key(name(base, BIRTH, ""));
        for key in keys {
            call.key(self.redis_key(key))
                .key(name(base, TOMBSTONE, key));
        }
        call.arg(millis(TOMBSTONE_LIFETIME));
        match &self.bus {
            Some((channel, _)) => {
                call.arg(&**channel);
                for key in keys {
                    call.arg(self.announcement(&Pattern::escape(key)));
                }
            }
            None => {
                call.arg("");
            }
        }
        match self.invoke("INVALIDATE", &call).await {
            Err(e @ L2Error::Command { .. }) => {
                let _ = self.delete(keys).await;
                for key in keys {
                    self.announce(&Pattern::escape(key)).await;
                }
                Err(e)
            }
            other => other,
        }
    }

    /// Invalidates the whole namespace (the root tag), then removes its
    /// values to give the memory back. Returns how many it removed.
    pub(crate) async fn clear_checked(&self) -> Result<u64, L2Error> {
        self.mark_tag("", "*").await?;
        self.scan_unlink(&self.scan_pattern("*")).await
    }

    /// Sets the tag of `prefix`, to live as long as any value it covers,
    /// and announces `pattern` with it.
    async fn mark_tag(&self, prefix: &str, pattern: &str) -> Result<(), L2Error> {
        self.mark(
            &name(TAG, prefix, ""),
            self.coherence.tag_lifetime(),
            Some(FILL_WINDOW),
            Some(pattern),
        )
        .await
    }

    /// Sets the mark `kind` (its name after a group's base) of every group
    /// to a new generation for `lifetime`, or, with `outlive`, for at least
    /// the longest value any instance wrote in the group plus `outlive`;
    /// announces `pattern` when given, in the same script as the last
    /// group's mark (the others first, concurrently): an instance told of
    /// it finds every group marked.
    async fn mark(
        &self,
        kind: &str,
        lifetime: Duration,
        outlive: Option<Duration>,
        pattern: Option<&str>,
    ) -> Result<(), L2Error> {
        let (last, first) = self
            .bases()
            .split_last()
            .expect("a store has at least one group");
        let first = first
            .iter()
            .map(|base| self.mark_group(base, kind, lifetime, outlive, None));
        try_join_all(first).await?;
        self.mark_group(last, kind, lifetime, outlive, pattern)
            .await
            .map(drop)
    }

    /// [`mark`](Self::mark) in one group; returns the generation.
    async fn mark_group(
        &self,
        base: &str,
        kind: &str,
        lifetime: Duration,
        outlive: Option<Duration>,
        pattern: Option<&str>,
    ) -> Result<u64, L2Error> {
        let mut call = self.scripts.mark.key(name(base, GENERATION, ""));
        call.key(name(base, BIRTH, ""))
            .key(name(base, kind, ""))
            .key(name(base, LONGEST, ""))
            .arg(millis(lifetime))
            .arg(outlive.map_or(-1, |d| i64::try_from(millis(d)).unwrap_or(i64::MAX)));
        match (&self.bus, pattern) {
            (Some((channel, _)), Some(pattern)) => {
                call.arg(&**channel).arg(self.announcement(pattern));
            }
            _ => {
                call.arg("").arg("");
            }
        }
        self.invoke("INVALIDATE", &call).await
    }

    /// `<instance>:<pattern>`, what the backplane carries.
    fn announcement(&self, pattern: &str) -> String {
        let instance = self.bus.as_ref().map_or(0, |(_, id)| *id);
        format!("{instance:016x}:{pattern}")
    }

    /// Announces `pattern` on its own (`PUBLISH`); a failure is the
    /// subscribers' loss, which their resynchronisation covers only if they
    /// noticed a gap: so it is not hidden, but not the caller's error
    /// either.
    async fn announce(&self, pattern: &str) {
        if let Some((channel, _)) = &self.bus {
            let _ = self
                .publish(channel, self.announcement(pattern).as_bytes())
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_items_read_as_marks_and_values() {
        let bulk = |text: &str| Value::BulkString(text.as_bytes().to_vec());
        let wrapped = |item: Value| Value::Attribute {
            data: Box::new(item),
            attributes: Vec::new(),
        };
        let reply = [
            bulk("17"),
            Value::Nil,
            wrapped(bulk("42")),
            Value::Int(5),
            bulk("not a number"),
        ];
        assert_eq!(tag_at(&reply, 0), 17);
        assert_eq!(tag_at(&reply, 1), 0, "no tag: nothing invalidated");
        assert_eq!(tag_at(&reply, 2), 42, "RESP3 attributes are looked through");
        assert_eq!(tag_at(&reply, 3), u64::MAX, "an unexpected type fails safe");
        assert_eq!(tag_at(&reply, 4), 0);
        assert_eq!(tag_at(&reply, 5), u64::MAX, "a tag that did not come back");
        assert_eq!(mark(reply.get(3)), 0);

        let stored = |born: u64| {
            let mut bytes = born.to_be_bytes().to_vec();
            bytes.extend_from_slice(b"envelope");
            Value::BulkString(bytes)
        };
        let Read::Value {
            bytes,
            start,
            generation,
        } = judge(Some(wrapped(stored(9))), 3, 9)
        else {
            panic!("a value as new as the newest tag is served");
        };
        assert_eq!((&bytes[start..], generation), (&b"envelope"[..], 3));
        assert!(matches!(
            judge(Some(stored(8)), 3, 9),
            Read::Absent { generation: 3 }
        ));
        assert!(matches!(judge(Some(Value::Nil), 3, 0), Read::Absent { .. }));
        assert!(matches!(judge(None, 3, 0), Read::Absent { .. }));
    }

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
