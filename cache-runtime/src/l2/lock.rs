//! The distributed lock of a key (single flight across instances): taken
//! with `SET NX PX` semantics in a script, renewed and released by its
//! holder only.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::marks::{millis, name, LOCK_OF};
use super::redis::RedisL2;
use super::L2Error;

/// KEYS: a lock; ARGV: a holder's token, the lock's lifetime (ms). Takes
/// the lock if it is free (returns nil), else returns who holds it (or
/// [`VACATED`]).
const LOCK: &str = "
local held = redis.call('GET', KEYS[1])
if held then return held end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
";

/// KEYS: a lock; ARGV: its holder's token, then what to leave in its place
/// ('' for nothing) and for how long (ms). Releases the lock only if this
/// holder still holds it (it may have expired and been taken since); with
/// ARGV[3] a lifetime, renews it instead when ARGV[2] is ''.
const UNLOCK: &str = "
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] ~= '' then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
if ARGV[3] ~= '' then return redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return redis.call('DEL', KEYS[1])
";

/// What a holder that stored nothing (its origin failed, say) leaves in
/// the lock's place for a moment: the instances waiting for its value call
/// the origin themselves at once, instead of taking the lock in turn.
pub(crate) const VACATED: &str = "-";

/// How long [`VACATED`] stays.
const VACATED_FOR: Duration = Duration::from_secs(1);

/// What trying a lock found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Lock {
    /// Taken: this caller holds it.
    Taken,
    /// Another instance holds it.
    Held,
    /// Its last holder stored nothing.
    Vacated,
}

static LOCK_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(LOCK));
static UNLOCK_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(UNLOCK));

impl RedisL2 {
    fn lock_key(&self, key: &str) -> String {
        name(self.base(key), LOCK_OF, key)
    }

    /// Takes the lock of `key` for `holder`, for `ttl`, if it is free.
    pub(crate) async fn try_lock(
        &self,
        key: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Lock, L2Error> {
        let mut call = LOCK_SCRIPT.key(self.lock_key(key));
        call.arg(holder).arg(millis(ttl));
        let held: Option<String> = self.invoke("LOCK", &call).await?;
        Ok(match held.as_deref() {
            None => Lock::Taken,
            Some(VACATED) => Lock::Vacated,
            Some(_) => Lock::Held,
        })
    }

    /// Extends the lock of `key` to `ttl` from now if `holder` still holds
    /// it; returns whether it does.
    pub(crate) async fn renew_lock(
        &self,
        key: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, L2Error> {
        let mut call = UNLOCK_SCRIPT.key(self.lock_key(key));
        call.arg(holder).arg("").arg(millis(ttl));
        self.invoke::<u8>("RENEW", &call).await.map(|n| n == 1)
    }

    /// Releases the lock of `key` if `holder` still holds it; `vacated`:
    /// leaves [`VACATED`] for a moment instead (the holder stored nothing).
    pub(crate) async fn unlock(
        &self,
        key: &str,
        holder: &str,
        vacated: bool,
    ) -> Result<(), L2Error> {
        let mut call = UNLOCK_SCRIPT.key(self.lock_key(key));
        call.arg(holder);
        if vacated {
            call.arg(VACATED).arg(millis(VACATED_FOR));
        } else {
            call.arg("").arg("");
        }
        self.invoke::<u8>("UNLOCK", &call).await.map(drop)
    }
}
