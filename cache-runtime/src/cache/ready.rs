//! The start-up check: whether the shared tier can be used now, and if
//! not, why.

use std::time::Duration;

use super::Cache;
use crate::health::ReadyError;

impl Cache {
    /// Checks, within `timeout`, that the cache can use everything it is
    /// configured with: for a `redis` or `hybrid` cache it connects to
    /// Redis and sends `PING` (which checks the password and the database),
    /// checks that the server is not a Redis Cluster node behind a
    /// single-server URL, and waits until the invalidation backplane has
    /// subscribed. A `memory` cache is ready at once.
    ///
    /// Nothing depends on it: a cache whose Redis is down still answers
    /// every call (degraded: from the origin) and uses Redis once it is
    /// back. It lets a service choose at start-up between
    /// failing and starting degraded. A failed check is reported as any
    /// failed call is (the hooks, the logs, [`Cache::health`]), as op
    /// `READY`.
    ///
    /// Available with the `redis` feature.
    ///
    /// # Errors
    /// [`ReadyError::Redis`] with what is wrong (see
    /// [`L2ErrorKind`](crate::L2ErrorKind): refused, authentication, no
    /// such database, a cluster node, TLS, a timeout);
    /// [`ReadyError::NotInSync`] when Redis answers but the backplane did
    /// not subscribe in time.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// let cache = cache_runtime::Cache::builder().build().unwrap();
    /// assert!(cache.ready(Duration::from_secs(1)).await.is_ok()); // memory: at once
    /// # });
    /// ```
    ///
    /// At a service's start: refuse to run with a wrong password, database
    /// or URL, start degraded while Redis is down.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use cache_runtime::{CacheBuilder, Config};
    ///
    /// let cache = CacheBuilder::from_config(Config::from_env()?).build()?;
    /// match cache.ready(Duration::from_secs(5)).await {
    ///     Ok(()) => {}
    ///     Err(e) if e.kind().is_configuration() => return Err(e.into()),
    ///     Err(e) => eprintln!("starting degraded: {e}"), // Redis down or slow
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn ready(&self, timeout: Duration) -> Result<(), ReadyError> {
        match &self.inner.shared {
            Some(shared) => shared.ready(&*self.inner, timeout).await,
            None => Ok(()),
        }
    }
}
