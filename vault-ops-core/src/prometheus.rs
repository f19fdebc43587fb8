//! The Prometheus text exposition format (0.0.4): a parser with no IO, for `sys/metrics`
//! ([`Sys::metrics`](crate::api::sys::Sys::metrics)) and any other Prometheus text.
//!
//! [`Metrics::parse`] is strict: the first malformed line is a [`MetricsParseError`] naming the
//! line number and what is wrong. [`Metrics::parse_lenient`] skips malformed lines instead,
//! counts them ([`Metrics::skipped_lines`]) and keeps the first
//! [`MAX_KEPT_ISSUES`] errors ([`Metrics::parse_issues`]); `Sys::metrics` uses the lenient
//! parser, so one odd line from a newer server does not hide every other number. Neither parser
//! panics on any input.
//!
//! Understood: `# HELP` (with `\\` and `\n` escapes) and `# TYPE` lines, other comments
//! (ignored), blank lines, label values with `\"`, `\\` and `\n` escapes and any UTF-8, a
//! trailing comma in the label set, the values `NaN`, `+Inf`, `-Inf` (and every float Rust
//! parses), and an optional integer timestamp in milliseconds.
//!
//! The types are re-exported as [`api::metrics`](crate::api::metrics).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// One sample: a metric name, its labels and its value.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Sample {
    /// The sample's name as written, e.g. `vault_core_handle_request_count`.
    pub name: String,
    /// The labels (unescaped values).
    pub labels: BTreeMap<String, String>,
    /// The value (may be NaN or infinite).
    pub value: f64,
    /// The timestamp in milliseconds since the Unix epoch, when the line had one.
    pub timestamp_ms: Option<i64>,
}

impl Sample {
    /// The value of label `name`, if the sample has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }

    /// `true` when the sample has every `(name, value)` label given.
    pub fn has_labels(&self, labels: &[(&str, &str)]) -> bool {
        labels.iter().all(|(k, v)| self.label(k) == Some(*v))
    }
}

/// A metric type from a `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricType {
    /// `counter`.
    Counter,
    /// `gauge`.
    Gauge,
    /// `histogram`: `_bucket{le=...}`, `_sum` and `_count` samples.
    Histogram,
    /// `summary`: `{quantile=...}`, `_sum` and `_count` samples.
    Summary,
    /// `untyped`.
    Untyped,
}

impl MetricType {
    fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "summary" => MetricType::Summary,
            "untyped" => MetricType::Untyped,
            _ => return None,
        })
    }
}

impl fmt::Display for MetricType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::Summary => "summary",
            MetricType::Untyped => "untyped",
        })
    }
}

/// What the `# HELP` and `# TYPE` lines say about a metric family.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricFamily {
    /// The family name (for histograms and summaries, without `_bucket`, `_sum`, `_count`).
    pub name: String,
    /// The type, when a `# TYPE` line gave one.
    pub metric_type: Option<MetricType>,
    /// The help text (unescaped), when a `# HELP` line gave one.
    pub help: Option<String>,
}

/// One histogram bucket: the cumulative count of observations `<= le`.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Bucket {
    /// The upper bound (`+Inf` for the last bucket).
    pub le: f64,
    /// The cumulative count.
    pub count: f64,
}

/// A malformed line in Prometheus text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Prometheus text, line {line}: {message}")]
#[non_exhaustive]
pub struct MetricsParseError {
    /// The line number, from 1.
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

/// How many parse errors [`Metrics::parse_lenient`] keeps (it counts all of them).
pub const MAX_KEPT_ISSUES: usize = 100;

/// Parsed Prometheus text: every sample in order, plus the `# HELP` / `# TYPE` information.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    samples: Vec<Sample>,
    families: BTreeMap<String, MetricFamily>,
    skipped: usize,
    issues: Vec<MetricsParseError>,
}

impl FromStr for Metrics {
    type Err = MetricsParseError;

    /// Strict parsing, as [`Metrics::parse`].
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Metrics::parse(s)
    }
}

impl Metrics {
    /// Parses Prometheus text strictly: the first malformed line is an error.
    pub fn parse(text: &str) -> std::result::Result<Metrics, MetricsParseError> {
        let mut m = Metrics::default();
        for (i, line) in text.split('\n').enumerate() {
            m.add_line(line).map_err(|message| MetricsParseError {
                line: i + 1,
                message,
            })?;
        }
        Ok(m)
    }

    /// Parses Prometheus text, skipping malformed lines: they are counted in
    /// [`skipped_lines`](Self::skipped_lines) and the first [`MAX_KEPT_ISSUES`] are kept in
    /// [`parse_issues`](Self::parse_issues).
    pub fn parse_lenient(text: &str) -> Metrics {
        let mut m = Metrics::default();
        for (i, line) in text.split('\n').enumerate() {
            if let Err(message) = m.add_line(line) {
                m.skipped += 1;
                if m.issues.len() < MAX_KEPT_ISSUES {
                    m.issues.push(MetricsParseError {
                        line: i + 1,
                        message,
                    });
                }
            }
        }
        m
    }

    fn add_line(&mut self, line: &str) -> std::result::Result<(), String> {
        match parse_line(line)? {
            Line::Empty => Ok(()),
            Line::Help { name, text } => {
                let fam = self.family_entry(name);
                if fam.help.is_some() {
                    return Err(format!("a second HELP line for {name}"));
                }
                fam.help = Some(text);
                Ok(())
            }
            Line::Type { name, kind } => {
                let fam = self.family_entry(name);
                if fam.metric_type.is_some() {
                    return Err(format!("a second TYPE line for {name}"));
                }
                fam.metric_type = Some(kind);
                Ok(())
            }
            Line::Sample(s) => {
                self.samples.push(s);
                Ok(())
            }
        }
    }

    fn family_entry(&mut self, name: &str) -> &mut MetricFamily {
        self.families
            .entry(name.to_string())
            .or_insert_with(|| MetricFamily {
                name: name.to_string(),
                metric_type: None,
                help: None,
            })
    }

    /// Every sample, in the order of the text.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// The number of samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// `true` when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// How many lines [`parse_lenient`](Self::parse_lenient) skipped as malformed (0 after
    /// [`parse`](Self::parse)).
    pub fn skipped_lines(&self) -> usize {
        self.skipped
    }

    /// The errors of the skipped lines (at most [`MAX_KEPT_ISSUES`]).
    pub fn parse_issues(&self) -> &[MetricsParseError] {
        &self.issues
    }

    /// The distinct sample names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.samples.iter().map(|s| s.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// The samples named exactly `name` (every label set).
    pub fn get<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.name == name)
    }

    /// The first sample named `name` that has every `(label, value)` given.
    pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<&Sample> {
        self.samples
            .iter()
            .find(|s| s.name == name && s.has_labels(labels))
    }

    /// The value of the first sample named `name` that has every `(label, value)` given
    /// (`&[]` matches any labels).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.find(name, labels).map(|s| s.value)
    }

    /// The value of the first sample named `name`.
    pub fn first(&self, name: &str) -> Option<f64> {
        self.get(name).next().map(|s| s.value)
    }

    /// The sum over every sample named `name` (all label sets); `None` when there is none.
    pub fn sum(&self, name: &str) -> Option<f64> {
        self.get(name)
            .map(|s| s.value)
            .fold(None, |acc, v| Some(acc.unwrap_or(0.0) + v))
    }

    /// The largest value among the samples named `name`, ignoring NaN; `None` when there is
    /// no sample that is a number.
    pub fn max(&self, name: &str) -> Option<f64> {
        self.get(name)
            .map(|s| s.value)
            .filter(|v| !v.is_nan())
            .fold(None, |acc: Option<f64>, v| {
                Some(acc.map_or(v, |a| a.max(v)))
            })
    }

    /// A summary's quantile: the first sample named `name` whose `quantile` label is `q`
    /// (compared as numbers, so `0.5` matches `quantile="0.50"`).
    pub fn quantile(&self, name: &str, q: f64) -> Option<f64> {
        self.get(name)
            .find(|s| {
                s.label("quantile")
                    .and_then(parse_float)
                    .is_some_and(|v| (v - q).abs() <= 1e-9)
            })
            .map(|s| s.value)
    }

    /// A histogram's buckets: the `{name}_bucket` samples that have every `(label, value)`
    /// given, as `(le, count)` sorted by `le`. Samples without a numeric `le` are left out.
    pub fn buckets(&self, name: &str, labels: &[(&str, &str)]) -> Vec<Bucket> {
        let bucket_name = format!("{name}_bucket");
        let mut out: Vec<Bucket> = self
            .get(&bucket_name)
            .filter(|s| s.has_labels(labels))
            .filter_map(|s| {
                let le = s.label("le").and_then(parse_float)?;
                Some(Bucket { le, count: s.value })
            })
            .collect();
        out.sort_by(|a, b| a.le.total_cmp(&b.le));
        out
    }

    /// What `# HELP` / `# TYPE` said about `name`, which may be a family name or a sample name
    /// of one (`x_bucket`, `x_sum` and `x_count` of a histogram `x`; `x_sum`, `x_count` of a
    /// summary `x`).
    pub fn family(&self, name: &str) -> Option<&MetricFamily> {
        if let Some(f) = self.families.get(name) {
            return Some(f);
        }
        let suffixed = |suffix: &str, types: &[MetricType]| {
            let base = name.strip_suffix(suffix)?;
            let f = self.families.get(base)?;
            f.metric_type
                .is_some_and(|t| types.contains(&t))
                .then_some(f)
        };
        suffixed("_bucket", &[MetricType::Histogram])
            .or_else(|| suffixed("_sum", &[MetricType::Histogram, MetricType::Summary]))
            .or_else(|| suffixed("_count", &[MetricType::Histogram, MetricType::Summary]))
    }

    /// The type of `name` (a family or sample name, as in [`family`](Self::family)).
    pub fn metric_type(&self, name: &str) -> Option<MetricType> {
        self.family(name).and_then(|f| f.metric_type)
    }

    /// The help text of `name` (a family or sample name, as in [`family`](Self::family)).
    pub fn help(&self, name: &str) -> Option<&str> {
        self.family(name).and_then(|f| f.help.as_deref())
    }

    /// Every family that had a `# HELP` or `# TYPE` line, by name.
    pub fn families(&self) -> impl Iterator<Item = &MetricFamily> {
        self.families.values()
    }
}

/// A float as Prometheus writes it: decimal, `NaN`, `+Inf`, `-Inf`.
fn parse_float(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.parse::<f64>().ok(),
    }
}

enum Line<'a> {
    Empty,
    Help { name: &'a str, text: String },
    Type { name: &'a str, kind: MetricType },
    Sample(Sample),
}

/// A cursor over one line; `pos` is always on a char boundary.
struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<char> {
        self.s.get(self.pos..).and_then(|r| r.chars().next())
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn skip_blank(&mut self) -> bool {
        let start = self.pos;
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.pos += 1;
        }
        self.pos > start
    }

    fn take_while(&mut self, mut pred: impl FnMut(usize, char) -> bool) -> &'a str {
        let start = self.pos;
        let mut i = 0;
        while let Some(c) = self.peek() {
            if !pred(i, c) {
                break;
            }
            self.pos += c.len_utf8();
            i += 1;
        }
        self.s.get(start..self.pos).unwrap_or("")
    }

    fn token(&mut self) -> &'a str {
        self.take_while(|_, c| c != ' ' && c != '\t')
    }

    fn rest(&self) -> &'a str {
        self.s.get(self.pos..).unwrap_or("")
    }

    fn metric_name(&mut self) -> &'a str {
        self.take_while(|i, c| {
            c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
        })
    }

    fn label_name(&mut self) -> &'a str {
        self.take_while(|i, c| c.is_ascii_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit()))
    }
}

/// Shortens text for an error message (never splitting a character).
fn shown(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        format!("{s:?}")
    } else {
        let cut: String = s.chars().take(MAX).collect();
        format!("{cut:?}...")
    }
}

fn parse_line(raw: &str) -> std::result::Result<Line<'_>, String> {
    let line = raw.strip_suffix('\r').unwrap_or(raw);
    let mut c = Cursor { s: line, pos: 0 };
    c.skip_blank();
    if c.at_end() {
        return Ok(Line::Empty);
    }
    if c.eat('#') {
        return parse_comment(c);
    }
    parse_sample(c).map(Line::Sample)
}

fn parse_comment(mut c: Cursor<'_>) -> std::result::Result<Line<'_>, String> {
    c.skip_blank();
    let word = c.token();
    match word {
        "HELP" => {
            if !c.skip_blank() {
                return Err("a HELP line without a metric name".into());
            }
            let name = c.metric_name();
            if name.is_empty() {
                return Err(format!(
                    "a HELP line with an invalid metric name {}",
                    shown(c.rest())
                ));
            }
            if !c.at_end() && !c.skip_blank() {
                return Err(format!(
                    "a HELP line with an invalid metric name {}",
                    shown(name)
                ));
            }
            Ok(Line::Help {
                name,
                text: unescape_help(c.rest()),
            })
        }
        "TYPE" => {
            if !c.skip_blank() {
                return Err("a TYPE line without a metric name".into());
            }
            let name = c.metric_name();
            if name.is_empty() || !c.skip_blank() {
                return Err(format!(
                    "a TYPE line with an invalid or missing metric name or type near {}",
                    shown(c.rest())
                ));
            }
            let word = c.token();
            let kind = MetricType::parse(word)
                .ok_or_else(|| format!("unknown metric type {} for {name}", shown(word)))?;
            c.skip_blank();
            if !c.at_end() {
                return Err(format!(
                    "unexpected text after the TYPE of {name}: {}",
                    shown(c.rest())
                ));
            }
            Ok(Line::Type { name, kind })
        }
        _ => Ok(Line::Empty),
    }
}

fn unescape_help(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(ch) = chars.next() {
        if ch != '\\' {
            out.push(ch);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('\\') => out.push('\\'),
            // Anything else is kept as written.
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

fn parse_sample(mut c: Cursor<'_>) -> std::result::Result<Sample, String> {
    let name = c.metric_name();
    if name.is_empty() {
        return Err(format!("expected a metric name, found {}", shown(c.rest())));
    }
    let mut labels = BTreeMap::new();
    c.skip_blank();
    if c.eat('{') {
        loop {
            c.skip_blank();
            if c.eat('}') {
                break;
            }
            let label = c.label_name();
            if label.is_empty() {
                return Err(format!(
                    "{name}: expected a label name, found {}",
                    shown(c.rest())
                ));
            }
            c.skip_blank();
            if !c.eat('=') {
                return Err(format!("{name}: expected '=' after label {label}"));
            }
            c.skip_blank();
            if !c.eat('"') {
                return Err(format!("{name}: the value of label {label} is not quoted"));
            }
            let value = label_value(&mut c).map_err(|e| format!("{name}: label {label}: {e}"))?;
            if labels.insert(label.to_string(), value).is_some() {
                return Err(format!("{name}: label {label} appears twice"));
            }
            c.skip_blank();
            if c.eat(',') {
                continue;
            }
            if c.eat('}') {
                break;
            }
            return Err(format!(
                "{name}: expected ',' or '}}' after label {label}, found {}",
                shown(c.rest())
            ));
        }
        c.skip_blank();
    }
    let value_text = c.token();
    if value_text.is_empty() {
        return Err(format!("{name}: no value"));
    }
    let value = parse_float(value_text)
        .ok_or_else(|| format!("{name}: the value {} is not a number", shown(value_text)))?;
    c.skip_blank();
    let timestamp_ms = if c.at_end() {
        None
    } else {
        let t = c.token();
        let ts = t
            .parse::<i64>()
            .map_err(|_| format!("{name}: the timestamp {} is not an integer", shown(t)))?;
        c.skip_blank();
        if !c.at_end() {
            return Err(format!(
                "{name}: unexpected text after the timestamp: {}",
                shown(c.rest())
            ));
        }
        Some(ts)
    };
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
        timestamp_ms,
    })
}

/// Reads a label value after its opening quote, up to and including the closing quote.
fn label_value(c: &mut Cursor<'_>) -> std::result::Result<String, String> {
    let mut out = String::new();
    loop {
        match c.bump() {
            None => return Err("the value has no closing quote".into()),
            Some('"') => return Ok(out),
            Some('\\') => match c.bump() {
                Some('\\') => out.push('\\'),
                Some('"') => out.push('"'),
                Some('n') => out.push('\n'),
                Some(other) => return Err(format!("invalid escape sequence \\{other}")),
                None => return Err("the value has no closing quote".into()),
            },
            Some(ch) => out.push(ch),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TEXT: &str = r#"# HELP go_gc_duration_seconds A summary of \\ GC\npauses.
# TYPE go_gc_duration_seconds summary
go_gc_duration_seconds{quantile="0"} 0.000192663
go_gc_duration_seconds{quantile="0.5"} 0.00030291
go_gc_duration_seconds{quantile="0.99"} NaN
go_gc_duration_seconds_sum 0.002025266
go_gc_duration_seconds_count 5
# a plain comment
#
vault_core_unsealed{cluster=""} 0
vault_core_unsealed{cluster="vault-cluster-1a3c8245"} 1

# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.1",method="GET"} 3
http_request_duration_seconds_bucket{le="+Inf",method="GET"} 10
http_request_duration_seconds_bucket{method="GET",le="0.05"} 1
http_request_duration_seconds_bucket{le="0.1",method="POST"} 7
http_request_duration_seconds_sum{method="GET"} 1.5
http_request_duration_seconds_count{method="GET"} 10
msg{path="C:\\dir\\",text="say \"hi\"\nbye", } +Inf 1395066363000
neg -Inf
	spaced { a = "1" , b="2" }   -1.5e3   -42
vault_runtime_alloc_bytes 1.1472832e+07
"#;

    fn parsed() -> Metrics {
        match Metrics::parse(TEXT) {
            Ok(m) => m,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn parses_every_kind_of_line() {
        let m = parsed();
        assert_eq!(m.len(), 17);
        assert_eq!(m.skipped_lines(), 0);
        assert_eq!(m.first("go_gc_duration_seconds_count"), Some(5.0));
        assert_eq!(m.quantile("go_gc_duration_seconds", 0.5), Some(0.00030291));
        assert_eq!(m.quantile("go_gc_duration_seconds", 0.0), Some(0.000192663));
        assert!(m
            .quantile("go_gc_duration_seconds", 0.99)
            .is_some_and(f64::is_nan));
        assert_eq!(m.quantile("go_gc_duration_seconds", 0.9), None);
        assert_eq!(
            m.value("vault_core_unsealed", &[("cluster", "")]),
            Some(0.0)
        );
        assert_eq!(
            m.value(
                "vault_core_unsealed",
                &[("cluster", "vault-cluster-1a3c8245")]
            ),
            Some(1.0)
        );
        assert_eq!(m.max("vault_core_unsealed"), Some(1.0));
        assert_eq!(m.sum("vault_core_unsealed"), Some(1.0));
        assert_eq!(m.get("vault_core_unsealed").count(), 2);
        assert_eq!(m.first("vault_runtime_alloc_bytes"), Some(11_472_832.0));
        assert_eq!(m.first("neg"), Some(f64::NEG_INFINITY));
        assert_eq!(m.first("missing"), None);
        assert_eq!(m.sum("missing"), None);
        assert_eq!(m.max("missing"), None);
    }

    #[test]
    fn escapes_and_timestamps() {
        let m = parsed();
        let s = m.find("msg", &[]).unwrap();
        assert_eq!(s.label("path"), Some("C:\\dir\\"));
        assert_eq!(s.label("text"), Some("say \"hi\"\nbye"));
        assert_eq!(s.value, f64::INFINITY);
        assert_eq!(s.timestamp_ms, Some(1_395_066_363_000));
        let sp = m.find("spaced", &[("a", "1"), ("b", "2")]).unwrap();
        assert_eq!(sp.value, -1500.0);
        assert_eq!(sp.timestamp_ms, Some(-42));
        assert_eq!(m.find("spaced", &[("a", "2")]), None);
    }

    #[test]
    fn help_type_and_families() {
        let m = parsed();
        assert_eq!(
            m.help("go_gc_duration_seconds"),
            Some("A summary of \\ GC\npauses.")
        );
        assert_eq!(
            m.metric_type("go_gc_duration_seconds"),
            Some(MetricType::Summary)
        );
        assert_eq!(
            m.metric_type("go_gc_duration_seconds_count"),
            Some(MetricType::Summary)
        );
        assert_eq!(m.metric_type("go_gc_duration_seconds_bucket"), None);
        assert_eq!(
            m.metric_type("http_request_duration_seconds_bucket"),
            Some(MetricType::Histogram)
        );
        assert_eq!(m.metric_type("vault_core_unsealed"), None);
        assert_eq!(m.families().count(), 2);
        assert!(m.names().contains(&"msg"));
    }

    #[test]
    fn histogram_buckets() {
        let m = parsed();
        let b = m.buckets("http_request_duration_seconds", &[("method", "GET")]);
        let pairs: Vec<(f64, f64)> = b.iter().map(|b| (b.le, b.count)).collect();
        assert_eq!(pairs, vec![(0.05, 1.0), (0.1, 3.0), (f64::INFINITY, 10.0)]);
        assert_eq!(m.buckets("http_request_duration_seconds", &[]).len(), 4);
        assert_eq!(
            m.value("http_request_duration_seconds_count", &[("method", "GET")]),
            Some(10.0)
        );
        assert!(m.buckets("nope", &[]).is_empty());
    }

    #[test]
    fn strict_errors_name_the_line() {
        let cases = [
            ("ok 1\nbad{a=\"x} 1", 2, "closing quote"),
            ("x{a=\"\\t\"} 1", 1, "invalid escape"),
            ("x{a=b} 1", 1, "not quoted"),
            ("x{a=\"1\",a=\"2\"} 1", 1, "twice"),
            ("x{a=\"1\" b=\"2\"} 1", 1, "expected ','"),
            ("x", 1, "no value"),
            ("x abc", 1, "not a number"),
            ("x 1 2.5", 1, "not an integer"),
            ("x 1 2 3", 1, "after the timestamp"),
            ("1x 1", 1, "metric name"),
            ("{a=\"1\"} 1", 1, "metric name"),
            ("x{=\"1\"} 1", 1, "label name"),
            ("x{a\"1\"} 1", 1, "'='"),
            ("# TYPE x blah", 1, "unknown metric type"),
            ("# TYPE x", 1, "TYPE line"),
            ("# TYPE x gauge extra", 1, "after the TYPE"),
            ("# TYPE x gauge\n# TYPE x counter", 2, "second TYPE"),
            ("# HELP x a\n# HELP x b", 2, "second HELP"),
            ("# HELP", 1, "HELP line"),
            ("# HELP 9x y", 1, "metric name"),
        ];
        for (text, line, needle) in cases {
            match Metrics::parse(text) {
                Ok(_) => panic!("{text:?} parsed"),
                Err(e) => {
                    assert_eq!(e.line, line, "{text:?}: {e}");
                    assert!(e.message.contains(needle), "{text:?}: {e}");
                    assert!(e.to_string().contains(&format!("line {line}")), "{e}");
                }
            }
        }
    }

    #[test]
    fn lenient_skips_and_counts() {
        let text = "a 1\nb{ 2\n# TYPE c what\nc 3\r\nd NaN\n";
        let m = Metrics::parse_lenient(text);
        assert_eq!(m.len(), 3);
        assert_eq!(m.skipped_lines(), 2);
        let lines: Vec<usize> = m.parse_issues().iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 3]);
        assert_eq!(m.first("c"), Some(3.0));
        assert!(m.first("d").is_some_and(f64::is_nan));
        assert!(Metrics::parse(text).is_err());

        let many = "bad line\n".repeat(MAX_KEPT_ISSUES + 5);
        let m = Metrics::parse_lenient(&many);
        assert_eq!(m.skipped_lines(), MAX_KEPT_ISSUES + 5);
        assert_eq!(m.parse_issues().len(), MAX_KEPT_ISSUES);
    }

    #[test]
    fn comments_and_blank_text() {
        let m = Metrics::parse("").unwrap();
        assert!(m.is_empty());
        let m: Metrics = "# just a comment\n   \n#HELP x with \\\\ no space\nx 1"
            .parse()
            .unwrap();
        assert_eq!(m.help("x"), Some("with \\ no space"));
        assert_eq!(m.first("x"), Some(1.0));
    }

    #[test]
    fn error_messages_cut_long_text_on_char_boundaries() {
        let long = format!("x {}", "é".repeat(100));
        let e = Metrics::parse(&long).unwrap_err();
        assert!(e.message.contains("\"... is not a number"), "{e}");
        assert!(e.message.len() < 200, "{e}");
    }

    fn escape(v: &str) -> String {
        v.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in ".*") {
            let _ = Metrics::parse(&s);
            let m = Metrics::parse_lenient(&s);
            prop_assert!(m.parse_issues().len() <= MAX_KEPT_ISSUES);
        }

        #[test]
        fn metric_like_text_never_panics(
            s in r#"(#( (HELP|TYPE))? ?)?[a-z_:]{0,4}[0-9]?(\{([a-z]{0,2} ?= ?"([^"\\]|\\.){0,4}"? ?,? ?){0,3}\}?)? ?[-+0-9.eEInfNa]{0,6}( -?[0-9.]{0,4})?\s?"#
        ) {
            let _ = Metrics::parse(&s);
            let _ = Metrics::parse_lenient(&s);
        }

        #[test]
        fn label_values_round_trip(
            name in "[a-zA-Z_:][a-zA-Z0-9_:]{0,10}",
            labels in proptest::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_]{0,6}", any::<String>(), 0..4),
            value in any::<f64>(),
            ts in proptest::option::of(any::<i64>()),
        ) {
            let body: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
            let mut line = format!("{name}{{{}}} {value:?}", body.join(","));
            if let Some(t) = ts {
                line.push_str(&format!(" {t}"));
            }
            let m = Metrics::parse(&line).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(m.len(), 1);
            let s = &m.samples()[0];
            prop_assert_eq!(&s.name, &name);
            prop_assert_eq!(&s.labels, &labels);
            prop_assert!(s.value == value || (s.value.is_nan() && value.is_nan()));
            prop_assert_eq!(s.timestamp_ms, ts);
        }
    }
}
