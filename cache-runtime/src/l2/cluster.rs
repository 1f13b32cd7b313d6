//! Redis Cluster: the node URLs of a cluster URL, and how a namespace's
//! keys are laid out over the hash slots (its groups and their hash tags).

use super::builder::{open, redact};
use super::L2Error;

/// `redis+cluster://...` -> `redis`, `rediss+cluster://...` -> `rediss`.
pub(super) fn cluster_scheme(url: &str) -> Option<&'static str> {
    if url.starts_with("redis+cluster://") {
        Some("redis")
    } else if url.starts_with("rediss+cluster://") {
        Some("rediss")
    } else {
        None
    }
}

/// The node URLs of a cluster URL: `redis[s][+cluster]://[auth@]a:1,b:2[/0]`
/// -> `redis[s]://[auth@]a:1[/0]`, `redis[s]://[auth@]b:2[/0]`.
pub(super) fn cluster_nodes(url: &str) -> Result<Vec<String>, L2Error> {
    let (scheme, rest) = match (cluster_scheme(url), url.split_once("://")) {
        (Some(scheme), Some((_, rest))) => (scheme, rest),
        (None, Some((scheme, rest))) => (scheme, rest),
        (_, None) => {
            // Let `open` say what is wrong with it.
            return open(url).map(|_| vec![url.to_owned()]);
        }
    };
    let (authority, path) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    let (auth, hosts) = match authority.rfind('@') {
        Some(at) => authority.split_at(at + 1),
        None => ("", authority),
    };
    let nodes: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|host| !host.is_empty())
        .map(|host| format!("{scheme}://{auth}{host}{path}"))
        .collect();
    if nodes.is_empty() {
        return Err(L2Error::Config(format!(
            "`{}` names no node: expected redis+cluster://host:port[,host:port...]",
            redact(url)
        )));
    }
    Ok(nodes)
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
    use crate::l2::redis::RedisL2;

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

    #[test]
    fn cluster_urls() {
        let nodes = cluster_nodes("redis+cluster://:pw@a:1,b:2/0").unwrap();
        assert_eq!(nodes, ["redis://:pw@a:1/0", "redis://:pw@b:2/0"]);
        let nodes = cluster_nodes("redis://a:1, b:2").unwrap();
        assert_eq!(nodes, ["redis://a:1", "redis://b:2"]);
        let nodes = cluster_nodes("rediss+cluster://a:1,b:2#insecure").unwrap();
        assert_eq!(nodes, ["rediss://a:1#insecure", "rediss://b:2#insecure"]);
        let err = RedisL2::builder("redis+cluster://a:1", "app{1}")
            .check()
            .unwrap_err()
            .to_string();
        assert!(err.contains("may not contain {"), "{err}");
        assert!(RedisL2::builder("redis://a:1", "app{1}").check().is_ok());
        let err = RedisL2::builder("redis+cluster://:pw@a:1/3", "app")
            .check()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("only database 0") && !err.contains("pw"),
            "{err}"
        );
        let err = RedisL2::builder("redis+cluster:///0", "app")
            .check()
            .unwrap_err()
            .to_string();
        assert!(err.contains("names no node"), "{err}");
    }
}
