//! Redis Cluster: how a namespace's keys are laid out over the hash slots
//! (its groups and their hash tags).

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
