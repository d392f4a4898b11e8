//! HTTP dates, read and written: the `Date`, `Expires` and
//! `Last-Modified` of every response the cache sees, and the dates it
//! shows `http-cache-semantics`.
//!
//! Servers send IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`); it is read
//! here without allocating. The two obsolete forms go to `httpdate`, and
//! the tests hold the fast reading to `httpdate`'s on every date it
//! accepts or refuses.

use std::time::{Duration, SystemTime};

use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::parse::{delta_seconds, DELTA_MAX};

/// Day names from the epoch's (1970-01-01 was a Thursday).
const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// An HTTP date in any of its three forms (IMF-fixdate, RFC 850, asctime),
/// from a field that has exactly one line.
pub(crate) fn single_date(
    headers: &HeaderMap,
    name: &HeaderName,
) -> Result<Option<SystemTime>, ()> {
    let mut all = headers.get_all(name).iter();
    let Some(first) = all.next() else {
        return Ok(None);
    };
    if all.next().is_some() {
        return Err(());
    }
    let s = first.to_str().map_err(|_| ())?.trim();
    if let Some(t) = imf_fixdate(s.as_bytes()) {
        return Ok(Some(t));
    }
    httpdate::parse_http_date(s).map(Some).map_err(|_| ())
}

/// A response's age on arrival at `received` in seconds (RFC 9111
/// §4.2.3): its `Age` field (one non-negative integer, else very old), at
/// least its apparent age (`received` less its `Date`, if valid).
pub(crate) fn arrival_age(raw: &HeaderMap, date: Option<SystemTime>, received: SystemTime) -> u64 {
    let mut ages = raw.get_all(http::header::AGE).iter();
    let age = match (ages.next(), ages.next()) {
        (None, _) => Some(0),
        (Some(v), None) => v.to_str().ok().and_then(delta_seconds),
        _ => None,
    }
    .unwrap_or(DELTA_MAX);
    let apparent = date.map_or(0, |d| since(received, d).as_secs());
    age.max(apparent)
}

/// A date as `http-cache-semantics` reads it (RFC 2822 with a numeric
/// zone): `Thu, 01 Jan 1970 00:00:00 +0000`. Written byte by byte, as
/// every stored response has one or more.
pub(crate) fn date_value(t: SystemTime) -> HeaderValue {
    // Dates before 1970 are clamped to it (HTTP dates before then are
    // long expired either way); after 9999 to its last second.
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .min(253_402_300_799);
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);

    let mut b = *b"Thu, 01 Jan 1970 00:00:00 +0000";
    b[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    let two = |b: &mut [u8], v: u64| {
        b[0] = b'0' + (v / 10) as u8;
        b[1] = b'0' + (v % 10) as u8;
    };
    two(&mut b[5..7], day);
    b[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    two(&mut b[12..14], year / 100);
    two(&mut b[14..16], year % 100);
    two(&mut b[17..19], rem / 3_600);
    two(&mut b[20..22], rem / 60 % 60);
    two(&mut b[23..25], rem % 60);
    HeaderValue::from_bytes(&b).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// Saturating `SystemTime` difference.
pub(crate) fn since(later: SystemTime, earlier: SystemTime) -> Duration {
    later.duration_since(earlier).unwrap_or_default()
}

/// An IMF-fixdate in `s`, exactly as `httpdate` reads one (1970 to 9999,
/// a real day of the month, the weekday that date had); `None` for
/// anything else, which the caller hands to `httpdate`.
fn imf_fixdate(s: &[u8]) -> Option<SystemTime> {
    if s.len() != 29
        || &s[3..5] != b", "
        || s[7] != b' '
        || s[11] != b' '
        || s[16] != b' '
        || s[19] != b':'
        || s[22] != b':'
        || &s[25..] != b" GMT"
    {
        return None;
    }
    let two = |i: usize| {
        let (hi, lo) = (s[i].wrapping_sub(b'0'), s[i + 1].wrapping_sub(b'0'));
        (hi < 10 && lo < 10).then_some(u64::from(hi) * 10 + u64::from(lo))
    };
    let (day, hour, min, sec) = (two(5)?, two(17)?, two(20)?, two(23)?);
    let year = two(12)? * 100 + two(14)?;
    let month = MONTHS.iter().position(|m| **m == [s[8], s[9], s[10]])? as u64 + 1;
    let weekday = DAYS.iter().position(|d| **d == [s[0], s[1], s[2]])? as u64;
    if !(1970..=9999).contains(&year) || hour > 23 || min > 59 || sec > 59 || day == 0 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    // A day past the month's end lands in the next month.
    if civil_from_days(days) != (year, month, day) || days % 7 != weekday {
        return None;
    }
    let secs = days * 86_400 + hour * 3_600 + min * 60 + sec;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// Days from 1970-01-01 to a date of 1970 or later (the proleptic
/// Gregorian calendar, counted in 400-year eras from 0000-03-01).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date (year, month, day) `days` after 1970-01-01.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + u64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_in_every_form_and_multiple_lines_are_invalid() {
        let mut h = HeaderMap::new();
        h.insert(
            "expires",
            HeaderValue::from_static("Sunday, 06-Nov-94 08:49:37 GMT"),
        );
        assert!(single_date(&h, &http::header::EXPIRES).unwrap().is_some());
        h.append(
            "expires",
            HeaderValue::from_static("Sun Nov  6 08:49:37 1994"),
        );
        assert!(single_date(&h, &http::header::EXPIRES).is_err());
        assert_eq!(
            date_value(SystemTime::UNIX_EPOCH),
            "Thu, 01 Jan 1970 00:00:00 +0000"
        );
    }

    #[test]
    fn dates_are_written_as_the_policy_reads_them() {
        // Every day of several years (leap days, century rules) and the
        // clamps, against httpdate's own IMF-fixdate with the zone swapped.
        let day = Duration::from_secs(86_400);
        let mut t = SystemTime::UNIX_EPOCH + Duration::from_secs(37_230);
        for _ in 0..(366 * 3) {
            let want = httpdate::fmt_http_date(t).replace("GMT", "+0000");
            assert_eq!(date_value(t), want.as_str());
            t += day;
        }
        for secs in [951_782_399u64, 951_868_799, 4_107_542_400, 1_798_761_599] {
            let t = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
            let want = httpdate::fmt_http_date(t).replace("GMT", "+0000");
            assert_eq!(date_value(t), want.as_str());
        }
        let before = SystemTime::UNIX_EPOCH - Duration::from_secs(10);
        assert_eq!(date_value(before), "Thu, 01 Jan 1970 00:00:00 +0000");
    }

    /// What `httpdate` makes of `s`, the reference for [`single_date`].
    fn reference(s: &str) -> Option<SystemTime> {
        httpdate::parse_http_date(s).ok()
    }

    #[test]
    fn imf_fixdates_read_as_httpdate_reads_them() {
        // Every day from 1970 to 2100 at a moving time of day, and the
        // range's ends.
        let mut secs = 0u64;
        while secs < 4_102_444_800 {
            let t = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
            let s = httpdate::fmt_http_date(t);
            assert_eq!(imf_fixdate(s.as_bytes()), Some(t), "{s}");
            secs += 86_400 + 3_607;
        }
        for s in [
            "Thu, 01 Jan 1970 00:00:00 GMT",
            "Fri, 31 Dec 9999 23:59:59 GMT",
        ] {
            assert!(imf_fixdate(s.as_bytes()).is_some());
            assert_eq!(imf_fixdate(s.as_bytes()), reference(s), "{s}");
        }
    }

    #[test]
    fn a_date_read_fast_is_one_httpdate_accepts() {
        // Every one-byte change of a few dates, and dates just outside the
        // calendar: whatever the fast reading accepts, httpdate reads the
        // same; whatever it refuses goes to httpdate, so it is never
        // worse.
        let bases = [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Tue, 29 Feb 2000 23:59:59 GMT",
            "Wed, 31 Dec 1969 23:59:59 GMT",
            "Thu, 29 Feb 2001 12:00:00 GMT",
            "Sat, 31 Apr 2026 00:00:00 GMT",
            "Mon, 06 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:60:00 GMT",
            "Sun, 06 Nov 1994 08:49:60 GMT",
            "Sun, 00 Nov 1994 08:49:37 GMT",
        ];
        let subs = b"0123456789 ,:-ADGMNSTadgmnstuxyz\x7f";
        let mut accepted = 0;
        for base in bases {
            let bytes = base.as_bytes();
            for i in 0..=bytes.len() {
                for &c in subs.iter() {
                    let mut m = bytes.to_vec();
                    if i < m.len() {
                        m[i] = c;
                    } else {
                        m.push(c);
                    }
                    let Ok(s) = std::str::from_utf8(&m) else {
                        continue;
                    };
                    if let Some(t) = imf_fixdate(m.as_slice()) {
                        accepted += 1;
                        assert_eq!(reference(s), Some(t), "{s}");
                    }
                }
            }
            assert_eq!(imf_fixdate(bytes), reference(base), "{base}");
        }
        assert!(accepted > 100, "the mutations left {accepted} valid dates");
    }

    #[test]
    fn every_form_reads_through_single_date() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        for s in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "  Sun, 06 Nov 1994 08:49:37 GMT ",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            let mut h = HeaderMap::new();
            h.insert("date", HeaderValue::from_static(s));
            assert_eq!(single_date(&h, &http::header::DATE), Ok(Some(t)), "{s}");
        }
        let mut h = HeaderMap::new();
        h.insert(
            "date",
            HeaderValue::from_static("Mon, 06 Nov 1994 08:49:37 GMT"),
        );
        assert_eq!(single_date(&h, &http::header::DATE), Err(()));
    }
}
