//! The `grpc-timeout` header: gRPC's way to send a deadline to the server,
//! as the time left ("TimeoutValue TimeoutUnit": at most 8 digits, then
//! `H` hours, `M` minutes, `S` seconds, `m` milliseconds, `u`
//! microseconds or `n` nanoseconds).

use std::time::Duration;

use http::header::{HeaderName, HeaderValue};

use super::error::{InvalidGrpcTimeout, Reason};

/// The `grpc-timeout` header name.
pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// The largest value gRPC allows: 8 digits.
const MAX_VALUE: u64 = 99_999_999;

/// Units from the finest, with their length in nanoseconds.
const UNITS: [(u8, u64); 6] = [
    (b'n', 1),
    (b'u', 1_000),
    (b'm', 1_000_000),
    (b'S', 1_000_000_000),
    (b'M', 60 * 1_000_000_000),
    (b'H', 3_600 * 1_000_000_000),
];

/// Parses a `grpc-timeout` value (`"250m"`, `"3S"`, `"1H"`) into the
/// time it allows.
///
/// Accepts exactly what gRPC specifies: 1 to 8 ASCII digits, then one unit
/// character. Never panics; the largest value, `99999999H`, is about
/// 11 000 years, which the crate's duration rule turns into "never" when
/// it is added to the clock.
///
/// ```
/// use std::time::Duration;
/// use tower_patterns::deadline::parse_grpc_timeout;
///
/// assert_eq!(parse_grpc_timeout("250m"), Ok(Duration::from_millis(250)));
/// assert_eq!(parse_grpc_timeout("1H"), Ok(Duration::from_secs(3600)));
/// assert!(parse_grpc_timeout("123456789S").is_err()); // 9 digits
/// assert!(parse_grpc_timeout("5s").is_err()); // seconds are `S`
/// assert!(parse_grpc_timeout("-1S").is_err());
/// ```
///
/// # Errors
///
/// [`InvalidGrpcTimeout`] for anything else (empty, no digits, more than 8
/// digits, a sign or space, an unknown unit).
pub fn parse_grpc_timeout(value: impl AsRef<[u8]>) -> Result<Duration, InvalidGrpcTimeout> {
    let bytes = value.as_ref();
    let err = |reason| Err(InvalidGrpcTimeout { reason });
    let Some((&unit, digits)) = bytes.split_last() else {
        return err(Reason::NoDigits);
    };
    let Some(&(_, unit_ns)) = UNITS.iter().find(|(u, _)| *u == unit) else {
        return err(Reason::BadUnit);
    };
    if digits.is_empty() {
        return err(Reason::NoDigits);
    }
    if digits.len() > 8 {
        return err(Reason::TooManyDigits);
    }
    let mut n: u64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return err(Reason::NotADigit);
        }
        n = n * 10 + u64::from(b - b'0');
    }
    // At most 99 999 999 x 3.6e12 ns: fits in u128, and in a Duration.
    let nanos = u128::from(n) * u128::from(unit_ns);
    Ok(Duration::new(
        (nanos / 1_000_000_000) as u64,
        (nanos % 1_000_000_000) as u32,
    ))
}

/// Formats `timeout` as a `grpc-timeout` value that never allows more
/// than `timeout`: the finest unit whose value fits in 8 digits, rounded
/// down. Exact up to about 100 ms (in nanoseconds); beyond, in
/// microseconds up to 100 s, milliseconds up to 27 hours, and so on, less
/// than a 100 000th of the value is lost. A timeout beyond the largest
/// value (about 11 000 years) saturates to `99999999H`.
///
/// ```
/// use std::time::Duration;
/// use tower_patterns::deadline::format_grpc_timeout;
///
/// assert_eq!(format_grpc_timeout(Duration::from_millis(250)), "250000u");
/// assert_eq!(format_grpc_timeout(Duration::from_secs(3600)), "3600000m");
/// assert_eq!(format_grpc_timeout(Duration::ZERO), "0n");
/// assert_eq!(format_grpc_timeout(Duration::MAX), "99999999H");
/// ```
pub fn format_grpc_timeout(timeout: Duration) -> HeaderValue {
    let nanos = timeout.as_nanos();
    let (value, unit) = UNITS
        .iter()
        .map(|&(unit, unit_ns)| (nanos / u128::from(unit_ns), unit))
        .find(|&(value, _)| value <= u128::from(MAX_VALUE))
        .map_or((MAX_VALUE, b'H'), |(value, unit)| (value as u64, unit));
    let mut text = value.to_string().into_bytes();
    text.push(unit);
    HeaderValue::from_bytes(&text).expect("digits and a letter are a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_parses() {
        let cases = [
            ("7n", Duration::from_nanos(7)),
            ("7u", Duration::from_micros(7)),
            ("7m", Duration::from_millis(7)),
            ("7S", Duration::from_secs(7)),
            ("7M", Duration::from_secs(7 * 60)),
            ("7H", Duration::from_secs(7 * 3600)),
            ("00000000S", Duration::ZERO),
            ("99999999H", Duration::from_secs(99_999_999 * 3600)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_grpc_timeout(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn bad_values_are_errors() {
        for bad in [
            "",
            "S",
            "1",
            "1s",
            "1 S",
            " 1S",
            "+1S",
            "-1S",
            "1.5S",
            "123456789n",
            "1SS",
            "١S",
        ] {
            assert!(parse_grpc_timeout(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn formats_in_the_finest_unit_that_fits() {
        let f = |d| format_grpc_timeout(d).to_str().unwrap().to_owned();
        assert_eq!(f(Duration::from_nanos(99_999_999)), "99999999n");
        assert_eq!(f(Duration::from_nanos(100_000_001)), "100000u");
        assert_eq!(f(Duration::from_secs(100)), "100000m");
        assert_eq!(f(Duration::from_secs(200_000)), "200000S");
        assert_eq!(f(Duration::from_secs(100_000_000)), "1666666M");
        assert_eq!(f(Duration::from_secs(u64::MAX)), "99999999H");
    }
}
