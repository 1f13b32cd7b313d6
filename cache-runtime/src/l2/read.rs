//! Checked reads: a key with its group's generation and the tags of its
//! prefixes, in one `MGET`, judged as the coherence protocol says (see
//! `coherent`): a value older than a tag of its prefixes is absent.

use std::collections::HashMap;
use std::io::Write;

use foldhash::fast::RandomState;
use redis::{Cmd, RedisWrite, Value};

use super::marks::{tag_prefixes, GENERATION, TAG};
use super::redis::RedisL2;
use super::L2Error;

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

impl RedisL2 {
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
}
