//! A cache that stands in for the global one while a future or closure
//! runs: see `Cache::scope`.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use crate::Cache;

thread_local! {
    static CURRENT: RefCell<Option<Cache>> = const { RefCell::new(None) };
}

/// Set once any scope was entered: until then, and in a service that never
/// uses scopes, a lookup skips the thread-local.
static EVER_SCOPED: AtomicBool = AtomicBool::new(false);

/// The cache of the innermost scope on this thread, if any.
#[inline]
pub(crate) fn current() -> Option<Cache> {
    if !EVER_SCOPED.load(Ordering::Relaxed) {
        return None;
    }
    CURRENT.with(|c| c.borrow().clone())
}

/// Restores the outer scope on drop, also when `f` panics.
struct Restore(Option<Cache>);

impl Drop for Restore {
    fn drop(&mut self) {
        let outer = self.0.take();
        CURRENT.with(|c| *c.borrow_mut() = outer);
    }
}

pub(crate) fn enter<R>(cache: Cache, f: impl FnOnce() -> R) -> R {
    // Program order makes this thread's later lookups see it; other
    // threads have no scope of their own to find.
    if !EVER_SCOPED.load(Ordering::Relaxed) {
        EVER_SCOPED.store(true, Ordering::Relaxed);
    }
    let outer = CURRENT.with(|c| c.borrow_mut().replace(cache));
    let _restore = Restore(outer);
    f()
}

pin_project_lite::pin_project! {
    pub(crate) struct Scoped<F> {
        cache: Cache,
        #[pin]
        future: F,
    }
}

impl<F> Scoped<F> {
    pub(crate) fn new(cache: Cache, future: F) -> Self {
        Scoped { cache, future }
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let cache = this.cache.clone();
        let future = this.future;
        enter(cache, || future.poll(cx))
    }
}
