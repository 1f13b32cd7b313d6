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
