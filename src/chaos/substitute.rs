//! What a [`ChaosLayer`](super::ChaosLayer) answers with when it
//! substitutes a response.

/// Makes the response a [`Chaos`](super::Chaos) service answers with, in
/// place of calling its inner service, when it substitutes one.
///
/// Implemented by every `Fn() -> Res` (so `|| Response::new(...)` or
/// `move || value.clone()`), and by [`NoSubstitute`], the layer's default,
/// which never substitutes.
pub trait Substitute<Res> {
    /// A new substituted response.
    fn substitute(&self) -> Res;
}

impl<F, Res> Substitute<Res> for F
where
    F: Fn() -> Res,
{
    #[inline]
    fn substitute(&self) -> Res {
        self()
    }
}

/// The default of [`ChaosLayer`](super::ChaosLayer): no substituted
/// response is configured, so the substitute rate stays 0 (the builder and
/// the handle refuse any other).
#[derive(Debug)]
pub enum NoSubstitute {}

impl<Res> Substitute<Res> for NoSubstitute {
    fn substitute(&self) -> Res {
        match *self {}
    }
}
