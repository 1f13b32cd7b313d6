//! Redis Cluster: how a namespace's keys are laid out over the hash slots
//! (its groups and their hash tags), and which primaries have replicas
//! that an invalidation waits for.

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the cluster's layout (its primaries and their replicas) is
/// used before it is asked again, and how long a primary whose replicas
/// all refuse connections is not waited for.
pub(super) const CHECK_EVERY: Duration = Duration::from_secs(1);

/// A primary of the cluster: the slots it serves (the first routes a
/// command to it through the client's own slot map), its address as the
/// cluster announces it (host and port; the host empty when the node does
/// not know it), and how many replicas the cluster does not flag as
/// failed.
pub(crate) struct Shard {
    pub(crate) slot: u16,
    pub(crate) ranges: Vec<RangeInclusive<u16>>,
    pub(crate) addr: (String, u16),
    pub(crate) replicas: usize,
}

impl Shard {
    /// Whether this primary serves `slot`.
    pub(crate) fn serves(&self, slot: u16) -> bool {
        self.ranges.iter().any(|range| range.contains(&slot))
    }
}

/// What an invalidation on a cluster waits for: the layout, asked at most
/// once a [`CHECK_EVERY`], and the primaries not to wait for meanwhile.
#[derive(Default)]
pub(crate) struct Replication {
    layout: parking_lot::Mutex<Option<(Instant, Arc<[Shard]>)>>,
    /// Primaries (by their slot) that had no replica in step with them,
    /// and until when they are not waited for.
    quiet: parking_lot::Mutex<Vec<(u16, Instant)>>,
}

impl Replication {
    /// The layout, if asked within [`CHECK_EVERY`] (`fresh`), or as last
    /// known.
    pub(super) fn layout(&self, fresh: bool) -> Option<Arc<[Shard]>> {
        let layout = self.layout.lock();
        let (at, shards) = layout.as_ref()?;
        (!fresh || at.elapsed() < CHECK_EVERY).then(|| Arc::clone(shards))
    }

    pub(super) fn set_layout(&self, shards: Arc<[Shard]>) {
        *self.layout.lock() = Some((Instant::now(), shards));
    }

    /// Whether the primary serving `slot` is not waited for now.
    pub(super) fn is_quiet(&self, slot: u16) -> bool {
        let now = Instant::now();
        let mut quiet = self.quiet.lock();
        quiet.retain(|(_, until)| *until > now);
        quiet.iter().any(|(s, _)| *s == slot)
    }

    /// The primary serving `slot` has no replica in step with it: it is
    /// not waited for during [`CHECK_EVERY`].
    pub(super) fn quiet_for_a_while(&self, slot: u16) {
        self.quiet.lock().push((slot, Instant::now() + CHECK_EVERY));
    }
}

/// The primaries that serve slots, with their replicas, from the text
/// of `CLUSTER NODES`: a line per node, `<id> <ip:port@cport[,host]>
/// <flags> <primary id or -> <ping> <pong> <epoch> <link> <slot>...`,
/// each slot a number or a range `a-b` (`[..]` marks a slot on the move,
/// still served by the node that lists it as a number or range). A node
/// flagged `fail` (not `fail?`: only suspected) is left out.
pub(crate) fn parse_nodes(text: &str) -> Vec<Shard> {
    struct Node<'a> {
        id: &'a str,
        addr: Option<(String, u16)>,
        primary: bool,
        of: &'a str,
        ranges: Vec<RangeInclusive<u16>>,
    }
    let nodes: Vec<Node<'_>> = text
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags: Vec<&str> = fields.get(2)?.split(',').collect();
            if flags.contains(&"fail") || flags.contains(&"noaddr") {
                return None;
            }
            let (host, port) = fields[1].split('@').next()?.rsplit_once(':')?;
            let ranges = fields[8.min(fields.len())..]
                .iter()
                .filter(|range| !range.starts_with('['))
                .filter_map(|range| {
                    let (start, end) = range.split_once('-').unwrap_or((range, range));
                    Some(start.parse().ok()?..=end.parse().ok()?)
                })
                .collect();
            Some(Node {
                id: fields[0],
                addr: Some((host.to_owned(), port.parse().ok()?)),
                primary: flags.contains(&"master"),
                of: fields.get(3)?,
                ranges,
            })
        })
        .collect();
    nodes
        .iter()
        .filter(|node| node.primary)
        .filter_map(|primary| {
            Some(Shard {
                slot: *primary.ranges.first()?.start(),
                ranges: primary.ranges.clone(),
                addr: primary.addr.clone()?,
                replicas: nodes
                    .iter()
                    .filter(|node| !node.primary && node.of == primary.id)
                    .count(),
            })
        })
        .collect()
}

/// How many groups a namespace's keys are spread over on a Redis Cluster:
/// each group is one hash slot, with its own generation counter and marks
/// (see the coherence protocol), so a namespace uses at most this many
/// primaries, and an invalidation of a prefix pattern writes one mark per
/// group.
pub const CLUSTER_GROUPS: usize = 16;

pub(super) const GROUP_TAG_LEN: usize = 4;

/// The group of a cache key: its CRC16 (XMODEM, as Redis hashes keys) modulo
/// [`CLUSTER_GROUPS`]. The same in every process and every version: it is
/// part of the layout in Redis.
pub(super) fn group_of(key: &str) -> usize {
    crc16_of(key) % CLUSTER_GROUPS
}

/// CRC16 (XMODEM) of `text`, what Redis Cluster hashes keys with.
fn crc16_of(text: &str) -> usize {
    usize::from(crc16::State::<crc16::XMODEM>::calculate(text.as_bytes()))
}

/// The hash slots of Redis Cluster.
const SLOTS: usize = 16384;

/// The hash slot of a key or shard channel, as Redis Cluster computes it:
/// of its hash tag (what lies between its first `{` and the next `}`),
/// when it has one that is not empty, else of the whole key.
pub(crate) fn slot_of(key: &str) -> u16 {
    let tagged = key.split_once('{').and_then(|(_, rest)| {
        let (tag, _) = rest.split_once('}')?;
        (!tag.is_empty()).then_some(tag)
    });
    u16::try_from(crc16_of(tagged.unwrap_or(key)) % SLOTS).expect("a slot is below 16384")
}

/// The hash tag of a group: the first four hex digits whose hash slot lies
/// in the group's share of the slots, so that the groups spread over the
/// primaries as the slots do.
pub(super) fn group_tag(group: usize) -> String {
    let share = group * SLOTS / CLUSTER_GROUPS..(group + 1) * SLOTS / CLUSTER_GROUPS;
    (0..=0xffff_u32)
        .map(|n| format!("{n:04x}"))
        .find(|tag| share.contains(&(crc16_of(tag) % SLOTS)))
        .expect("every share of the slots has a four-digit tag")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_is_read_from_cluster_nodes() {
        let text = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7001@17001,node-b master - 0 1 2 connected 5461-10922 [5000->-a1]
c3 127.0.0.1:7002@17002 master,fail - 0 1 3 disconnected 10923-16383
d4 127.0.0.1:7003@17003 slave a1 0 1 1 connected
e5 127.0.0.1:7004@17004 slave,fail? b2 0 1 2 connected
f6 127.0.0.1:7005@17005 slave,fail b2 0 1 2 disconnected
g7 127.0.0.1:7006@17006 master - 0 1 4 connected
";
        let shards = parse_nodes(text);
        let got: Vec<(u16, usize, (&str, u16))> = shards
            .iter()
            .map(|shard| (shard.slot, shard.replicas, (&*shard.addr.0, shard.addr.1)))
            .collect();
        assert_eq!(
            got,
            [(0, 1, ("127.0.0.1", 7000)), (5461, 1, ("127.0.0.1", 7001))]
        );
        assert!(shards[0].serves(5460) && !shards[0].serves(5461));
        // A slot on the move is not read as a range.
        assert!(!shards[1].serves(5000) && shards[1].serves(10922));
    }

    #[test]
    fn slots_are_computed_as_redis_computes_them() {
        // `CLUSTER KEYSLOT` of each, on Redis 7.0.
        assert_eq!(slot_of("{a}x"), 15495);
        assert_eq!(slot_of("foo"), 12182);
        assert_eq!(slot_of("{}foo"), 9500);
        assert_eq!(slot_of("x{user1000}.following"), 3443);
        assert_eq!(slot_of("user1000"), 3443);
        assert_eq!(slot_of("{a"), 10276);
    }

    #[test]
    fn groups_spread_over_the_slots() {
        for group in 0..CLUSTER_GROUPS {
            let tag = group_tag(group);
            assert_eq!(tag.len(), GROUP_TAG_LEN);
            assert_eq!(
                crc16_of(&tag) % SLOTS * CLUSTER_GROUPS / SLOTS,
                group,
                "{tag}"
            );
        }
        let mut seen = [0; CLUSTER_GROUPS];
        for n in 0..1600 {
            seen[group_of(&format!("order:{n}"))] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
    }
}
