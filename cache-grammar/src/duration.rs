//! The duration and percentage literals of the attributes and the
//! environment: `"2m"`, `"1h30m"`, `"500ms"`, `"10%"`.

use std::time::Duration;

/// Parses a duration such as `"2m"`, `"1h30m"` or `"250ms"`: one or more
/// runs of digits, each followed by a unit (`ms`, `s`, `m`, `h`, `d`).
///
/// The error is a sentence that names what to write instead.
///
/// ```
/// use std::time::Duration;
/// use cache_grammar::parse_duration;
///
/// assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
/// assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
/// assert_eq!(
///     parse_duration("2 minutes").unwrap_err(),
///     "unknown unit `minutes` in duration `2 minutes`: write `m`, as in \"2m\"",
/// );
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let hint =
        "write a number followed by a unit (ms, s, m, h, d), e.g. \"30s\", \"2m\" or \"1h30m\"";
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(format!("empty duration: {hint}"));
    }
    if trimmed.starts_with('-') {
        return Err(format!("duration `{text}` is negative: {hint}"));
    }
    if trimmed.contains(char::is_whitespace) {
        let compact: String = trimmed.split_whitespace().collect();
        return Err(match parse_duration(&compact) {
            Ok(_) => format!(
                "duration `{text}` has spaces; durations are written without them: write \"{compact}\""
            ),
            // The same text without spaces has a mistake of its own: say
            // that one, about the text as written.
            Err(e) => e.replace(&format!("`{compact}`"), &format!("`{text}`")),
        });
    }
    let mut total: u128 = 0;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("`{text}` is not a duration: {hint}"));
        }
        let number: u128 = rest[..digits]
            .parse()
            .map_err(|_| format!("duration `{text}` is too large"))?;
        rest = &rest[digits..];
        if rest.starts_with(['.', ',']) {
            return Err(format!(
                "duration `{text}` has a fraction: durations are whole numbers of a unit; write `1s500ms` for 1.5s, `90s` for 1.5m"
            ));
        }
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        let millis_per_unit: u128 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => {
                return Err(format!(
                    "duration `{text}` has a number without a unit: {hint}"
                ))
            }
            other => {
                let unit = match other.to_ascii_lowercase().as_str() {
                    "msec" | "msecs" | "millis" | "millisecond" | "milliseconds" => Some("ms"),
                    "sec" | "secs" | "second" | "seconds" => Some("s"),
                    "min" | "mins" | "minute" | "minutes" => Some("m"),
                    "hr" | "hrs" | "hour" | "hours" => Some("h"),
                    "day" | "days" => Some("d"),
                    _ => None,
                };
                return Err(match unit {
                    Some(unit) => format!("unknown unit `{other}` in duration `{text}`: write `{unit}`, as in \"{number}{unit}\""),
                    None => format!("unknown unit `{other}` in duration `{text}`: {hint}"),
                });
            }
        };
        rest = &rest[unit_len..];
        total = number
            .checked_mul(millis_per_unit)
            .and_then(|ms| total.checked_add(ms))
            .filter(|&ms| ms <= u128::from(u64::MAX))
            .ok_or_else(|| format!("duration `{text}` is too large"))?;
    }
    Ok(Duration::from_millis(total as u64))
}

/// Parses a percentage such as `"10%"`, from 0 to 100.
///
/// ```
/// use cache_grammar::parse_percent;
///
/// assert_eq!(parse_percent("10%"), Ok(10));
/// assert_eq!(
///     parse_percent("10").unwrap_err(),
///     "`10` is not a percentage: write a whole percentage from 0% to 100%, e.g. \"10%\"",
/// );
/// ```
pub fn parse_percent(text: &str) -> Result<u8, String> {
    let hint = "write a whole percentage from 0% to 100%, e.g. \"10%\"";
    let Some(number) = text.trim().strip_suffix('%') else {
        return Err(format!("`{text}` is not a percentage: {hint}"));
    };
    match number.parse::<u8>() {
        Ok(p) if p <= 100 => Ok(p),
        _ => Err(format!(
            "`{text}` is not a percentage from 0% to 100%: {hint}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_combinations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        for bad in [
            "",
            "2",
            "2 minutes",
            "-5s",
            "5x",
            "m",
            "1.5s",
            "99999999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} parsed");
        }
        assert!(parse_duration("2 minutes")
            .unwrap_err()
            .contains("as in \"2m\""));
        assert!(parse_duration("2minutes")
            .unwrap_err()
            .contains("as in \"2m\""));
        assert!(parse_duration("1 m").unwrap_err().contains("write \"1m\""));
    }

    #[test]
    fn percentages() {
        assert_eq!(parse_percent("10%"), Ok(10));
        assert!(parse_percent("10").is_err());
        assert!(parse_percent("101%").is_err());
    }
}
