//! Redis under the shared tier, in layers: the store (`redis`: raw bytes
//! under namespaced keys, every command under a timeout; made by `builder`
//! from a URL, `url`, laid out over a cluster's slots, `cluster`, its
//! failures named by `diagnose`), the keys of the coherence protocol
//! (`marks`), checked reads (`read`) that go together in batches
//! (`batch`), the distributed lock (`lock`), and the coherence protocol on
//! top (`coherent`), which the shared tier calls. What the bytes mean is
//! the envelope's business ([`Envelope`](crate::Envelope)).

use std::fmt;
use std::time::Duration;

use crate::pattern::PatternError;

mod batch;
pub(crate) mod builder;
pub(crate) mod cluster;
pub(crate) mod coherent;
mod diagnose;
pub(crate) mod lock;
mod marks;
mod read;
pub(crate) mod redis;
pub(crate) mod sentinel;
mod url;

pub(crate) use marks::bus_channel;
pub(crate) use read::Read;

/// Why an L2 call failed. On the read path every one of these means "go on
/// without the L2": a miss, or a fill that did not happen.
///
/// [`kind`](L2Error::kind) says what went wrong in a word, to decide on
/// (a service may refuse to start on [`L2ErrorKind::Auth`] and start
/// degraded on [`L2ErrorKind::Refused`]); the Display text says it for a
/// person, with what to check. No message ever contains a password.
///
/// ```
/// use std::time::Duration;
/// use cache_runtime::{L2Error, L2ErrorKind};
///
/// let err = L2Error::Timeout { op: "GET", after: Duration::from_millis(250) };
/// assert!(err.is_timeout());
/// assert_eq!(err.kind(), L2ErrorKind::Timeout);
/// assert_eq!(err.to_string(), "redis GET timed out after 250ms");
///
/// let err = L2Error::Unavailable {
///     op: "PING",
///     kind: L2ErrorKind::Refused,
///     message: "connection refused by 127.0.0.1:6380".into(),
/// };
/// assert!(err.is_unavailable() && !err.is_timeout());
/// assert_eq!(err.to_string(), "redis PING: connection refused by 127.0.0.1:6380");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum L2Error {
    /// The store was configured wrong: a bad URL or namespace. The message
    /// never contains a password.
    Config(String),
    /// The call took longer than the store's timeout.
    Timeout {
        /// The command, as `GET`, `SET`, `SCAN`.
        op: &'static str,
        /// The timeout.
        after: Duration,
    },
    /// The connection failed: dropped, reset, or being re-established,
    /// without a cause the store recognises (those are
    /// [`Unavailable`](L2Error::Unavailable)).
    Connection {
        /// The command.
        op: &'static str,
        /// The driver's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The server answered with an error, or something the command should
    /// not return.
    Command {
        /// The command.
        op: &'static str,
        /// The driver's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Redis cannot be used, for a cause the store recognised: the
    /// connection was refused, authentication failed, the database does
    /// not exist, the server is a Redis Cluster node behind a
    /// single-server URL, or TLS failed (see [`L2ErrorKind`]).
    Unavailable {
        /// The command.
        op: &'static str,
        /// The cause: never [`Timeout`](L2ErrorKind::Timeout),
        /// [`Connection`](L2ErrorKind::Connection) or the other kinds of
        /// the other variants.
        kind: L2ErrorKind,
        /// What happened and what to check: the address, the server's
        /// words; never a password.
        message: String,
    },
    /// The invalidation pattern does not parse.
    Pattern(PatternError),
    /// A `set` with a TTL of zero milliseconds.
    ZeroTtl,
}

/// What went wrong with a call to the shared tier, in a word: from
/// [`L2Error::kind`], or [`ReadyError::kind`](crate::ReadyError::kind).
///
/// ```
/// use cache_runtime::L2ErrorKind;
/// assert_eq!(L2ErrorKind::NoSuchDatabase.to_string(), "no such database");
/// assert!(L2ErrorKind::Auth.is_configuration());
/// assert!(!L2ErrorKind::Refused.is_configuration());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum L2ErrorKind {
    /// Nothing accepts connections at the address: Redis is down, or the
    /// host or port is wrong.
    Refused,
    /// The server wants a password and the URL has none, or it refused the
    /// URL's user or password.
    Auth,
    /// The URL's database index (`/99`) is beyond the server's databases
    /// (16 by default: 0 to 15).
    NoSuchDatabase,
    /// The sentinels of a `redis+sentinel://` URL name no master for its
    /// service: they monitor none under that name, or its master is down
    /// and not replaced yet.
    NoMaster,
    /// Behind Sentinel, no replica confirmed an invalidation in time while
    /// one is up or cut off, or the master changed during the invalidation:
    /// a failover could lose what only the master holds.
    NotReplicated,
    /// The server is a Redis Cluster node and the URL a single-server one:
    /// write it as `redis+cluster://host:port[,host:port...]`.
    ClusterNotDeclared,
    /// TLS failed: the handshake or the certificate, or TLS spoken to a
    /// plain-text port (`rediss://` to a plain port, `redis://` to a TLS
    /// one) as far as the store can tell.
    Tls,
    /// A call took longer than the timeout: Redis is slow, paused or
    /// unreachable.
    Timeout,
    /// Other connection trouble: dropped, reset, unreachable.
    Connection,
    /// The server answered a command with an error.
    Command,
    /// A bad URL or namespace ([`L2Error::Config`]).
    Config,
    /// The call itself was wrong: a pattern that does not parse, a zero
    /// TTL.
    Usage,
}

impl L2ErrorKind {
    /// Whether this is a mistake in the settings or on the server that
    /// waiting will not fix (authentication, database, cluster node, TLS,
    /// a bad URL), as opposed to Redis being down or slow.
    ///
    /// ```
    /// use cache_runtime::L2ErrorKind;
    /// assert!(L2ErrorKind::Tls.is_configuration());
    /// assert!(!L2ErrorKind::Timeout.is_configuration());
    /// ```
    pub fn is_configuration(self) -> bool {
        matches!(
            self,
            L2ErrorKind::Auth
                | L2ErrorKind::NoSuchDatabase
                | L2ErrorKind::ClusterNotDeclared
                | L2ErrorKind::Tls
                | L2ErrorKind::Config
        )
    }
}

impl fmt::Display for L2ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            L2ErrorKind::Refused => "connection refused",
            L2ErrorKind::Auth => "authentication failed",
            L2ErrorKind::NoSuchDatabase => "no such database",
            L2ErrorKind::NoMaster => "no master from the sentinels",
            L2ErrorKind::NotReplicated => "not confirmed by a replica",
            L2ErrorKind::ClusterNotDeclared => "a Redis Cluster node given as a single server",
            L2ErrorKind::Tls => "TLS failed",
            L2ErrorKind::Timeout => "timeout",
            L2ErrorKind::Connection => "connection failed",
            L2ErrorKind::Command => "command failed",
            L2ErrorKind::Config => "configuration",
            L2ErrorKind::Usage => "invalid call",
        })
    }
}

impl L2Error {
    /// The call timed out.
    ///
    /// ```
    /// use cache_runtime::L2Error;
    /// assert!(!L2Error::ZeroTtl.is_timeout());
    /// ```
    pub fn is_timeout(&self) -> bool {
        matches!(self, L2Error::Timeout { .. })
    }

    /// The store is unreachable, slow or unusable as configured (timeout,
    /// connection trouble, or a recognised cause such as refused or
    /// authentication): what a circuit breaker counts, as opposed to a
    /// caller's mistake.
    ///
    /// ```
    /// use cache_runtime::L2Error;
    /// assert!(!L2Error::ZeroTtl.is_unavailable());
    /// ```
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            L2Error::Timeout { .. } | L2Error::Connection { .. } | L2Error::Unavailable { .. }
        )
    }

    /// What went wrong, in a word.
    ///
    /// ```
    /// use cache_runtime::{L2Error, L2ErrorKind};
    /// assert_eq!(L2Error::ZeroTtl.kind(), L2ErrorKind::Usage);
    /// assert_eq!(L2Error::Config("bad URL".into()).kind(), L2ErrorKind::Config);
    /// ```
    pub fn kind(&self) -> L2ErrorKind {
        match self {
            L2Error::Config(_) => L2ErrorKind::Config,
            L2Error::Timeout { .. } => L2ErrorKind::Timeout,
            L2Error::Connection { .. } => L2ErrorKind::Connection,
            L2Error::Command { .. } => L2ErrorKind::Command,
            L2Error::Unavailable { kind, .. } => *kind,
            L2Error::Pattern(_) | L2Error::ZeroTtl => L2ErrorKind::Usage,
        }
    }
}

impl fmt::Display for L2Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            L2Error::Config(message) => write!(f, "redis configuration: {message}"),
            L2Error::Timeout { op, after } => write!(f, "redis {op} timed out after {after:?}"),
            L2Error::Connection { op, source } => write!(f, "redis {op}: connection: {source}"),
            L2Error::Command { op, source } => write!(f, "redis {op}: {source}"),
            L2Error::Unavailable { op, message, .. } => write!(f, "redis {op}: {message}"),
            L2Error::Pattern(e) => e.fmt(f),
            L2Error::ZeroTtl => f.write_str("an L2 value needs a TTL of at least 1ms"),
        }
    }
}

impl std::error::Error for L2Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            L2Error::Connection { source, .. } | L2Error::Command { source, .. } => Some(&**source),
            L2Error::Pattern(e) => Some(e),
            _ => None,
        }
    }
}

impl From<PatternError> for L2Error {
    fn from(e: PatternError) -> Self {
        L2Error::Pattern(e)
    }
}

/// Checks a namespace: the text every key of the store starts with, before
/// a `:`.
///
/// It is put in front of SCAN patterns as it is, so it must not contain
/// glob syntax (`*`, `?`, `[`, `]`, `\`); nor `:`, so that no namespace is a
/// prefix of another's keys (`app` would otherwise clear `app:v2`'s);
/// nor spaces or control characters. Not empty, at most 128 bytes.
pub(crate) fn validate_namespace(namespace: &str) -> Result<(), L2Error> {
    match crate::config::namespace_problem(namespace) {
        Some(problem) => Err(L2Error::Config(problem)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces() {
        assert!(validate_namespace("orders-svc").is_ok());
        assert!(validate_namespace("app_v2.eu").is_ok());
        for bad in ["", "a*", "a?", "a[b]", "a\\b", "a:b", "a b", "é", "a\n"] {
            assert!(validate_namespace(bad).is_err(), "{bad:?}");
        }
        let err = validate_namespace("app:v2").unwrap_err();
        assert_eq!(
            err.to_string(),
            "redis configuration: namespace `app:v2` contains `:`: use ASCII letters, digits and punctuation other than * ? [ ] \\ :"
        );
    }
}
