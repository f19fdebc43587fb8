//! When a secret rotates ([`Schedule`]: a period, or a cron expression in **UTC** with an
//! optional window) and when the scheduler stops trying ([`RotationPolicy`]).
//!
//! Cron expressions have Vault's five fields — minute, hour, day of month, month, day of week —
//! and are always read in UTC: there is no time zone and no daylight-saving change, so a slot
//! is never skipped or run twice. Each field takes `*`, a value, a range `a-b`, a step `*/n`,
//! `a-b/n` or `a/n`, and comma lists of those; months and days of the week also take their
//! three-letter English names (`JAN`, `MON`), and day of week 7 is Sunday like 0. As in Vault
//! (and classic cron), when both day of month and day of week are restricted a day matching
//! **either** one is a slot. A sixth, leading seconds field is accepted as an extension (for
//! tests and short slots); with five fields the seconds are 0.
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! use vault_ops_rotation::schedule::CronSchedule;
//!
//! let nightly = CronSchedule::parse("30 3 * * *").unwrap(); // 03:30 UTC every day
//! let t = UNIX_EPOCH + Duration::from_secs(0); // 1970-01-01T00:00:00Z
//! assert_eq!(nightly.next_after(t), Some(UNIX_EPOCH + Duration::from_secs(3 * 3600 + 1800)));
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The longest expression [`CronSchedule::parse`] reads.
pub const MAX_CRON_LEN: usize = 256;

/// How far [`CronSchedule::next_after`] and [`CronSchedule::prev_at_or_before`] search: 400
/// years, one full cycle of the Gregorian calendar (so `0 0 29 2 1` is found).
const SEARCH_DAYS: i64 = 146_097;

/// Why a cron expression cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cron expression: {0}")]
pub struct CronError(String);

/// A parsed cron expression, read in UTC (see the [module docs](self)).
#[derive(Clone, PartialEq, Eq)]
pub struct CronSchedule {
    text: String,
    seconds: u64,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    day_star: bool,
    weekday_star: bool,
}

impl std::fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CronSchedule").field(&self.text).finish()
    }
}

impl std::fmt::Display for CronSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl CronSchedule {
    /// Parses five fields (minute hour day-of-month month day-of-week), or six with a leading
    /// seconds field. Fails on anything else, and on an expression that has no slot at all
    /// (`0 0 31 2 *`).
    pub fn parse(expr: &str) -> Result<Self, CronError> {
        if expr.len() > MAX_CRON_LEN {
            return Err(CronError(format!("longer than {MAX_CRON_LEN} characters")));
        }
        let fields: Vec<&str> = expr.split_whitespace().collect();
        let (sec, rest) = match fields.len() {
            5 => ("0", &fields[..]),
            6 => (fields[0], &fields[1..]),
            n => {
                return Err(CronError(format!(
                    "{n} fields; expected 5 (minute hour day-of-month month day-of-week)"
                )))
            }
        };
        let seconds = parse_field(sec, "second", 0, 59, &[])?;
        let minutes = parse_field(rest[0], "minute", 0, 59, &[])?;
        let hours = parse_field(rest[1], "hour", 0, 23, &[])?;
        let days = parse_field(rest[2], "day of month", 1, 31, &[])?;
        let months = parse_field(rest[3], "month", 1, 12, &MONTHS)?;
        let mut weekdays = parse_field(rest[4], "day of week", 0, 7, &WEEKDAYS)?;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays | 1) & !(1 << 7);
        }
        let schedule = CronSchedule {
            text: fields.join(" "),
            seconds,
            minutes,
            hours,
            days,
            months,
            weekdays,
            day_star: is_star(rest[2]),
            weekday_star: is_star(rest[4]),
        };
        if schedule.next_after(UNIX_EPOCH).is_none() {
            return Err(CronError(format!(
                "{:?} never matches a date",
                schedule.text
            )));
        }
        Ok(schedule)
    }

    /// The expression, fields separated by single spaces.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn day_matches(&self, day: i64) -> bool {
        let (_, month, dom) = vault_ops_core::time::civil_from_days(day);
        if self.months & (1 << month) == 0 {
            return false;
        }
        let dom_ok = self.days & (1 << dom) != 0;
        let dow_ok = self.weekdays & (1 << weekday(day)) != 0;
        match (self.day_star, self.weekday_star) {
            (true, true) => true,
            (true, false) => dow_ok,
            (false, true) => dom_ok,
            (false, false) => dom_ok || dow_ok,
        }
    }

    /// The first slot strictly after `t` (`None` past the search range of 400 years).
    pub fn next_after(&self, t: SystemTime) -> Option<SystemTime> {
        let start = unix_secs(t).checked_add(1)?;
        let first_day = start.div_euclid(86_400);
        for day in first_day..first_day + SEARCH_DAYS {
            if !self.day_matches(day) {
                continue;
            }
            let from = if day == first_day {
                start.rem_euclid(86_400) as u32
            } else {
                0
            };
            if let Some(sod) = self.next_time_of_day(from) {
                return from_unix(day * 86_400 + i64::from(sod));
            }
        }
        None
    }

    /// The last slot at or before `t` (`None` before the search range of 400 years).
    pub fn prev_at_or_before(&self, t: SystemTime) -> Option<SystemTime> {
        let end = unix_secs(t);
        let last_day = end.div_euclid(86_400);
        for day in (last_day - SEARCH_DAYS..=last_day).rev() {
            if !self.day_matches(day) {
                continue;
            }
            let upto = if day == last_day {
                end.rem_euclid(86_400) as u32
            } else {
                86_399
            };
            if let Some(sod) = self.prev_time_of_day(upto) {
                return from_unix(day * 86_400 + i64::from(sod));
            }
        }
        None
    }

    /// The smallest matching second of the day at or after `from`.
    fn next_time_of_day(&self, from: u32) -> Option<u32> {
        let (h0, m0, s0) = (from / 3600, from / 60 % 60, from % 60);
        for h in h0..24 {
            if self.hours & (1 << h) == 0 {
                continue;
            }
            let m_from = if h == h0 { m0 } else { 0 };
            for m in m_from..60 {
                if self.minutes & (1 << m) == 0 {
                    continue;
                }
                let s_from = if h == h0 && m == m0 { s0 } else { 0 };
                if let Some(s) = (s_from..60).find(|s| self.seconds & (1 << s) != 0) {
                    return Some(h * 3600 + m * 60 + s);
                }
            }
        }
        None
    }

    /// The largest matching second of the day at or before `upto`.
    fn prev_time_of_day(&self, upto: u32) -> Option<u32> {
        let (h0, m0, s0) = (upto / 3600, upto / 60 % 60, upto % 60);
        for h in (0..=h0).rev() {
            if self.hours & (1 << h) == 0 {
                continue;
            }
            let m_to = if h == h0 { m0 } else { 59 };
            for m in (0..=m_to).rev() {
                if self.minutes & (1 << m) == 0 {
                    continue;
                }
                let s_to = if h == h0 && m == m0 { s0 } else { 59 };
                if let Some(s) = (0..=s_to).rev().find(|s| self.seconds & (1 << s) != 0) {
                    return Some(h * 3600 + m * 60 + s);
                }
            }
        }
        None
    }
}

impl std::str::FromStr for CronSchedule {
    type Err = CronError;
    fn from_str(s: &str) -> Result<Self, CronError> {
        CronSchedule::parse(s)
    }
}

fn is_star(field: &str) -> bool {
    field == "*" || field == "?"
}

fn parse_value(s: &str, what: &str, min: u32, max: u32, names: &[&str]) -> Result<u32, CronError> {
    if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
        // Month names start at 1, weekday names at 0.
        return Ok(i as u32 + min);
    }
    match s.parse::<u32>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(CronError(format!(
            "{what}: {s:?} is not a number from {min} to {max}"
        ))),
    }
}

fn parse_field(
    field: &str,
    what: &str,
    min: u32,
    max: u32,
    names: &[&str],
) -> Result<u64, CronError> {
    let mut mask = 0u64;
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => match s.parse::<u32>() {
                Ok(n) if (1..=max.max(1)).contains(&n) => (r, n),
                _ => return Err(CronError(format!("{what}: step {s:?} is not usable"))),
            },
            None => (part, 1),
        };
        let (lo, hi) = if is_star(range) {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            let a = parse_value(a, what, min, max, names)?;
            let b = parse_value(b, what, min, max, names)?;
            if a > b {
                return Err(CronError(format!("{what}: range {range:?} is backwards")));
            }
            (a, b)
        } else {
            let a = parse_value(range, what, min, max, names)?;
            // `a/n` runs from a to the end of the field.
            (a, if part.contains('/') { max } else { a })
        };
        let mut v = lo;
        while v <= hi {
            mask |= 1 << v;
            v += step;
        }
    }
    Ok(mask)
}

fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2),
        // Before 1970: round towards the past.
        Err(e) => {
            let d = e.duration();
            let s = i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2);
            -s - i64::from(d.subsec_nanos() > 0)
        }
    }
}

fn from_unix(secs: i64) -> Option<SystemTime> {
    if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(secs as u64))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))
    }
}

/// 0 = Sunday.
fn weekday(day: i64) -> u32 {
    // 1970-01-01 was a Thursday.
    (day + 4).rem_euclid(7) as u32
}

/// When a secret rotates.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Schedule {
    /// Every period, counted from the last rotation (Vault's `rotation_period`).
    Every(Duration),
    /// At every slot of a cron expression in UTC (Vault's `rotation_schedule`); with a window
    /// (Vault's `rotation_window`) a rotation must *start* within that long after its slot,
    /// else it waits for the next slot.
    Cron {
        /// The expression.
        cron: CronSchedule,
        /// How long after a slot a rotation may still start (`None`: any time until the next
        /// slot).
        window: Option<Duration>,
    },
}

impl Schedule {
    /// Every `every`.
    pub fn every(every: Duration) -> Self {
        Schedule::Every(every)
    }

    /// At the slots of `expr` (UTC), with no window.
    pub fn cron(expr: &str) -> Result<Self, CronError> {
        Ok(Schedule::Cron {
            cron: CronSchedule::parse(expr)?,
            window: None,
        })
    }

    /// Sets the window of a cron schedule (no effect on a period).
    pub fn window(self, window: Duration) -> Self {
        match self {
            Schedule::Cron { cron, .. } => Schedule::Cron {
                cron,
                window: Some(window),
            },
            other => other,
        }
    }

    /// The period, for [`Schedule::Every`].
    pub fn period(&self) -> Option<Duration> {
        match self {
            Schedule::Every(d) => Some(*d),
            Schedule::Cron { .. } => None,
        }
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Schedule::Every(d) => write!(f, "every {}s", d.as_secs_f64()),
            Schedule::Cron { cron, window: None } => write!(f, "cron {cron} UTC"),
            Schedule::Cron {
                cron,
                window: Some(w),
            } => write!(f, "cron {cron} UTC, window {}s", w.as_secs_f64()),
        }
    }
}

/// What a cron schedule says at `now` for a credential last rotated at `last_rotated`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CronDecision {
    /// A slot has passed since the last rotation and its window is open: rotate now. The
    /// slot is given.
    Due(SystemTime),
    /// Nothing to do until the next slot (given, when there is one). `missed` is the slot whose
    /// window closed before a rotation started, if that is why.
    Wait {
        /// The next slot.
        next: Option<SystemTime>,
        /// A slot whose window passed without a rotation.
        missed: Option<SystemTime>,
    },
}

/// The cron decision: due when the latest slot at or before `now` is later than the last
/// rotation (or there was none) and `now` is within `window` of it.
pub fn cron_decision(
    cron: &CronSchedule,
    window: Option<Duration>,
    last_rotated: Option<SystemTime>,
    now: SystemTime,
) -> CronDecision {
    let next = cron.next_after(now);
    let Some(slot) = cron.prev_at_or_before(now) else {
        return CronDecision::Wait { next, missed: None };
    };
    if last_rotated.is_some_and(|t| t >= slot) {
        return CronDecision::Wait { next, missed: None };
    }
    match window {
        Some(w) if now.duration_since(slot).unwrap_or_default() > w => CronDecision::Wait {
            next,
            missed: Some(slot),
        },
        _ => CronDecision::Due(slot),
    }
}

/// When the scheduler stops trying: failed attempts back off exponentially, and after
/// [`max_attempts`](Self::max_attempts) failures in a row (counted in the state record in
/// Vault, over all replicas) the secret is **held** (Vault's "orphaned"): no automatic attempt
/// until [`SchedulerHandle::resume`](crate::SchedulerHandle::resume) or a successful manual
/// rotation clears it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RotationPolicy {
    /// Failed attempts in a row before the secret is held (at least 1; default 5).
    pub max_attempts: u32,
    /// The first backoff (default 2 s); it doubles per failure.
    pub backoff_initial: Duration,
    /// The longest backoff (default 5 minutes).
    pub backoff_max: Duration,
}

impl Default for RotationPolicy {
    fn default() -> Self {
        RotationPolicy {
            max_attempts: 5,
            backoff_initial: Duration::from_secs(2),
            backoff_max: Duration::from_secs(5 * 60),
        }
    }
}

impl RotationPolicy {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`max_attempts`](Self::max_attempts) (0 is taken as 1).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// Sets the backoff bounds (`max` at least `initial`).
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff_initial = initial;
        self.backoff_max = max.max(initial);
        self
    }

    /// The backoff after the `failures`-th failure in a row (1: `backoff_initial`).
    pub fn backoff_for(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(20));
        self.backoff_initial
            .saturating_mul(factor)
            .min(self.backoff_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> SystemTime {
        // Inverse of civil_from_days by search (tests only; small range).
        let mut day = (y - 1970) * 365 + (y - 1969) / 4 - 2;
        while vault_ops_core::time::civil_from_days(day) != (y, mo, d) {
            day += 1;
        }
        from_unix(day * 86_400 + i64::from(h * 3600 + mi * 60 + s)).unwrap()
    }

    #[test]
    fn parses_and_rejects() {
        for ok in [
            "* * * * *",
            "0 3 * * *",
            "*/15 0-6,22 1,15 JAN-mar mon-fri",
            "5/10 * * * 7",
            "*/2 * * * * *",
        ] {
            CronSchedule::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "",
            "* * * *",
            "* * * * * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 8",
            "*/0 * * * *",
            "5-1 * * * *",
            "a * * * *",
            "0 0 31 2 *",
            "1,,2 * * * *",
        ] {
            assert!(CronSchedule::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(CronSchedule::parse(&"1,".repeat(200)).is_err());
    }

    #[test]
    fn next_and_previous_slots_in_utc() {
        let c = CronSchedule::parse("30 3 * * *").unwrap();
        let t = at(2024, 3, 10, 3, 30, 0);
        assert_eq!(c.next_after(t), Some(at(2024, 3, 11, 3, 30, 0)));
        assert_eq!(c.prev_at_or_before(t), Some(t));
        assert_eq!(
            c.prev_at_or_before(t - Duration::from_secs(1)),
            Some(at(2024, 3, 9, 3, 30, 0))
        );
        // Leap day, and the end of a year.
        let feb29 = CronSchedule::parse("0 12 29 2 *").unwrap();
        assert_eq!(
            feb29.next_after(at(2024, 3, 1, 0, 0, 0)),
            Some(at(2028, 2, 29, 12, 0, 0))
        );
        let newyear = CronSchedule::parse("0 0 1 1 *").unwrap();
        assert_eq!(
            newyear.next_after(at(2024, 12, 31, 23, 59, 59)),
            Some(at(2025, 1, 1, 0, 0, 0))
        );
        // Day of month OR day of week when both are restricted; AND-free when one is `*`.
        let either = CronSchedule::parse("0 0 13 * FRI").unwrap();
        // 2024-09-01 is a Sunday; Friday the 6th comes before the 13th.
        assert_eq!(
            either.next_after(at(2024, 9, 1, 0, 0, 0)),
            Some(at(2024, 9, 6, 0, 0, 0))
        );
        let sunday = CronSchedule::parse("0 0 * * 7").unwrap();
        assert_eq!(
            sunday.next_after(at(2024, 9, 2, 0, 0, 0)),
            Some(at(2024, 9, 8, 0, 0, 0))
        );
        // Seconds extension.
        let every5s = CronSchedule::parse("*/5 * * * * *").unwrap();
        assert_eq!(
            every5s.next_after(at(2024, 1, 1, 0, 0, 3)),
            Some(at(2024, 1, 1, 0, 0, 5))
        );
        assert_eq!(
            every5s.prev_at_or_before(at(2024, 1, 1, 0, 0, 4)),
            Some(at(2024, 1, 1, 0, 0, 0))
        );
    }

    #[test]
    fn decisions_with_and_without_a_window() {
        let c = CronSchedule::parse("0 * * * *").unwrap();
        let slot = at(2024, 5, 1, 10, 0, 0);
        let now = slot + Duration::from_secs(600);
        assert_eq!(cron_decision(&c, None, None, now), CronDecision::Due(slot));
        assert_eq!(
            cron_decision(&c, None, Some(slot - Duration::from_secs(1)), now),
            CronDecision::Due(slot)
        );
        let next = Some(at(2024, 5, 1, 11, 0, 0));
        assert_eq!(
            cron_decision(&c, None, Some(slot + Duration::from_secs(1)), now),
            CronDecision::Wait { next, missed: None }
        );
        assert_eq!(
            cron_decision(&c, Some(Duration::from_secs(300)), None, now),
            CronDecision::Wait {
                next,
                missed: Some(slot)
            }
        );
        assert_eq!(
            cron_decision(&c, Some(Duration::from_secs(900)), None, now),
            CronDecision::Due(slot)
        );
    }

    /// `next_after` / `prev_at_or_before` agree with a minute-by-minute scan.
    #[test]
    fn slot_search_matches_a_naive_scan() {
        let start = at(2024, 2, 27, 22, 0, 0);
        for expr in [
            "*/7 * * * *",
            "0 0,12 * * *",
            "59 23 * * *",
            "15 10 1,29 * TUE",
            "0 6-8/2 * FEB,MAR *",
            "30 * 28-31 * *",
        ] {
            let c = CronSchedule::parse(expr).unwrap();
            let matches = |t: i64| {
                let day = t.div_euclid(86_400);
                let sod = t.rem_euclid(86_400) as u32;
                c.day_matches(day) && c.next_time_of_day(sod) == Some(sod)
            };
            let base = unix_secs(start);
            let slots: Vec<i64> = (0..4 * 1440)
                .map(|m| base + m * 60)
                .filter(|t| matches(*t))
                .collect();
            assert!(!slots.is_empty(), "{expr}");
            for w in slots.windows(2) {
                let (a, b) = (from_unix(w[0]).unwrap(), from_unix(w[1]).unwrap());
                assert_eq!(c.next_after(a), Some(b), "{expr}: after {}", w[0]);
                assert_eq!(
                    c.prev_at_or_before(b - Duration::from_secs(1)),
                    Some(a),
                    "{expr}: before {}",
                    w[1]
                );
                assert_eq!(c.prev_at_or_before(b), Some(b), "{expr}");
            }
        }
    }

    proptest::proptest! {
        /// Any text: an error or a schedule, never a panic; a schedule's slots are ordered.
        #[test]
        fn parse_never_panics(expr in "[0-9*/,A-Za-z -]{0,40}", t in 0u64..4_000_000_000) {
            if let Ok(c) = CronSchedule::parse(&expr) {
                let t = UNIX_EPOCH + Duration::from_secs(t);
                if let Some(n) = c.next_after(t) {
                    proptest::prop_assert!(n > t);
                    proptest::prop_assert_eq!(c.prev_at_or_before(n), Some(n));
                }
                if let Some(p) = c.prev_at_or_before(t) {
                    proptest::prop_assert!(p <= t);
                }
            }
        }
    }

    #[test]
    fn policy_backs_off_exponentially_within_bounds() {
        let p = RotationPolicy::new().backoff(Duration::from_secs(1), Duration::from_secs(10));
        let b: Vec<u64> = (1..=6).map(|n| p.backoff_for(n).as_secs()).collect();
        assert_eq!(b, [1, 2, 4, 8, 10, 10]);
        assert_eq!(RotationPolicy::new().max_attempts(0).max_attempts, 1);
    }
}
