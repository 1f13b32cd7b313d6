//! What a cached function returns, and what of it is stored.

/// A return type of a cached function: `T` (through [`Plain`]),
/// `Option<T>` or `Result<T, E>`.
pub trait Outcome: Sized {
    /// What is stored and shared with waiters.
    type Value: Clone + Send + Sync + 'static;

    /// Splits a fresh outcome into what to store or share.
    fn split(self, cache_none: bool) -> Split<Self>;

    /// Rebuilds the outcome from a stored value.
    fn from_value(value: Self::Value) -> Self;
}

/// What becomes of an origin's outcome.
pub enum Split<O: Outcome> {
    /// Store it and give it to the waiters.
    Store(O::Value),
    /// Give it to the waiters, store nothing (`None` without `none = true`).
    Share(O::Value),
    /// Return it to the caller only (`Err`); the waiters try again.
    Keep(O),
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
            Err(e) => Split::Keep(Err(e)),
        }
    }

    #[inline]
    fn from_value(value: T) -> Self {
        Ok(value)
    }
}
