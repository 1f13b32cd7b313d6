//! Checked reads: a key with its group's generation and the tags of its
//! prefixes, in one `MGET`, judged as the coherence protocol says (see
//! `coherent`): a value older than a tag of its prefixes is absent.

use std::collections::HashMap;
use std::io::Write;

use foldhash::fast::RandomState;
use redis::{Cmd, RedisWrite, Value};

use super::marks::{
    key_digest, listed_tags, name, parse_generation, tag_prefixes, GENERATION, MAX_GENERATION, TAG,
    TAGGED, VALUE_HEADER, VALUE_TAG,
};
use super::redis::RedisL2;
use super::L2Error;

/// What a checked read found.
#[derive(Debug)]
pub(crate) enum Read {
    /// A value no invalidation covers, written for this key: the stored
    /// bytes, whose envelope starts at `start` (after the generation it
    /// was filled under and the digest of its key), and the generation to
    /// fill with should the value turn out unusable (expired,
    /// undecodable).
    Value {
        bytes: Vec<u8>,
        start: usize,
        generation: u64,
        /// The tags the value carries (checked against their marks by
        /// [`RedisL2::check_value_tags`]), and the generation it was filled under.
        tags: Vec<Box<str>>,
        born: u64,
    },
    /// Nothing usable (absent, or a value a newer tag invalidated): the
    /// generation to fill with.
    Absent { generation: u64 },
    /// Bytes that are no value of this version for this key (too short,
    /// under an impossible generation, written for another key, or in an
    /// earlier version's framing): a miss, and the generation to fill with
    /// (the fill replaces them).
    Undecodable { generation: u64 },
    /// A marker that makes no sense, said in `what`: the generation
    /// counter or a tag is not a number, or is out of range. Read as
    /// "invalidated": no value, and no fill.
    Corrupt { what: String },
}

/// A reply item without the RESP3 attributes around it, if any.
fn bare(item: &Value) -> &Value {
    match item {
        Value::Attribute { data, .. } => bare(data),
        other => other,
    }
}

/// The generation a reply item holds: 0 when absent; `None` for anything
/// else than a decimal number at most [`MAX_GENERATION`] (a marker only a
/// foreign writer leaves, or a reply item that did not come back).
fn generation_in(item: Option<&Value>) -> Option<u64> {
    match bare(item?) {
        Value::Nil => Some(0),
        Value::BulkString(bytes) => parse_generation(bytes),
        _ => None,
    }
}

/// The markers of one key's read, sound: its group's generation and the
/// newest tag of its prefixes.
#[derive(Debug)]
struct Marks {
    generation: u64,
    newest_tag: u64,
}

/// The markers of a key from a checked read's reply: the generation at
/// `generation_at`, and each tag prefix with where its tag is; the first
/// marker that makes no sense, named, when there is one.
fn marks<'p>(
    reply: &[Value],
    base: &str,
    generation_at: usize,
    tags: impl Iterator<Item = (&'p str, usize)>,
) -> Result<Marks, String> {
    let Some(generation) = generation_in(reply.get(generation_at)) else {
        return Err(format!("the generation counter `{base}{GENERATION}`"));
    };
    let mut newest_tag = 0;
    for (prefix, at) in tags {
        match generation_in(reply.get(at)) {
            Some(tag) => newest_tag = newest_tag.max(tag),
            None => return Err(format!("the tag `{base}{TAG}{prefix}`")),
        }
    }
    Ok(Marks {
        generation,
        newest_tag,
    })
}

/// What a checked read of one key found, from its value (if it came back),
/// the markers, and the digest of the key it is for.
fn judge(value: Option<Value>, marks: Result<Marks, String>, digest: u64) -> Read {
    let Marks {
        generation,
        newest_tag,
    } = match marks {
        Ok(marks) => marks,
        Err(what) => {
            return Read::Corrupt {
                what: format!("{what} is not a generation"),
            }
        }
    };
    let mut value = value;
    while let Some(Value::Attribute { data, .. }) = value {
        value = Some(*data);
    }
    let Some(Value::BulkString(bytes)) = value else {
        return Read::Absent { generation };
    };
    let (Some(born), Some(written_for)) = (be_u64(&bytes, 0), be_u64(&bytes, 8)) else {
        return Read::Undecodable { generation };
    };
    let (born, (tags, start)) = if born & TAGGED == 0 {
        (born, (Vec::new(), VALUE_HEADER))
    } else {
        match listed_tags(&bytes, VALUE_HEADER) {
            Some(listed) => (born & !TAGGED, listed),
            None => return Read::Undecodable { generation },
        }
    };
    if born > MAX_GENERATION || written_for != digest {
        return Read::Undecodable { generation };
    }
    if born < newest_tag {
        return Read::Absent { generation };
    }
    Read::Value {
        bytes,
        start,
        generation,
        tags,
        born,
    }
}

fn be_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let mut b = [0; 8];
    b.copy_from_slice(bytes.get(at..at + 8)?);
    Some(u64::from_be_bytes(b))
}

impl RedisL2 {
    /// Reads `key` with its group's generation and the tags of its
    /// prefixes, in one `MGET`.
    pub(super) async fn read_checked_one(&self, key: &str) -> Result<Read, L2Error> {
        let prefixes = tag_prefixes(key);
        let cmd = self.checked_read(&[key], prefixes.clone());
        let reply: Vec<Value> = self.query("MGET", &cmd).await?;
        // The prefixes of one key are distinct: the marks come back in
        // their order, the generation first.
        let base = self.base(key);
        let marks = marks(&reply, base, 1, prefixes.zip(2..));
        let value = reply.into_iter().next();
        Ok(judge(value, marks, key_digest(base, key)))
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
        let base = self.base(keys[0]);
        let tags_at = keys.len() + 1;
        let marks: Vec<_> = keys
            .iter()
            .map(|key| {
                let tags = tag_prefixes(key).map(|prefix| (prefix, tags_at + at[prefix]));
                marks(&reply, base, keys.len(), tags)
            })
            .collect();
        reply.truncate(keys.len());
        let values = reply
            .into_iter()
            .map(Some)
            .chain(std::iter::repeat_with(|| None));
        Ok(keys
            .iter()
            .zip(values)
            .zip(marks)
            .map(|((key, value), marks)| judge(value, marks, key_digest(base, key)))
            .collect())
    }

    /// `read`, unless a mark of a tag its value carries is newer than the
    /// value (then absent) or makes no sense (corrupt): one `MGET` of the
    /// marks in `key`'s group, for tagged values only.
    pub(crate) async fn check_value_tags(&self, key: &str, read: Read) -> Result<Read, L2Error> {
        let Read::Value {
            tags,
            born,
            generation,
            ..
        } = &read
        else {
            return Ok(read);
        };
        if tags.is_empty() {
            return Ok(read);
        }
        let base = self.base(key);
        let mut cmd = Cmd::new();
        cmd.arg("MGET");
        for tag in tags {
            cmd.arg(name(base, VALUE_TAG, tag));
        }
        let reply: Vec<Value> = self.query("MGET", &cmd).await?;
        for (at, tag) in tags.iter().enumerate() {
            match generation_in(reply.get(at)) {
                Some(mark) if mark > *born => {
                    return Ok(Read::Absent {
                        generation: *generation,
                    })
                }
                Some(_) => {}
                None => {
                    return Ok(Read::Corrupt {
                        what: format!("the tag `{base}{VALUE_TAG}{tag}` is not a generation"),
                    })
                }
            }
        }
        Ok(read)
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
        // generation, then the tags of "" and "orders:".
        let reply = |tag: Value| vec![Value::Nil, wrapped(bulk("17")), Value::Nil, tag];
        let tags = || [("", 2), ("orders:", 3)].into_iter();
        let sound = marks(&reply(bulk("42")), "ns", 1, tags()).unwrap();
        assert_eq!((sound.generation, sound.newest_tag), (17, 42));
        let none = marks(&reply(Value::Nil), "ns", 1, tags()).unwrap();
        assert_eq!(none.newest_tag, 0, "no tag: nothing invalidated");
        for corrupt in [
            Value::Int(5),
            bulk("not a number"),
            bulk("9007199254740993"),
        ] {
            let what = marks(&reply(corrupt), "ns", 1, tags()).unwrap_err();
            assert_eq!(what, "the tag `ns[t]orders:`");
        }
        let short = vec![Value::Nil, bulk("17"), Value::Nil];
        assert!(
            marks(&short, "ns", 1, tags()).is_err(),
            "a tag that did not come back"
        );
        let bad_generation = vec![Value::Nil, bulk("x"), Value::Nil, Value::Nil];
        assert_eq!(
            marks(&bad_generation, "ns", 1, tags()).unwrap_err(),
            "the generation counter `ns[g]`"
        );
    }

    #[test]
    fn values_are_judged_by_their_generation_and_their_key() {
        let digest = key_digest("ns", "k");
        let stored = |born: u64, written_for: u64| {
            let mut bytes = born.to_be_bytes().to_vec();
            bytes.extend_from_slice(&written_for.to_be_bytes());
            bytes.extend_from_slice(b"envelope");
            Some(Value::BulkString(bytes))
        };
        let at = |generation, newest_tag| {
            Ok(Marks {
                generation,
                newest_tag,
            })
        };
        let Read::Value {
            bytes,
            start,
            generation,
            ..
        } = judge(stored(9, digest), at(3, 9), digest)
        else {
            panic!("a value as new as the newest tag is served");
        };
        assert_eq!((&bytes[start..], generation), (&b"envelope"[..], 3));
        assert!(matches!(
            judge(stored(8, digest), at(3, 9), digest),
            Read::Absent { generation: 3 }
        ));
        let other_key = judge(stored(9, key_digest("ns", "other")), at(3, 0), digest);
        assert!(matches!(other_key, Read::Undecodable { generation: 3 }));
        let beyond = judge(stored(MAX_GENERATION + 1, digest), at(3, 0), digest);
        assert!(matches!(beyond, Read::Undecodable { generation: 3 }));
        let short = judge(Some(Value::BulkString(vec![0; 15])), at(3, 0), digest);
        assert!(matches!(short, Read::Undecodable { generation: 3 }));
        let corrupt_marks = judge(stored(9, digest), Err("the tag `x`".into()), digest);
        assert!(
            matches!(&corrupt_marks, Read::Corrupt { what } if what == "the tag `x` is not a generation")
        );
        assert!(matches!(
            judge(Some(Value::Nil), at(3, 0), digest),
            Read::Absent { .. }
        ));
        assert!(matches!(judge(None, at(3, 0), digest), Read::Absent { .. }));
    }
}
