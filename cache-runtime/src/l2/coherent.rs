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
//!   `:`, at most [`MAX_TAG_DEPTH`](super::marks::MAX_TAG_DEPTH) segments deep, or `*`) sets the prefix's
//!   tag (`<ns>[t]orders:list:acme:`) to the generation, for as long as the
//!   longest value any instance wrote (recorded in `<ns>[l]`) may live: one
//!   write, whatever the number of keys under it;
//! - a tag that values carry (`#[cached(tags = ..)]`, `context::tag`) sets
//!   its mark (`<ns>[v]product:42`) to the generation, for as long as a
//!   prefix's tag lives: one write, whatever the number of values tagged;
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
//! origin read. A value that carries tags lists them after its generation
//! (see `marks::framed`); the fill checks their marks with the others, and
//! a read of it asks for them in a second `MGET` and judges them the same
//! way.
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
//! namespace is split into [`CLUSTER_GROUPS`](super::cluster::CLUSTER_GROUPS)
//! groups, each a hash tag (`<ns>{<tag>}`) with its own counter, tags,
//! tombstones, scan epoch and locks, and a key belongs to one group. Reads
//! and fills touch their key's group only; an invalidation of a prefix or
//! a scanning pattern marks every group (concurrently, announcing after the
//! last), and an exact key's its own. A fill checks the marks of its own
//! group, which its invalidations always set, so the guarantee holds per
//! key as on one server.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use futures_util::future::try_join_all;
use redis::Script;

use super::batch::{Batches, MAX_BATCH};
use super::builder::RedisL2Builder;
use super::marks::{
    bus_channel, framed, key_digest, millis, name, tag_prefix, tag_prefixes, BIRTH, GENERATION,
    LONGEST, MAX_PX, SCAN_EPOCH, TAG, TOMBSTONE, VALUE_HEADER, VALUE_TAG,
};
use super::read::Read;
use super::redis::RedisL2;
use super::L2Error;
use crate::invalidation::SharedInvalidation;
use crate::pattern::Pattern;

/// Lua shared by the scripts. `marker` reads a marker: 0 when absent,
/// `false` when it makes no sense (another type, not decimal digits, above
/// `max`: an hour ahead of the server clock, or 2^53). `bump` moves the
/// generation to the larger of itself plus one and the server clock in
/// microseconds, and returns it as decimal text (below 2^53 until the year
/// 2255, so Lua numbers hold it exactly; `%.0f` prints it whole, where
/// Lua's own conversion keeps 14 digits); a counter that makes no sense is
/// made anew, so that no fill of a read before trusts it.
///
/// KEYS[1] is the counter and KEYS[2] the time it was made.
const SEED: &str = "if redis.replicate_commands then pcall(redis.replicate_commands) end
local LONGEST_MAX = MAX_PX
local function limit()
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  return now, math.min(now + 3600000000, 9007199254740992)
end
local function marker(key, max)
  local v = redis.pcall('GET', key)
  if not v then return 0 end
  if type(v) ~= 'string' or #v > 16 or not string.match(v, '^%d+$') then return false end
  local n = tonumber(v)
  if n > max then return false end
  return n
end
local function bump()
  local now, max = limit()
  local cur = marker(KEYS[1], max) or 0
  local text = string.format('%.0f', math.max(cur + 1, now))
  if cur == 0 then redis.call('SET', KEYS[2], text) end
  redis.call('SET', KEYS[1], text)
  return text
end
";

/// KEYS: gen, its birth, then pairs of (key, its tombstone); ARGV: the
/// tombstones' lifetime (ms), the channel to announce on,
/// then one announcement per key. Returns how many of the keys held a
/// value.
const INVALIDATE_KEYS: &str = "
local g = bump()
local existed = 0
for i = 3, #KEYS, 2 do
  existed = existed + redis.call('UNLINK', KEYS[i])
  redis.call('SET', KEYS[i + 1], g, 'PX', ARGV[1])
end
for i = 3, #ARGV do redis.call('PUBLISH', ARGV[2], ARGV[i]) end
return existed
";

/// KEYS: gen, its birth, the mark (a tag or the scan epoch), the longest
/// value's lifetime; ARGV: the mark's lifetime (ms), what to add to the
/// longest value's lifetime for a mark that must outlive every value (a
/// tag: it then lives that long, as long as what it covers; the given
/// lifetime when no value's lifetime is recorded) or -1, the channel to announce on ('' for none) and the
/// announcement. Returns the generation.
const MARK: &str = "
local g = bump()
local px = tonumber(ARGV[1])
if tonumber(ARGV[2]) >= 0 then
  local longest = marker(KEYS[4], LONGEST_MAX) or 0
  if longest > 0 then px = longest + tonumber(ARGV[2]) end
end
redis.call('SET', KEYS[3], g, 'PX', string.format('%.0f', px))
if ARGV[3] ~= '' then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
return g
";

/// KEYS: the key, gen, its birth, the longest value's lifetime, then the
/// marks that may cover the key (scan epoch, tombstone, tags); ARGV: the
/// generation read before the origin call, the value, its lifetime (ms).
/// Returns 1 when stored, 0 when not, `-i` when `KEYS[i]` is a marker that
/// makes no sense (not stored: read as an invalidation).
const FILL: &str = "
local _, max = limit()
local g0 = tonumber(ARGV[1])
local marks = {}
for i = 2, #KEYS do
  if i ~= 4 then
    marks[i] = marker(KEYS[i], max)
    if marks[i] == false then return -i end
  end
end
if marks[2] < g0 or marks[3] > g0 then return 0 end
for i = 5, #KEYS do
  if marks[i] > g0 then return 0 end
end
local longest = marker(KEYS[4], LONGEST_MAX) or 0
if tonumber(ARGV[3]) > longest then redis.call('SET', KEYS[4], ARGV[3]) end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
";

/// KEYS: gen, its birth, the key, the longest value's lifetime, the key's
/// tombstone; ARGV: the value (the digest of its key, then its envelope), its lifetime (ms), the
/// tombstone's lifetime (ms), the channel to announce on and
/// the announcement. Stores the value under a new generation, so that no
/// tag older than the write hides it, and leaves a tombstone of that
/// generation, so that no fill of an older read overwrites it: a write of
/// the value itself (`Cache::set`), newer than every load running.
const SET: &str = "
local g = bump()
redis.call('SET', KEYS[5], g, 'PX', ARGV[3])
local longest = marker(KEYS[4], LONGEST_MAX) or 0
if tonumber(ARGV[2]) > longest then redis.call('SET', KEYS[4], ARGV[2]) end
redis.call('SET', KEYS[3], struct.pack('>I8', tonumber(g)) .. ARGV[1], 'PX', ARGV[2])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
";

/// The scripts, built once for each way of announcing: `PUBLISH` on one
/// server, `SPUBLISH` on a cluster (sharded pub/sub: the message goes to
/// the subscribers of the primary that serves the channel's slot, and a
/// script may publish only on a channel of its keys' slot, which each
/// group's channel is).
struct Scripts {
    invalidate_keys: Script,
    mark: Script,
    fill: Script,
    set: Script,
}

impl Scripts {
    fn new(publish: &str) -> Scripts {
        let seed = SEED.replace("MAX_PX", &MAX_PX.to_string());
        let script =
            |body: &str| Script::new(&format!("{seed}{body}").replace("'PUBLISH'", publish));
        Scripts {
            invalidate_keys: script(INVALIDATE_KEYS),
            mark: script(MARK),
            fill: script(FILL),
            set: script(SET),
        }
    }
}

/// What a fill did.
#[derive(Debug)]
pub(crate) enum Fill {
    Stored,
    /// An invalidation newer than the read covers the key, or the fill
    /// came too late.
    Refused,
    /// Not stored: a marker it must respect makes no sense (said here),
    /// which reads as an invalidation.
    Corrupt(String),
}

const ONE_GROUP: &str = "a store has at least one group";

/// The longest a leader may take between its read and its fill; a slower
/// fill is not written. Tombstones and scan epochs live twice this. The
/// same for every instance (not a setting), since one instance's marks must
/// outlast another's fills.
pub(crate) const FILL_WINDOW: Duration = Duration::from_secs(60);

const TOMBSTONE_LIFETIME: Duration = Duration::from_secs(120);

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts::new("'PUBLISH'"));
static SHARDED_SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts::new("'SPUBLISH'"));

/// The coherence protocol over a store: what the shared tier reads, fills,
/// sets and invalidates through. Cheap to clone (clones share the
/// connection and the batches of reads); the store's own commands are
/// reached through it (`Deref`).
#[derive(Clone)]
pub(crate) struct Coherent {
    store: RedisL2,
    /// The longest a value lives in Redis; longer TTLs are cut to it.
    max_ttl: Duration,
    /// This instance, as its announcements name it.
    instance: u64,
    /// The checked reads of each group waiting to go together.
    batches: Arc<Batches>,
}

impl Deref for Coherent {
    type Target = RedisL2;

    fn deref(&self) -> &RedisL2 {
        &self.store
    }
}

impl RedisL2Builder {
    /// The protocol over a store of these settings (connected lazily, see
    /// [`connect_lazy`](RedisL2Builder::connect_lazy)), announcing its
    /// invalidations, as `instance`, on the channel of the group they
    /// write to ([`bus_channel`]), atomically with them where they are one
    /// script.
    pub(crate) fn connect_coherent(self, instance: u64) -> Result<Coherent, L2Error> {
        let max_ttl = self.max_ttl;
        let store = self.connect_lazy()?;
        let batches = Arc::new(Batches::new(store.bases().len()));
        Ok(Coherent {
            store,
            max_ttl,
            instance,
            batches,
        })
    }
}

impl Coherent {
    /// The scripts of this store's way of announcing.
    fn scripts(&self) -> &'static Scripts {
        if self.is_cluster() {
            &SHARDED_SCRIPTS
        } else {
            &SCRIPTS
        }
    }

    /// This instance's longest value plus the fill window: a tag's
    /// lifetime when no value's is recorded (the mark script uses the
    /// longest value any instance wrote, when it is).
    fn tag_lifetime(&self) -> Duration {
        self.max_ttl.saturating_add(FILL_WINDOW)
    }

    /// Reads `key` with the generation and the key's tags, batched with the
    /// reads of its group that come while another is on its way.
    pub(crate) async fn read_checked(&self, key: &str) -> Result<Read, L2Error> {
        let read = self.batches.read(&self.store, key).await?;
        self.store.check_value_tags(key, read).await
    }

    /// Reads `keys` as [`read_checked`](Self::read_checked) reads one, a
    /// read per key in order: one `MGET` per group they fall in (one on a
    /// single server), at most [`MAX_BATCH`] keys each, all sent at once.
    pub(crate) async fn read_checked_batch(&self, keys: &[&str]) -> Result<Vec<Read>, L2Error> {
        let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (at, key) in keys.iter().enumerate() {
            groups.entry(self.group_index(key)).or_default().push(at);
        }
        let chunks: Vec<&[usize]> = groups
            .values()
            .flat_map(|ats| ats.chunks(MAX_BATCH))
            .collect();
        let reads = try_join_all(chunks.iter().map(|ats| {
            let keys: Vec<&str> = ats.iter().map(|&at| keys[at]).collect();
            async move { self.read_checked_many(&keys).await }
        }))
        .await?;
        let mut found: Vec<Option<Read>> = keys.iter().map(|_| None).collect();
        for (ats, reads) in chunks.iter().zip(reads) {
            for (&at, read) in ats.iter().zip(reads) {
                found[at] = Some(read);
            }
        }
        let checked = found.into_iter().zip(keys).map(|(read, key)| {
            let read = read.expect("a read for every key");
            self.store.check_value_tags(key, read)
        });
        try_join_all(checked).await
    }

    /// Stores `envelope` under `key`, carrying `tags`, unless an
    /// invalidation newer than `generation` covers the key or one of the
    /// tags, or the fill comes later than the fill window after `read_at`,
    /// or a marker it must respect makes no sense.
    pub(crate) async fn fill_checked(
        &self,
        key: &str,
        generation: u64,
        read_at: Instant,
        (envelope, tags): (&[u8], &[Box<str>]),
        ttl: Duration,
    ) -> Result<Fill, L2Error> {
        if read_at.elapsed() >= FILL_WINDOW {
            return Ok(Fill::Refused);
        }
        let base = self.base(key);
        let value = framed(generation, key_digest(base, key), tags, envelope);
        let ttl = ttl.min(self.max_ttl);
        let mut names = vec![
            self.redis_key(key),
            name(base, GENERATION, ""),
            name(base, BIRTH, ""),
            name(base, LONGEST, ""),
            name(base, SCAN_EPOCH, ""),
            name(base, TOMBSTONE, key),
        ];
        names.extend(tag_prefixes(key).map(|prefix| name(base, TAG, prefix)));
        names.extend(tags.iter().map(|tag| name(base, VALUE_TAG, tag)));
        let mut call = self.scripts().fill.prepare_invoke();
        for name in &names {
            call.key(name);
        }
        call.arg(generation).arg(value).arg(millis(ttl));
        let outcome: i64 = self.invoke("FILL", &call).await?;
        Ok(match outcome {
            1 => Fill::Stored,
            0 => Fill::Refused,
            corrupt => {
                let at = usize::try_from(-corrupt - 1).ok();
                let marker = at.and_then(|at| names.get(at)).map_or("?", String::as_str);
                Fill::Corrupt(format!("the marker `{marker}` is not a generation"))
            }
        })
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
        let ttl = ttl.min(self.max_ttl);
        let base = self.base(key);
        let mut framed = Vec::with_capacity(VALUE_HEADER - 8 + envelope.len());
        framed.extend_from_slice(&key_digest(base, key).to_be_bytes());
        framed.extend_from_slice(envelope);
        let mut call = self.scripts().set.key(name(base, GENERATION, ""));
        call.key(name(base, BIRTH, ""))
            .key(self.redis_key(key))
            .key(name(base, LONGEST, ""))
            .key(name(base, TOMBSTONE, key))
            .arg(framed)
            .arg(millis(ttl))
            .arg(millis(TOMBSTONE_LIFETIME))
            .arg(bus_channel(base))
            .arg(self.announcement(&Pattern::escape(key)));
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
            if prefix.len() >= crate::MAX_KEY_BYTES {
                // No key the cache takes is that long: nothing to mark, and
                // no tag of that length left behind.
                return Ok(SharedInvalidation::Keys(0));
            }
            let marked = self.mark_tag(prefix, pattern.as_str()).await;
            return match marked {
                Ok(()) => Ok(SharedInvalidation::Prefix(prefix.to_owned())),
                Err(e) => Err(self.unmarked(pattern, e).await),
            };
        }
        if let Err(e) = self.mark(SCAN_EPOCH, TOMBSTONE_LIFETIME, None, None).await {
            return Err(self.unmarked(pattern, e).await);
        }
        // Announced once the matches are gone, not with the mark: an
        // instance told earlier could read a match back from Redis. Also
        // when the walk failed half-way: an extra announcement costs little.
        let redis_pattern = self.scan_pattern(pattern.as_str());
        let removed = self
            .scan_unlink(&redis_pattern, pattern.cost_factor())
            .await;
        self.announce(self.last_base(), pattern.as_str()).await;
        Ok(SharedInvalidation::Scanned(removed?))
    }

    /// When the script that marks `pattern` could not run although Redis
    /// answered (out of memory, it refuses writes; a marker of the wrong
    /// type), the matching values are still removed (`SCAN` + `UNLINK`,
    /// which Redis takes when full) and the pattern announced, so that
    /// every instance stops serving what it removed; `e` is returned, for
    /// the invalidation to be queued and marked once Redis takes writes.
    /// Fills that were running may land meanwhile, as for exact keys.
    async fn unmarked(&self, pattern: &Pattern, e: L2Error) -> L2Error {
        if let L2Error::Command { .. } = e {
            self.remove_and_announce(pattern).await;
        }
        e
    }

    /// Removes what `pattern` matches (`UNLINK`, or `SCAN` + `UNLINK`) and
    /// announces it, without marking it: commands a Redis that refuses
    /// writes still takes. What an invalidation that cannot be marked now
    /// (queued) still does, so that every instance stops serving what it
    /// removed; its marks come when it is replayed.
    pub(crate) async fn remove_and_announce(&self, pattern: &Pattern) {
        let base = match pattern.exact_key() {
            Some(key) => {
                let _ = self.delete(&[key]).await;
                self.base(key)
            }
            None => {
                let redis_pattern = self.scan_pattern(pattern.as_str());
                let _ = self
                    .scan_unlink(&redis_pattern, pattern.cost_factor())
                    .await;
                self.last_base()
            }
        };
        self.announce(base, pattern.as_str()).await;
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
        let mut call = self
            .scripts()
            .invalidate_keys
            .key(name(base, GENERATION, ""));
        call.key(name(base, BIRTH, ""));
        for key in keys {
            call.key(self.redis_key(key))
                .key(name(base, TOMBSTONE, key));
        }
        call.arg(millis(TOMBSTONE_LIFETIME)).arg(bus_channel(base));
        for key in keys {
            call.arg(self.announcement(&Pattern::escape(key)));
        }
        match self.invoke("INVALIDATE", &call).await {
            Err(e @ L2Error::Command { .. }) => {
                let _ = self.delete(keys).await;
                for key in keys {
                    self.announce(base, &Pattern::escape(key)).await;
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
        self.scan_unlink(&self.scan_pattern("*"), 0).await
    }

    /// Sets the tag of `prefix`, to live as long as any value it covers,
    /// and announces `pattern` with it.
    async fn mark_tag(&self, prefix: &str, pattern: &str) -> Result<(), L2Error> {
        self.mark(
            &name(TAG, prefix, ""),
            self.tag_lifetime(),
            Some(FILL_WINDOW),
            Some(&self.announcement(pattern)),
        )
        .await
    }

    /// Invalidates every value carrying `tag`, for every process sharing
    /// this store, in one write per group whatever their number: the tag's
    /// mark, checked by every read and fill of a value carrying it, lives
    /// as long as any value it covers. Announced with the last group's mark.
    pub(crate) async fn invalidate_tag(&self, tag: &str) -> Result<SharedInvalidation, L2Error> {
        let marked = self
            .mark(
                &name(VALUE_TAG, tag, ""),
                self.tag_lifetime(),
                Some(FILL_WINDOW),
                Some(&self.tag_announcement(tag)),
            )
            .await;
        match marked {
            Ok(()) => Ok(SharedInvalidation::Tag(tag.to_owned())),
            Err(e) => {
                // Refused (Redis full): the others still drop their copies.
                if let L2Error::Command { .. } = e {
                    self.announce_tag(tag).await;
                }
                Err(e)
            }
        }
    }

    /// Announces `tag`'s invalidation on its own (see
    /// [`announce`](Self::announce)).
    pub(crate) async fn announce_tag(&self, tag: &str) {
        let channel = bus_channel(self.last_base());
        let _ = self
            .publish(&channel, self.tag_announcement(tag).as_bytes())
            .await;
    }

    /// Sets the mark `kind` (its name after a group's base) of every group
    /// to a new generation for `lifetime`, or, with `outlive`, for at least
    /// the longest value any instance wrote in the group plus `outlive`;
    /// publishes `announcement` when given, in the same script as the last
    /// group's mark (the others first, concurrently): an instance told of
    /// it finds every group marked.
    async fn mark(
        &self,
        kind: &str,
        lifetime: Duration,
        outlive: Option<Duration>,
        announcement: Option<&str>,
    ) -> Result<(), L2Error> {
        let (last, first) = self.bases().split_last().expect(ONE_GROUP);
        let first = first
            .iter()
            .map(|base| self.mark_group(base, kind, lifetime, outlive, None));
        try_join_all(first).await?;
        self.mark_group(last, kind, lifetime, outlive, announcement)
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
        announcement: Option<&str>,
    ) -> Result<u64, L2Error> {
        let mut call = self.scripts().mark.key(name(base, GENERATION, ""));
        call.key(name(base, BIRTH, ""))
            .key(name(base, kind, ""))
            .key(name(base, LONGEST, ""))
            .arg(millis(lifetime))
            .arg(outlive.map_or(-1, |d| i64::try_from(millis(d)).unwrap_or(i64::MAX)));
        match announcement {
            Some(announcement) => call.arg(bus_channel(base)).arg(announcement),
            None => call.arg("").arg(""),
        };
        self.invoke("INVALIDATE", &call).await
    }

    /// `<instance>:<pattern>`, what the backplane carries for a pattern.
    fn announcement(&self, pattern: &str) -> String {
        format!("{:016x}:{pattern}", self.instance)
    }

    /// `<instance>#<tag>`, what the backplane carries for a tag.
    fn tag_announcement(&self, tag: &str) -> String {
        format!("{:016x}#{tag}", self.instance)
    }

    /// Announces `pattern` on its own, on the channel of the group
    /// `base` (any group's reaches every subscriber); a failure is the
    /// subscribers' loss, which their resynchronisation covers only if they
    /// noticed a gap: so it is not hidden, but not the caller's error
    /// either.
    async fn announce(&self, base: &str, pattern: &str) {
        let _ = self
            .publish(&bus_channel(base), self.announcement(pattern).as_bytes())
            .await;
    }

    /// The last group's base: where an announcement of every group goes.
    fn last_base(&self) -> &str {
        self.bases().last().expect(ONE_GROUP)
    }
}
