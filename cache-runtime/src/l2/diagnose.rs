//! What a failed call to Redis means: the driver's error mapped to an
//! [`L2Error`], with its cause named when it is one a person can act on
//! (refused, authentication, no such database, a cluster node behind a
//! single-server URL, TLS), and a look at the port when the error itself
//! does not tell (a timeout, a reset connection).

use std::time::Duration;

use redis::RedisError;

use super::{L2Error, L2ErrorKind};

/// What a cluster node's redirect or slot error means for a store that is
/// not told it talks to a cluster.
pub(crate) const CLUSTER_NOT_DECLARED: &str = "REDIS_URL points at a Redis Cluster node: write it as redis+cluster://host:port[,host:port...] so that the cache uses the cluster client; meanwhile the cache runs on its in-process tier and the origin";

pub(super) fn map_error(
    op: &'static str,
    after: Duration,
    addr: &str,
    cluster: bool,
    e: RedisError,
) -> L2Error {
    if let Some((kind, message)) = cause(addr, cluster, &e) {
        L2Error::Unavailable { op, kind, message }
    } else if e.is_timeout() {
        L2Error::Timeout { op, after }
    } else if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() {
        L2Error::Connection {
            op,
            source: Box::new(e),
        }
    } else {
        L2Error::Command {
            op,
            source: Box::new(e),
        }
    }
}

/// The cause of a driver's error, when it is one that a person can act on:
/// its kind and a message naming it (with `addr`, `host:port/db`, and the
/// server's words: never the password, which neither holds).
fn cause(addr: &str, cluster: bool, e: &RedisError) -> Option<(L2ErrorKind, String)> {
    let (host, db) = addr.rsplit_once('/').unwrap_or((addr, "0"));
    let detail = e.detail().unwrap_or("");
    let text = e.to_string();
    if !cluster
        && (e.is_cluster_error()
            || e.code() == Some("CROSSSLOT")
            || detail.contains("cluster mode"))
    {
        return Some((
            L2ErrorKind::ClusterNotDeclared,
            format!("{CLUSTER_NOT_DECLARED} ({e})"),
        ));
    }
    if e.kind() == redis::ErrorKind::MasterNameNotFoundBySentinel {
        return Some((
            L2ErrorKind::NoMaster,
            format!(
                "the sentinels name no master for {host}: they monitor none under that name (compare the URL's service with `SENTINEL MASTERS` on a sentinel), or its master is down and not replaced yet"
            ),
        ));
    }
    if e.is_connection_refusal() {
        return Some((
            L2ErrorKind::Refused,
            format!(
                "connection refused by {host}: nothing listens there (is Redis running, and are the host and port of REDIS_URL right?)"
            ),
        ));
    }
    if e.code() == Some("NOAUTH") || detail.contains("Authentication required") {
        return Some((
            L2ErrorKind::Auth,
            format!(
                "authentication required by {host}: the server has a password and the URL gives none (write redis://:PASSWORD@host:port/db, or redis://USER:PASSWORD@...)"
            ),
        ));
    }
    if e.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("WRONGPASS" | "WRONGUSER"))
    {
        return Some((
            L2ErrorKind::Auth,
            format!("authentication failed at {host}: the server refused the URL's user or password ({e})"),
        ));
    }
    // `SELECT` refused for another reason (an ACL, say) is left as it is.
    if text.contains("refused to switch database") && detail.contains("out of range") {
        return Some((
            L2ErrorKind::NoSuchDatabase,
            format!(
                "no such database: {host} has no database {db} ({detail}); a server has 16 by default, 0 to 15 (its `databases` setting)"
            ),
        ));
    }
    // The TLS library's words, in an error of the client's (a server's
    // error has a code, and may quote a script).
    let lower = text.to_ascii_lowercase();
    if e.code().is_none()
        && ["ssl", "tls", "certificate", "handshake"]
            .iter()
            .any(|word| lower.contains(word))
    {
        return Some((
            L2ErrorKind::Tls,
            format!("TLS with {host} failed: {text} (rediss:// needs the server's TLS port and a certificate the client trusts; `#insecure` after the URL skips the check)"),
        ));
    }
    None
}

/// A single server's address, to look at when a call fails without a clear
/// cause: a second connection, in plain text, tells a TLS mismatch and a
/// refused connection from a slow or paused server.
pub(super) struct Probe {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) tls: bool,
    /// `host:port`, for messages.
    pub(super) addr: String,
}

impl Probe {
    /// `failed`, or what a plain-text `PING` on a connection of its own
    /// (within `within`) says it means. Only timeouts and connection
    /// errors are looked at: the others name their cause.
    pub(super) async fn diagnose(&self, failed: L2Error, within: Duration) -> L2Error {
        use std::io::ErrorKind as Io;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let op = match &failed {
            L2Error::Timeout { op, .. } | L2Error::Connection { op, .. } => *op,
            _ => return failed,
        };
        let host = (self.host.as_str(), self.port);
        let answer = tokio::time::timeout(within, async {
            let mut stream = tokio::net::TcpStream::connect(host).await?;
            stream.write_all(b"PING\r\n").await?;
            let mut first = [0u8; 1];
            let read = stream.read(&mut first).await?;
            Ok::<_, std::io::Error>(first[..read].first().copied())
        })
        .await;
        let addr = &self.addr;
        let (kind, message) = match answer {
            // No answer in time either: slow or paused, as it said.
            Err(_) => return failed,
            Ok(Err(e)) if e.kind() == Io::ConnectionRefused => (
                L2ErrorKind::Refused,
                format!(
                    "connection refused by {addr}: nothing listens there (is Redis running, and are the host and port of REDIS_URL right?)"
                ),
            ),
            // A RESP answer (`+PONG`, `-NOAUTH ...`): the port speaks
            // plain text.
            Ok(Ok(Some(b'+' | b'-'))) if self.tls => (
                L2ErrorKind::Tls,
                format!(
                    "{addr} answers in plain text, not TLS: use redis:// for this port, or rediss:// with the server's tls-port"
                ),
            ),
            // Hung up on plain text, or answered with a TLS alert
            // (0x15): the port speaks TLS.
            Ok(Ok(None | Some(0x15))) if !self.tls => (
                L2ErrorKind::Tls,
                format!("{addr} hangs up on plain text: it likely speaks TLS: use rediss:// for this port (the `tls` feature), or the server's plain port"),
            ),
            Ok(Err(e))
                if !self.tls
                    && matches!(
                        e.kind(),
                        Io::ConnectionReset | Io::ConnectionAborted | Io::UnexpectedEof
                    ) =>
            {
                (
                    L2ErrorKind::Tls,
                    format!("{addr} hangs up on plain text ({e}): it likely speaks TLS: use rediss:// for this port (the `tls` feature), or the server's plain port"),
                )
            }
            Ok(_) => return failed,
        };
        L2Error::Unavailable { op, kind, message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::{ErrorKind, ServerErrorKind};

    fn server_error(description: &'static str, detail: &str) -> RedisError {
        RedisError::from((
            ErrorKind::Server(ServerErrorKind::ResponseError),
            description,
            detail.to_owned(),
        ))
    }

    #[test]
    fn causes_are_named_only_when_the_error_says_so() {
        let refused = RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let (kind, message) = cause("127.0.0.1:1/0", false, &refused).unwrap();
        assert_eq!(kind, L2ErrorKind::Refused);
        assert!(message.contains("127.0.0.1:1:"), "{message}");
        let select = "Redis server refused to switch database";
        let (kind, message) = cause(
            "h:1/99",
            false,
            &server_error(select, "DB index is out of range"),
        )
        .unwrap();
        assert_eq!(kind, L2ErrorKind::NoSuchDatabase);
        assert!(message.contains("no database 99"), "{message}");
        // SELECT refused by an ACL is no missing database.
        assert!(cause(
            "h:1/3",
            false,
            &server_error(select, "NOPERM no permissions")
        )
        .is_none());
        // A server's error that happens to hold a TLS word is no TLS failure.
        let script = server_error("An error was signalled by the server", "user_script:1: ssl");
        assert!(cause("h:1/0", false, &script).is_none());
        // Redirects: a cluster the store was not told of, unless it was.
        let moved = RedisError::from((
            ErrorKind::Server(ServerErrorKind::Moved),
            "An error was signalled by the server",
            "3999 127.0.0.1:7001".to_owned(),
        ));
        assert_eq!(
            cause("h:1/0", false, &moved).unwrap().0,
            L2ErrorKind::ClusterNotDeclared
        );
        assert!(cause("cluster h:1", true, &moved).is_none());
    }
}
