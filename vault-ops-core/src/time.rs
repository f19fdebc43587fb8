//! Time without a time crate: Vault's timestamps (RFC 3339 `created_time`, HTTP `Date`),
//! civil dates from day numbers, and bounded arithmetic on `SystemTime`.
//!
//!
//! Both parsers take any string a server or a state record can hold: they work on bytes (no
//! slicing inside a character), accept four-digit years only and compute with bounded values,
//! so they answer `None` for anything malformed and never panic. Times computed from them
//! ([`later`]) saturate at [`max_time`] instead of
//! overflowing.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// 9999-12-31T23:59:59Z in seconds since the Unix epoch: the latest time the parsers
/// accept and [`later`] returns.
pub const MAX_TIME_SECS: u64 = 253_402_300_799;

/// 9999-12-31T23:59:59Z (see [`MAX_TIME_SECS`]).
pub fn max_time() -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_secs(MAX_TIME_SECS))
        .unwrap_or(UNIX_EPOCH)
}

/// `t + d`, saturating at [`max_time`] (or `t`, when that is later still) instead of
/// overflowing: for due times and lease ends computed from recorded values.
pub fn later(t: SystemTime, d: Duration) -> SystemTime {
    let cap = max_time().max(t);
    match t.checked_add(d) {
        Some(x) if x <= cap => x,
        _ => cap,
    }
}

/// The value of the ASCII digits `b[range]`, `None` unless they are all digits (at most 9).
fn digits(b: &[u8], range: std::ops::Range<usize>) -> Option<u32> {
    let part = b.get(range)?;
    if part.is_empty() || part.len() > 9 {
        return None;
    }
    part.iter().try_fold(0u32, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => 31,
    }
}

/// Seconds since the epoch of a checked civil date and time (`None` before 1970).
fn epoch_secs(
    (year, month, day): (u32, u32, u32),
    (hour, minute, second): (u32, u32, u32),
    offset_secs: i64,
) -> Option<u64> {
    if !(1..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    // Four-digit years keep every term far from i64's limits.
    let days = days_from_civil(i64::from(year), month, day);
    let secs = days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second)
        - offset_secs;
    u64::try_from(secs)
        .ok()
        .filter(|s| *s <= MAX_TIME_SECS + 86_400)
}

/// Parses an RFC 3339 timestamp such as `2026-11-28T17:49:16.065273436Z` (or with a
/// `+hh:mm` offset). `None` for malformed input or times before 1970.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.trim().as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let date = (digits(b, 0..4)?, digits(b, 5..7)?, digits(b, 8..10)?);
    let time = (digits(b, 11..13)?, digits(b, 14..16)?, digits(b, 17..19)?);
    let mut rest = &b[19..];
    let mut nanos: u32 = 0;
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        // Nanoseconds: the first nine digits, padded with zeros; more are ignored.
        for k in 0..9 {
            let digit = frac.get(k).filter(|_| k < n).map_or(0, |c| c - b'0');
            nanos = nanos * 10 + u32::from(digit);
        }
        rest = &frac[n..];
    }
    let offset_secs: i64 = match rest {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let h = digits(rest, 1..3)?;
            let m = digits(rest, 4..6)?;
            if h > 23 || m > 59 {
                return None;
            }
            let v = i64::from(h) * 3600 + i64::from(m) * 60;
            if *sign == b'-' {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    let secs = epoch_secs(date, time, offset_secs)?;
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

/// Formats a time as RFC 3339 in UTC with nanoseconds (trailing zeros trimmed), like Vault.
pub fn format_rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let (y, m, day) = civil_from_days(days);
    let mut out = format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    );
    let nanos = d.subsec_nanos();
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Parses an HTTP date (`Sat, 28 Nov 2026 17:49:16 GMT`, RFC 9110 IMF-fixdate).
pub fn parse_http_date(s: &str) -> Option<SystemTime> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| m == month)? + 1;
    let (day, year, time) = (day.as_bytes(), year.as_bytes(), time.as_bytes());
    if !(1..=2).contains(&day.len()) || year.len() != 4 || time.len() != 8 {
        return None;
    }
    if time[2] != b':' || time[5] != b':' {
        return None;
    }
    let date = (
        digits(year, 0..4)?,
        u32::try_from(month).ok()?,
        digits(day, 0..day.len())?,
    );
    let hms = (
        digits(time, 0..2)?,
        digits(time, 3..5)?,
        digits(time, 6..8)?,
    );
    let secs = epoch_secs(date, hms, 0)?;
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm); the caller
/// keeps `y` within four digits.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month 1-12, day 1-31) of a day number since 1970-01-01, proleptic Gregorian
/// (H. Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        let t = parse_rfc3339("2026-11-28T17:49:16.065273436Z").unwrap();
        let d = t.duration_since(UNIX_EPOCH).unwrap();
        assert_eq!(d.as_secs(), 1_795_888_156);
        assert_eq!(d.subsec_nanos(), 65_273_436);
        assert_eq!(format_rfc3339(t), "2026-11-28T17:49:16.065273436Z");
        assert_eq!(format_rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let leap = parse_rfc3339("2024-02-29T23:59:59Z").unwrap();
        assert_eq!(format_rfc3339(leap), "2024-02-29T23:59:59Z");
        assert_eq!(
            parse_rfc3339("2026-11-28T18:49:16+01:00"),
            parse_rfc3339("2026-11-28T17:49:16Z")
        );
    }

    #[test]
    fn rfc3339_rejects_garbage() {
        for bad in [
            "",
            "2026-11-28",
            "2026-13-01T00:00:00Z",
            "2026-11-28T17:49:16",
            "2026-11-28T17:49:16.Z",
            "x026-11-28T17:49:16Z",
            "1969-12-31T23:59:59Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn http_date() {
        let t = parse_http_date("Sat, 28 Nov 2026 17:49:16 GMT").unwrap();
        assert_eq!(Some(t), parse_rfc3339("2026-11-28T17:49:16Z"));
        assert_eq!(parse_http_date("Sat, 28 Foo 2026 17:49:16 GMT"), None);
        assert_eq!(parse_http_date("yesterday"), None);
    }

    /// Values a tampered record or a misbehaving server can hold: a multi-byte character
    /// where the offset's colon belongs (this sliced inside a character and panicked), a
    /// year of 13 digits in a `Date` header (this overflowed), impossible dates.
    #[test]
    fn hostile_values_are_rejected_without_panicking() {
        for bad in [
            "2026-01-01T00:00:00+0é00",
            "2026-01-01T00:00:00+é:00",
            "2026-01-01T00:00:00.é",
            "2026-01-01T00:00:00.1é",
            "2026-01-01T00:00:00+01:0é",
            "2026-01-01T00:00:00+24:00",
            "2026-02-30T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "+026-01-01T00:00:00Z",
            "0000-01-01T00:00:00Z",
            "é026-01-01T00:00:00Z",
            "2026-01-01T00:00:00ZZ",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        for bad in [
            "Sat, 28 Nov 1234567890123 17:49:16 GMT",
            "Sat, 28 Nov 9223372036854775807 17:49:16 GMT",
            "Sat, 28 Nov -2026 17:49:16 GMT",
            "Sat, 28 Nov +026 17:49:16 GMT",
            "Sat, 31 Feb 2026 17:49:16 GMT",
            "Sat, 999 Nov 2026 17:49:16 GMT",
            "Sat, 28 Nov 2026 17:49:1é GMT",
            "Sat, 28 Nov 2026 99:99:99 GMT",
            "Sat, 28 Nov 2026 1:2:3456 GMT",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad}");
        }
        assert!(parse_rfc3339("9999-12-31T23:59:59.999999999Z").is_some());
        assert!(parse_rfc3339("2024-02-29T00:00:00-23:59").is_some());
    }

    #[test]
    fn later_saturates() {
        let t = parse_rfc3339("2026-01-01T00:00:00Z").unwrap();
        assert_eq!(later(t, Duration::MAX), max_time());
        assert_eq!(format_rfc3339(max_time()), "9999-12-31T23:59:59Z");
        assert_eq!(
            later(t, Duration::from_secs(60)),
            parse_rfc3339("2026-01-01T00:01:00Z").unwrap()
        );
    }

    proptest::proptest! {
        #[test]
        fn rfc3339_never_panics(s in "\\PC*") {
            let _ = parse_rfc3339(&s);
        }

        #[test]
        fn rfc3339_near_misses_never_panic(
            s in "[0-9é+]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9é]{0,12})?([Zz]|[+-][0-9é:]{0,6}|\\PC{0,4})"
        ) {
            if let Some(t) = parse_rfc3339(&s) {
                // Whatever parses formats and parses back to the same instant.
                proptest::prop_assert_eq!(parse_rfc3339(&format_rfc3339(t)), Some(t));
            }
        }

        #[test]
        fn http_date_never_panics(s in "\\PC*") {
            let _ = parse_http_date(&s);
        }

        #[test]
        fn http_date_near_misses_never_panic(
            s in "[A-Za-z]{3}, [0-9é]{1,3} (Jan|Feb|Nov|Foo) [-+0-9é]{1,22} [0-9:é]{1,10} GMT"
        ) {
            if let Some(t) = parse_http_date(&s) {
                proptest::prop_assert!(t <= max_time());
            }
        }

        #[test]
        fn format_then_parse_round_trips(secs in 0..=MAX_TIME_SECS, nanos in 0u32..1_000_000_000) {
            let t = UNIX_EPOCH + Duration::new(secs, nanos);
            proptest::prop_assert_eq!(parse_rfc3339(&format_rfc3339(t)), Some(t));
        }
    }
}
