//! Redis URLs: checked and opened, their passwords kept out of messages,
//! and the node URLs of a cluster URL.

use super::L2Error;

pub(super) use crate::secret::redact;

/// Opens a client of one server, checking the URL.
pub(super) fn open(url: &str) -> Result<redis::Client, L2Error> {
    if url.starts_with("rediss://") && !cfg!(feature = "tls") {
        return Err(L2Error::Config(
            "rediss:// (TLS) needs the `tls` feature of cache-runtime; enable it, or use redis://"
                .into(),
        ));
    }
    if !url.starts_with("redis://") && !url.starts_with("rediss://") {
        return Err(L2Error::Config(format!(
            "`{}` is not a redis URL: expected redis://[:password@]host:port[/db], rediss:// for TLS, redis+cluster://host:port[,host:port...] for a Redis Cluster, or redis+sentinel://host:port[,host:port...]/<service>[/<db>] for the master of a service that Redis Sentinel monitors",
            redact(url)
        )));
    }
    redis::Client::open(url)
        .map_err(|e| L2Error::Config(format!("`{}` does not parse: {}", redact(url), e)))
}

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

/// What follows the scheme of a URL naming several hosts,
/// `[auth@]host[,host...][/path]`, split: the authentication with its `@`
/// (or nothing), the hosts, the rest from the first `/`, `?` or `#`.
pub(super) fn split_hosts(rest: &str) -> (&str, impl Iterator<Item = &str>, &str) {
    let (authority, path) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    let (auth, hosts) = match authority.rfind('@') {
        Some(at) => authority.split_at(at + 1),
        None => ("", authority),
    };
    let hosts = hosts
        .split(',')
        .map(str::trim)
        .filter(|host| !host.is_empty());
    (auth, hosts, path)
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
    let (auth, hosts, path) = split_hosts(rest);
    let nodes: Vec<String> = hosts
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::l2::redis::RedisL2;

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
