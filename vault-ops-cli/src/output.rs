//! Output: tables or JSON on stdout, logs on stderr, and the formatting rules that keep
//! output readable (times as dates, durations in words, numbers rounded, no `Some(..)`).

use std::io::{IsTerminal, Write};

use clap::ValueEnum;
use serde_json::Value;

/// How results are printed (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned `Key  Value` tables, like the `vault` CLI.
    Table,
    /// Pretty-printed JSON.
    Json,
}

/// How logs are written to stderr (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Sets up logging to stderr. Colour codes only when stderr is a terminal and `NO_COLOR` is
/// unset. A bad `level` falls back to `warn` (and says so).
pub fn init_logging(format: LogFormat, level: &str) {
    let (filter, bad) = match tracing_subscriber::EnvFilter::try_new(level) {
        Ok(f) => (f, false),
        Err(_) => (tracing_subscriber::EnvFilter::new("warn"), true),
    };
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.with_ansi(ansi).try_init(),
    };
    if bad {
        tracing::warn!(level, "invalid --log-level; using warn");
    }
}

/// Prints results in the chosen [`Format`].
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// The format.
    pub format: Format,
}

impl Output {
    /// `true` for `--format json`.
    pub fn json(&self) -> bool {
        self.format == Format::Json
    }

    /// Prints `value` as pretty JSON.
    pub fn print_json(&self, value: &Value) {
        println_out(&serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".into()));
    }

    /// Prints `Key  Value` rows (table), or `json` (JSON).
    pub fn key_values(&self, rows: &[(&str, String)], json: &Value) {
        if self.json() {
            self.print_json(json);
        } else {
            println_out(&table(
                &["Key", "Value"],
                rows.iter().map(|(k, v)| vec![k.to_string(), v.clone()]),
            ));
        }
    }

    /// Prints rows under `headers` (table), or `json` (JSON).
    pub fn rows(&self, headers: &[&str], rows: Vec<Vec<String>>, json: &Value) {
        if self.json() {
            self.print_json(json);
        } else {
            println_out(&table(headers, rows.into_iter()));
        }
    }

    /// Prints a one-line confirmation (table), or `json` (JSON).
    pub fn done(&self, message: &str, json: &Value) {
        if self.json() {
            self.print_json(json);
        } else {
            println_out(message);
        }
    }
}

/// Writes a line to stdout, ignoring a closed pipe (`vault-ops ... | head`).
pub fn println_out(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
}

/// An aligned text table: a header row, a rule, then the rows.
pub fn table(headers: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let rows: Vec<Vec<String>> = rows.collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| -> String {
        let n = cells.len();
        cells
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                if i + 1 == n {
                    c
                } else {
                    format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0))
                }
            })
            .collect::<Vec<_>>()
            .join("    ")
            .trim_end()
            .to_string()
    };
    let mut out = vec![
        line(headers.iter().map(|h| h.to_string()).collect()),
        line(widths.iter().map(|w| "-".repeat(*w)).collect()),
    ];
    out.extend(rows.into_iter().map(line));
    out.join("\n")
}

/// A JSON value as table text: strings as they are, numbers rounded, arrays joined, objects
/// as compact JSON, `null` as `-`.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) => number_text(f),
            _ => n.to_string(),
        },
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(value_text).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::Object(_) => serde_json::to_string(v).unwrap_or_default(),
    }
}

/// A float rounded to at most two decimals; `-` for NaN and infinities.
pub fn number_text(f: f64) -> String {
    if !f.is_finite() {
        return "-".into();
    }
    let r = (f * 100.0).round() / 100.0;
    if r.fract() == 0.0 && r.abs() < 1e15 {
        format!("{}", r as i64)
    } else {
        format!("{r:.2}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

/// A number of seconds in words (`1h 2m 5s`); fractions below ten seconds keep one decimal.
pub fn duration_text(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "-".into();
    }
    if seconds < 1.0 && seconds > 0.0 {
        return format!("{} ms", number_text((seconds * 1000.0).round()));
    }
    if seconds < 10.0 && seconds.fract() != 0.0 {
        return format!("{}s", number_text((seconds * 10.0).round() / 10.0));
    }
    vault_ops_core::api::sys::human_duration(seconds.round() as i64)
}

/// How a rotation ended, in words (for `rotate`, the scheduler and the example programs).
pub fn rotation_status_text(s: vault_ops_rotation::RotationStatus) -> &'static str {
    match s {
        vault_ops_rotation::RotationStatus::Success => "rotated",
        vault_ops_rotation::RotationStatus::SkippedNotDue => {
            "not due (or just rotated by another replica)"
        }
        vault_ops_rotation::RotationStatus::RolledBack => {
            "rolled back: the new credential failed verification; the old one works"
        }
        vault_ops_rotation::RotationStatus::Failed => "failed: the credential in Vault still works",
        vault_ops_rotation::RotationStatus::Conflict => {
            "CONFLICT: changed outside the rotation; nothing was overwritten"
        }
        _ => "unknown",
    }
}

/// A TTL: `never` for 0 (tokens that do not expire), else [`duration_text`].
pub fn ttl_text(seconds: i64) -> String {
    if seconds <= 0 {
        "never".into()
    } else {
        duration_text(seconds as f64)
    }
}

/// A unix time (seconds) as `YYYY-MM-DD HH:MM:SS UTC`; `-` for 0 or out of range.
pub fn unix_date(secs: i64) -> String {
    if secs <= 0 || secs > 253_402_300_799 {
        return "-".into();
    }
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = vault_ops_core::time::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// An RFC 3339 time from Vault (`2025-01-01T02:00:00.123456789Z`) as
/// `2025-01-01 02:00:00 UTC`; empty and Go's zero time (`0001-01-01...`) as `-`; anything
/// else unchanged.
pub fn rfc3339_date(s: &str) -> String {
    let s = s.trim();
    if s.is_empty() || s.starts_with("0001-01-01") {
        return "-".into();
    }
    let b = s.as_bytes();
    let shaped = b.len() >= 19
        && b[4] == b'-'
        && b[7] == b'-'
        && (b[10] == b'T' || b[10] == b' ')
        && b[13] == b':'
        && b[16] == b':';
    if !shaped || !s.is_char_boundary(19) {
        return s.to_string();
    }
    let zone = &s[19..];
    let zone = zone.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    let zone = if zone == "Z" || zone.is_empty() {
        "UTC"
    } else {
        zone
    };
    format!("{} {} {zone}", &s[..10], &s[11..19])
}

/// Bytes in binary units (`1.5 MiB`).
pub fn bytes_text(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{} {}", number_text((v * 10.0).round() / 10.0), UNITS[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_numbers() {
        assert_eq!(unix_date(0), "-");
        assert_eq!(unix_date(1_735_696_800), "2025-01-01 02:00:00 UTC");
        assert_eq!(unix_date(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(
            rfc3339_date("2025-01-01T02:00:00.123456789Z"),
            "2025-01-01 02:00:00 UTC"
        );
        assert_eq!(rfc3339_date("0001-01-01T00:00:00Z"), "-");
        assert_eq!(rfc3339_date("soon"), "soon");
        assert_eq!(
            rfc3339_date("2025-01-01T02:00:00+02:00"),
            "2025-01-01 02:00:00 +02:00"
        );
        assert_eq!(number_text(f64::NAN), "-");
        assert_eq!(number_text(1.0 / 3.0), "0.33");
        assert_eq!(number_text(2.0), "2");
        assert_eq!(duration_text(3725.0), "1h 2m 5s");
        assert_eq!(duration_text(1.25), "1.3s");
        assert_eq!(duration_text(0.0123), "12 ms");
        assert_eq!(ttl_text(0), "never");
        assert_eq!(bytes_text(1536), "1.5 KiB");
        assert_eq!(bytes_text(12), "12 B");
        assert_eq!(value_text(&serde_json::json!(null)), "-");
        assert_eq!(value_text(&serde_json::json!(0.1234)), "0.12");
        assert_eq!(value_text(&serde_json::json!(["a", 1])), "[a, 1]");
    }

    #[test]
    fn tables_align() {
        let t = table(
            &["Key", "Value"],
            vec![
                vec!["a".into(), "1".into()],
                vec!["long".into(), "2".into()],
            ]
            .into_iter(),
        );
        assert_eq!(t, "Key     Value\n----    -----\na       1\nlong    2");
    }
}
