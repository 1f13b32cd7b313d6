//! What a batch-loading `#[cached(batch = "..")]` function takes and
//! returns: a collection of ids ([`BatchIds`]) and its values by id
//! ([`BatchReturn`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::hash::{BuildHasher, Hash};

/// The ids a batch-loading function is called with: `Vec<Id>`, `&[Id]`,
/// `&Vec<Id>`, `VecDeque<Id>`, `HashSet<Id>` or `BTreeSet<Id>` (owned or
/// borrowed). The function's body sees the same type, holding only the
/// ids no tier had.
///
/// ```
/// use cache_runtime::BatchIds;
/// assert_eq!([3u64, 1].as_slice().into_ids(), vec![3, 1]);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a collection of ids that a batch function can take",
    label = "the parameter named by `batch = \"..\"`",
    note = "take the ids as `Vec<Id>`, `&[Id]`, `&Vec<Id>`, `VecDeque<Id>`, `HashSet<Id>` or `BTreeSet<Id>` (owned or borrowed)"
)]
pub trait BatchIds {
    /// One id.
    type Id;
    /// What holds the ids when the function's body is called: the type
    /// itself, or what a borrowed one borrows (`Vec<Id>` for `&[Id]`).
    type Owned: FromIterator<Self::Id>;
    /// The ids, in order.
    fn into_ids(self) -> Vec<Self::Id>;
    /// The collection holding `ids`.
    fn from_ids(ids: Vec<Self::Id>) -> Self::Owned {
        ids.into_iter().collect()
    }
}

impl<K: Clone> BatchIds for &[K] {
    type Id = K;
    type Owned = Vec<K>;
    fn into_ids(self) -> Vec<K> {
        self.to_vec()
    }
}

/// `BatchIds` for an owned collection and a borrowed one, generic over
/// `[..]`.
macro_rules! batch_ids {
    ($([$($generics:tt)*] $owned:ty, $borrowed:ty;)*) => {$(
        impl<$($generics)*> BatchIds for $owned {
            type Id = K;
            type Owned = Self;
            fn into_ids(self) -> Vec<K> {
                self.into_iter().collect()
            }
        }
        impl<$($generics)*> BatchIds for $borrowed
        where
            K: Clone,
        {
            type Id = K;
            type Owned = $owned;
            fn into_ids(self) -> Vec<K> {
                self.iter().cloned().collect()
            }
        }
    )*};
}

batch_ids! {
    [K] Vec<K>, &Vec<K>;
    [K] VecDeque<K>, &VecDeque<K>;
    [K: Eq + Hash, S: BuildHasher + Default] HashSet<K, S>, &HashSet<K, S>;
    [K: Ord] BTreeSet<K>, &BTreeSet<K>;
}

/// What a batch-loading function returns: its values by id, as a
/// `HashMap<Id, V>`, a `BTreeMap<Id, V>` or a `Vec<(Id, V)>`, or a
/// `Result` of one (an `Err` is returned, never stored). Each value is
/// stored under its id's key as `Option<V>`, so a single-id function
/// returning `Option<V>` (or `Result<Option<V>, E>`) with the same key
/// shares the entries.
///
/// ```
/// use std::collections::HashMap;
/// use cache_runtime::BatchReturn;
/// let found: Result<HashMap<u64, String>, ()> = Ok(HashMap::from([(1, "a".into())]));
/// assert_eq!(found.into_pairs(), Ok(vec![(1, "a".to_string())]));
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be what a batch function returns",
    label = "a batch function returns its values by id",
    note = "return a `HashMap<Id, V>`, a `BTreeMap<Id, V>` or a `Vec<(Id, V)>`, or a `Result` of one"
)]
pub trait BatchReturn: Sized {
    /// One id.
    type Id;
    /// One id's value.
    type Value;
    /// The error of a `Result` ([`Infallible`] for a plain map).
    type Error;
    /// The values by id, or the error.
    #[allow(clippy::type_complexity)] // spelled out for the reader
    fn into_pairs(self) -> Result<Vec<(Self::Id, Self::Value)>, Self::Error>;
    /// The answer made of these values.
    fn from_pairs(pairs: Vec<(Self::Id, Self::Value)>) -> Self;
    /// The answer that is this error.
    fn from_error(error: Self::Error) -> Self;
}

/// `BatchReturn` for a collection of pairs, generic over `[..]`.
macro_rules! batch_return {
    ($([$($generics:tt)*] $ty:ty;)*) => {$(
        impl<$($generics)*> BatchReturn for $ty {
            type Id = K;
            type Value = V;
            type Error = Infallible;
            fn into_pairs(self) -> Result<Vec<(K, V)>, Infallible> {
                Ok(self.into_iter().collect())
            }
            fn from_pairs(pairs: Vec<(K, V)>) -> Self {
                pairs.into_iter().collect()
            }
            fn from_error(error: Infallible) -> Self {
                match error {}
            }
        }
    )*};
}

batch_return! {
    [K, V] Vec<(K, V)>;
    [K: Eq + Hash, V, S: BuildHasher + Default] HashMap<K, V, S>;
    [K: Ord, V] BTreeMap<K, V>;
}

impl<M: BatchReturn<Error = Infallible>, E> BatchReturn for Result<M, E> {
    type Id = M::Id;
    type Value = M::Value;
    type Error = E;
    fn into_pairs(self) -> Result<Vec<(M::Id, M::Value)>, E> {
        self.map(|map| map.into_pairs().unwrap_or_else(|never| match never {}))
    }
    fn from_pairs(pairs: Vec<(M::Id, M::Value)>) -> Self {
        Ok(M::from_pairs(pairs))
    }
    fn from_error(error: E) -> Self {
        Err(error)
    }
}
