//! Internal: where a duration meets the clock.
//!
//! The crate's one rule (see "Durations" in the crate docs): a duration from
//! configuration or from the network is added to the clock with
//! [`deadline`], which saturates. A sum the clock cannot represent becomes
//! [`far_future`] from now (about 30 years): "never" for any process, and
//! still a deadline tokio's timer accepts. `Duration::MAX` therefore means
//! "no limit" wherever a builder takes a duration, and no value a server
//! sends (a `Retry-After` of any size) can panic the caller.

use std::time::Duration;

use tokio::time::Instant;

/// How far ahead "never" is: 30 years, as tokio's own far-future instant.
pub(crate) const NEVER: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `now + d`, or [`far_future`] from `now` when `d` is longer than
/// [`NEVER`] or the sum overflows the clock.
#[inline]
pub(crate) fn deadline(now: Instant, d: Duration) -> Instant {
    if d <= NEVER {
        if let Some(t) = now.checked_add(d) {
            return t;
        }
    }
    far_future(now)
}

/// An instant [`NEVER`] after `now` (or `now` itself on a clock so close to
/// its end that even that overflows).
#[inline]
pub(crate) fn far_future(now: Instant) -> Instant {
    now.checked_add(NEVER).unwrap_or(now)
}

/// `d`, capped at [`NEVER`]: for durations handed to `tokio::time::sleep`
/// or `timeout`, which add them to the clock themselves.
#[inline]
pub(crate) fn capped(d: Duration) -> Duration {
    d.min(NEVER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn short_durations_add_exactly() {
        let now = Instant::now();
        assert_eq!(
            deadline(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        assert_eq!(deadline(now, NEVER), now + NEVER);
    }

    #[tokio::test(start_paused = true)]
    async fn overlong_durations_saturate_to_never() {
        let now = Instant::now();
        assert_eq!(deadline(now, Duration::MAX), now + NEVER);
        assert_eq!(deadline(now, NEVER + Duration::from_nanos(1)), now + NEVER);
        assert_eq!(capped(Duration::MAX), NEVER);
        assert_eq!(capped(Duration::from_secs(1)), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn tokio_sleeps_until_never_without_panicking() {
        let now = Instant::now();
        let sleep = tokio::time::sleep_until(deadline(now, Duration::MAX));
        let raced = tokio::time::timeout(Duration::from_secs(3600), sleep).await;
        assert!(
            raced.is_err(),
            "a sleep until never does not end within an hour"
        );
    }
}
