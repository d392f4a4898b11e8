//! The error a rate limit returns when a call is over its quota.

pub use crate::rejection::RateLimited;
