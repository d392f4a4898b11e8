//! The module's errors: [`Elapsed`] (a deadline passed) and
//! [`InvalidGrpcTimeout`] (a `grpc-timeout` value that does not parse).

use std::fmt;

pub use crate::rejection::Elapsed;

/// A `grpc-timeout` value that is not 1 to 8 ASCII digits followed by a
/// unit (`H`, `M`, `S`, `m`, `u` or `n`).
///
/// Returned by [`parse_grpc_timeout`](super::parse_grpc_timeout). The
/// layers that read the header ignore a value that does not parse (the
/// call goes on without the caller's deadline) rather than fail the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidGrpcTimeout {
    pub(crate) reason: Reason,
}

/// What was wrong with the value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    /// Empty, or a unit without digits.
    NoDigits,
    /// More than 8 digits.
    TooManyDigits,
    /// Something other than a digit before the unit.
    NotADigit,
    /// The last character is not one of `H M S m u n`.
    BadUnit,
}

impl fmt::Display for InvalidGrpcTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.reason {
            Reason::NoDigits => "no digits",
            Reason::TooManyDigits => "more than 8 digits",
            Reason::NotADigit => "a character that is not a digit",
            Reason::BadUnit => "no valid unit",
        };
        write!(
            f,
            "invalid grpc-timeout ({what}): expected 1 to 8 digits and a unit, \
             one of H, M, S, m, u, n (such as \"250m\")"
        )
    }
}

impl std::error::Error for InvalidGrpcTimeout {}
