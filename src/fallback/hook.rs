//! [`OnFallback`]: sees the original failure of every call a fallback
//! answers.

/// Called with the original result of a call (the primary's error, or its
/// failed response) just before the fallback answers it: the place to log
/// or count what the caller will not see. Set with
/// [`FallbackLayerBuilder::on_fallback`](super::FallbackLayerBuilder::on_fallback).
///
/// Implemented by every `Fn(&Result<Res, E>)` and by `()`, which does
/// nothing (the default). It runs on the task that polls the call, so keep
/// it short.
pub trait OnFallback<Res, E> {
    /// Sees the failed result the fallback is about to replace.
    fn on_fallback(&self, failed: &Result<Res, E>);
}

impl<Res, E> OnFallback<Res, E> for () {
    #[inline]
    fn on_fallback(&self, _: &Result<Res, E>) {}
}

impl<F, Res, E> OnFallback<Res, E> for F
where
    F: Fn(&Result<Res, E>),
{
    fn on_fallback(&self, failed: &Result<Res, E>) {
        self(failed)
    }
}
