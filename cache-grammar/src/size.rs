//! The size literals of the environment: `"64MiB"`, `"512KiB"`, `"67108864"`.

/// Parses a size in bytes: a whole number, optionally followed by `B`,
/// `KiB`, `MiB` or `GiB` (or `KB`, `MB`, `GB`, which mean the same powers
/// of 1024), in any case and with or without a space. A size of zero is an
/// error.
///
/// The error is a sentence about the text as written, for the caller to put
/// after the name of the setting.
///
/// ```
/// use cache_grammar::parse_size;
///
/// assert_eq!(parse_size("64MiB"), Ok(64 << 20));
/// assert_eq!(parse_size("512 kb"), Ok(512 << 10));
/// assert_eq!(parse_size("4096"), Ok(4096));
/// assert_eq!(parse_size("0"), Err("`0`: the size must be above 0, e.g. 64MiB".to_owned()));
/// ```
pub fn parse_size(value: &str) -> Result<u64, String> {
    let text = value.trim();
    let upper = text.to_ascii_uppercase();
    let (digits, factor) = [
        ("GIB", 1u64 << 30),
        ("MIB", 1 << 20),
        ("KIB", 1 << 10),
        ("GB", 1 << 30),
        ("MB", 1 << 20),
        ("KB", 1 << 10),
        ("B", 1),
    ]
    .iter()
    .find_map(|(suffix, f)| {
        upper
            .strip_suffix(suffix)
            .map(|d| (d.trim().to_owned(), *f))
    })
    .unwrap_or((upper.clone(), 1));
    match digits.parse::<u64>().ok().map(|n| n.checked_mul(factor)) {
        Some(Some(0)) => Err(format!("`{value}`: the size must be above 0, e.g. 64MiB")),
        Some(Some(n)) => Ok(n),
        Some(None) => Err(format!("`{value}` is too large")),
        None => Err(format!(
            "`{value}` is not a size: write bytes, e.g. 67108864, 64MiB (or 64MB, the same) or 512KiB"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_are_powers_of_1024_in_any_case() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("64MB"), Ok(64 << 20));
        assert_eq!(parse_size("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_size("2gib"), Ok(2 << 30));
        assert_eq!(parse_size(" 100b "), Ok(100));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert!(parse_size("0KiB").unwrap_err().contains("must be above 0"));
        assert!(parse_size("lots").unwrap_err().contains("is not a size"));
        assert!(parse_size("-1").unwrap_err().contains("is not a size"));
        assert_eq!(
            parse_size("18446744073709551615GiB"),
            Err("`18446744073709551615GiB` is too large".to_owned())
        );
    }
}
