//! What a cached function returns, and what of it is stored.

use std::any::Any;
use std::sync::Arc;

/// An origin's error, type-erased, to hand to the callers that waited on
/// the same call.
pub type SharedError = Arc<dyn Any + Send + Sync>;

/// A return type of a cached function: `T` (through [`Plain`]),
/// `Option<T>` or `Result<T, E>`.
pub trait Outcome: Sized {
    /// What is stored and shared with waiters.
    type Value: Clone + Send + Sync + 'static;

    /// Splits a fresh outcome into what to store or share.
    fn split(self, cache_none: bool) -> Split<Self>;

    /// Rebuilds the outcome from a stored value.
    fn from_value(value: Self::Value) -> Self;

    /// Whether this outcome is the origin's failure (an `Err`).
    fn is_failure(&self) -> bool {
        false
    }

    /// Rebuilds a failed outcome from the error another caller's call
    /// shared, when this kind of outcome shares its errors.
    fn from_error(_error: &SharedError) -> Option<Self> {
        None
    }
}

/// What becomes of an origin's outcome.
pub enum Split<O: Outcome> {
    /// Store it and give it to the waiters.
    Store(O::Value),
    /// Give it to the waiters, store nothing (`None` without `none = true`).
    Share(O::Value),
    /// Return it to the caller only (`Err`), with the error to give the
    /// waiters when it can be shared; without one, each waiter calls the
    /// origin itself.
    Fail(O, Option<SharedError>),
}

/// A plain return type `T`.
#[derive(Clone, Debug)]
pub struct Plain<T>(pub T);

impl<T: Clone + Send + Sync + 'static> Outcome for Plain<T> {
    type Value = T;

    #[inline]
    fn split(self, _cache_none: bool) -> Split<Self> {
        Split::Store(self.0)
    }

    #[inline]
    fn from_value(value: T) -> Self {
        Plain(value)
    }
}

impl<T: Clone + Send + Sync + 'static> Outcome for Option<T> {
    type Value = Option<T>;

    #[inline]
    fn split(self, cache_none: bool) -> Split<Self> {
        if self.is_some() || cache_none {
            Split::Store(self)
        } else {
            Split::Share(None)
        }
    }

    #[inline]
    fn from_value(value: Option<T>) -> Self {
        value
    }
}

impl<T: Clone + Send + Sync + 'static, E> Outcome for Result<T, E> {
    type Value = T;

    #[inline]
    fn split(self, _cache_none: bool) -> Split<Self> {
        match self {
            Ok(v) => Split::Store(v),
            Err(e) => Split::Fail(Err(e), None),
        }
    }

    #[inline]
    fn from_value(value: T) -> Self {
        Ok(value)
    }

    fn is_failure(&self) -> bool {
        self.is_err()
    }
}

/// A `Result` whose error is `Clone`: callers waiting on a failed call get
/// a clone of its error instead of calling the origin themselves.
#[derive(Clone, Debug)]
pub struct SharedErr<T, E>(pub Result<T, E>);

impl<T, E> Outcome for SharedErr<T, E>
where
    T: Clone + Send + Sync + 'static,
    E: Clone + Send + Sync + 'static,
{
    type Value = T;

    #[inline]
    fn split(self, _cache_none: bool) -> Split<Self> {
        match self.0 {
            Ok(v) => Split::Store(v),
            Err(e) => {
                // Shared as the whole `Result<T, E>`: a waiter whose function
                // has another value type (a key shared by two functions)
                // cannot take it, and calls its own origin.
                let shared: SharedError = Arc::new(Err::<T, E>(e.clone()));
                Split::Fail(SharedErr(Err(e)), Some(shared))
            }
        }
    }

    #[inline]
    fn from_value(value: T) -> Self {
        SharedErr(Ok(value))
    }

    fn is_failure(&self) -> bool {
        self.0.is_err()
    }

    fn from_error(error: &SharedError) -> Option<Self> {
        match error.downcast_ref::<Result<T, E>>()? {
            Err(e) => Some(SharedErr(Err(e.clone()))),
            Ok(_) => None,
        }
    }
}

/// What a `#[cached]` function may return as its value (`T` of
/// `Result<T, E>` and of `Option<T>`, or the return type itself): a value
/// the cache keeps and hands a copy of to every caller, on any thread, so
/// `Clone + Send + Sync + 'static`. Every such type is one.
///
/// ```
/// fn cached_value<V: cache_runtime::CachedValue>() {}
/// cached_value::<String>();
/// cached_value::<std::sync::Arc<std::sync::Mutex<Vec<u8>>>>();
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a cached value: a `#[cached]` function's value must be `Clone + Send + Sync + 'static`",
    label = "the cached value, `{Self}`, is not `Clone + Send + Sync + 'static`",
    note = "the cache hands a clone of the value to every caller, on any thread: derive `Clone` on it, and replace what is not `Send` or `Sync` (`Rc` by `Arc`, `Cell`/`RefCell` by an atomic or a `Mutex`); or return `Arc<T>` of a `Send + Sync` `T`",
    note = "for `Result<T, E>` and `Option<T>` the value is `T`"
)]
pub trait CachedValue: Clone + Send + Sync + 'static {}

#[diagnostic::do_not_recommend]
impl<T: Clone + Send + Sync + 'static> CachedValue for T {}
