//! The query string of an admin route, read strictly, so that the cache
//! and a proxy or an audit log in front of it cannot read two different
//! requests in it: each parameter the route takes at most once, no other,
//! `application/x-www-form-urlencoded` (`+` is a space) with every `%`
//! followed by two hex digits, values that decode to UTF-8 of at most
//! [`MAX_VALUE_BYTES`]. Anything else is refused with a message that says
//! why and quotes at most [`QUOTED_BYTES`] of what was sent.

/// The longest value of a parameter, decoded.
pub(super) const MAX_VALUE_BYTES: usize = 4096;

/// The most of a value that a message quotes.
const QUOTED_BYTES: usize = 64;

/// The values of `names` in `query`, in that order; `Err` says why the
/// query is refused.
pub(super) fn read<const N: usize>(
    query: Option<&str>,
    names: [&'static str; N],
) -> Result<[Option<String>; N], String> {
    let mut values = std::array::from_fn(|_| None);
    for pair in query
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode(name).map_err(|why| format!("a parameter name {why}"))?;
        let Some(at) = names.iter().position(|known| *known == name) else {
            let takes = match names.as_slice() {
                [] => "no query parameter".to_owned(),
                names => format!("`{}`", names.join("`, `")),
            };
            return Err(format!(
                "unknown query parameter {}: this route takes {takes}",
                quote(&name)
            ));
        };
        let name = names[at];
        let value = decode(value).map_err(|why| format!("`{name}` {why}"))?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(format!(
                "`{name}` is longer than {MAX_VALUE_BYTES} bytes: {}",
                quote(&value)
            ));
        }
        if values[at].replace(value).is_some() {
            return Err(format!(
                "`{name}` is given more than once: give it once, so that nothing has to guess which one counts"
            ));
        }
    }
    Ok(values)
}

/// `text` for a message: whole when short, else its first
/// [`QUOTED_BYTES`] (cut at a character boundary) and its length.
pub(super) fn quote(text: &str) -> String {
    if text.len() <= QUOTED_BYTES {
        return format!("`{}`", text.escape_debug());
    }
    let start = crate::pattern::start_of(text, QUOTED_BYTES);
    format!("`{}`... ({} bytes)", start.escape_debug(), text.len())
}

/// One name or value of the query, decoded; `Err` completes "`name` ...".
fn decode(raw: &str) -> Result<String, String> {
    let raw = raw.as_bytes();
    let mut bytes = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => bytes.push(b' '),
            b'%' => {
                let hex = |at: usize| raw.get(at).and_then(|&b| (b as char).to_digit(16));
                let (Some(high), Some(low)) = (hex(i + 1), hex(i + 2)) else {
                    return Err(format!(
                        "has a `%` at byte {i} that two hex digits do not follow (write `%25` for a `%`)"
                    ));
                };
                bytes.push((high * 16 + low) as u8);
                i += 2;
            }
            b => bytes.push(b),
        }
        i += 1;
    }
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "is not UTF-8 once percent-decoded (at byte {} of the decoded text): percent-encode the UTF-8 of the text",
            e.utf8_error().valid_up_to()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_as_forms_do() {
        let [pattern] = read(Some("pattern=orders%3Alist%3A*+x&"), ["pattern"]).unwrap();
        assert_eq!(pattern.as_deref(), Some("orders:list:* x"));
        let [pattern] = read(Some("pattern=%C3%A9&"), ["pattern"]).unwrap();
        assert_eq!(pattern.as_deref(), Some("é"));
        assert_eq!(
            read(Some("pattern"), ["pattern"]).unwrap(),
            [Some(String::new())]
        );
        assert_eq!(read(None, ["pattern"]).unwrap(), [None]);
        assert_eq!(read(Some(""), []).unwrap(), []);
    }

    #[test]
    fn a_percent_needs_two_hex_digits() {
        for (query, at) in [("pattern=a%2", 1), ("pattern=%zz", 0), ("pattern=%+1", 0)] {
            let why = read(Some(query), ["pattern"]).unwrap_err();
            assert!(why.contains(&format!("`%` at byte {at}")), "{query}: {why}");
        }
        let why = read(Some("pat%FFtern=a"), ["pattern"]).unwrap_err();
        assert!(why.starts_with("a parameter name is not UTF-8"), "{why}");
    }

    #[test]
    fn quotes_cut_at_a_character() {
        assert_eq!(quote("a\nb"), "`a\\nb`");
        let text = format!("{}é", "a".repeat(QUOTED_BYTES - 1));
        assert_eq!(quote(&text), format!("`{}`... (65 bytes)", "a".repeat(63)));
    }
}
