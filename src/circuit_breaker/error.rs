//! The error an open breaker fails calls with.
//!
//! [`Open`] is defined with the crate's other fast-fail rejections (so the
//! classifiers can recognise it without importing this module) and is
//! re-exported here, its public home.

pub use crate::rejection::Open;
