//! What the in-process tier stores for a key.

use std::any::Any;
use std::sync::Arc;

use crate::clock::Ticks;

/// A type-erased value with its deadlines. Cloning it is one reference
/// count increment.
#[derive(Clone)]
pub(crate) struct Entry {
    pub(crate) value: Arc<dyn Any + Send + Sync>,
    /// Fresh before this instant.
    pub(crate) fresh_until: Ticks,
    /// Servable as stale (while one caller refreshes) before this instant.
    pub(crate) stale_until: Ticks,
    /// Estimated bytes, for the byte bound of the tier.
    pub(crate) weight: u32,
}

/// Fixed cost of an entry beyond its key and value: the map slot, the
/// reference-counted box, the deadlines.
const ENTRY_OVERHEAD: usize = 96;

impl Entry {
    pub(crate) fn weight_of<V>(key: &str) -> u32 {
        let bytes = key.len() + std::mem::size_of::<V>() + ENTRY_OVERHEAD;
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }
}
