//! Secrets kept out of what the crate prints: a URL is shown with `***`
//! in place of its credentials, in `Debug`, in `Display` and in every
//! error message.

/// `redis://user:pass@host` -> `redis://***@host`; the value of a `pass`
/// or `password` query parameter (`redis+unix:///run/redis.sock?pass=..`)
/// becomes `***` too.
pub(crate) fn redact(url: &str) -> String {
    let shown = match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        (None, Some(at)) => format!("***{}", &url[at..]),
        _ => url.to_owned(),
    };
    let Some((base, query)) = shown.split_once('?') else {
        return shown;
    };
    let (query, fragment) = query.split_at(query.find('#').unwrap_or(query.len()));
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _))
                if name.eq_ignore_ascii_case("pass") || name.eq_ignore_ascii_case("password") =>
            {
                format!("{name}=***")
            }
            _ => pair.to_owned(),
        })
        .collect();
    format!("{base}?{}{fragment}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_become_stars() {
        assert_eq!(redact("redis://:pw@h:1/0"), "redis://***@h:1/0");
        assert_eq!(redact("redis://u:p@ss@h:1"), "redis://***@h:1");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
        assert_eq!(
            redact("redis+cluster://:pw@a:1,b:2/0#insecure"),
            "redis+cluster://***@a:1,b:2/0#insecure"
        );
        assert_eq!(redact(":pw@h:1"), "***@h:1");
        assert_eq!(
            redact("redis+unix:///run/redis.sock?db=2&pass=pw&PASSWORD=pw#x"),
            "redis+unix:///run/redis.sock?db=2&pass=***&PASSWORD=***#x"
        );
    }
}
