//! The error a limiter returns when it gives up on a caller.

pub use crate::rejection::Overloaded;
