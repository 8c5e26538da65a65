//! [`LogLine`]: what the request log keeps of a request, and the JSON line
//! it becomes. Built on the request path (a few copies, no formatting);
//! formatted on the writer thread.

use std::borrow::Cow;
use std::io::Write as _;
use std::time::{Duration, SystemTime};

use crate::ports::RequestRecord;

use super::ACCESS_LOG_TARGET;

/// One request's line, before formatting.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// When the response was ready: the line's `timestamp`.
    pub at: SystemTime,
    pub method: Cow<'static, str>,
    pub route: &'static str,
    /// The path and query as received, already cut at 2 KiB.
    pub path: String,
    pub status: u16,
    pub latency: Duration,
    pub cache_hit: bool,
    pub cache_tier: &'static str,
    pub bytes: u64,
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
}

impl LogLine {
    /// The line for `record`.
    pub fn of(record: &RequestRecord) -> Self {
        Self {
            at: record.end(),
            method: record.method.clone(),
            route: record.route,
            path: record.target.clone(),
            status: record.status,
            latency: record.latency,
            cache_hit: record.cache_hit,
            cache_tier: record.cache_tier,
            bytes: record.bytes,
            trace_id: record.trace_id,
            span_id: record.span_id,
        }
    }

    /// Appends the line's JSON and a newline to `out`: the fields of
    /// CONTRACT 8, with the `timestamp`, `level`, `message` and `target`
    /// every other log line carries.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"timestamp\":\"");
        // Writing to a Vec cannot fail.
        let _ = write!(out, "{}", humantime::format_rfc3339_micros(self.at));
        out.extend_from_slice(b"\",\"level\":\"INFO\",\"method\":");
        json_string(out, &self.method);
        out.extend_from_slice(b",\"route\":");
        json_string(out, self.route);
        out.extend_from_slice(b",\"path\":");
        json_string(out, &self.path);
        let _ = write!(out, ",\"status\":{},\"latency_ms\":", self.status);
        let _ = serde_json::to_writer(&mut *out, &(self.latency.as_secs_f64() * 1000.0));
        let _ = write!(
            out,
            ",\"cache_hit\":{},\"cache_tier\":",
            if self.cache_hit { "true" } else { "false" }
        );
        json_string(out, self.cache_tier);
        let _ = write!(out, ",\"bytes\":{},\"trace_id\":\"", self.bytes);
        hex(out, &self.trace_id);
        out.extend_from_slice(b"\",\"span_id\":\"");
        hex(out, &self.span_id);
        out.extend_from_slice(b"\",\"message\":\"request\",\"target\":");
        json_string(out, ACCESS_LOG_TARGET);
        out.extend_from_slice(b"}\n");
    }
}

/// The line the writer adds when its queue overflowed (`dropped` lines
/// lost since it last said so) or has room again.
pub fn write_queue_notice(out: &mut Vec<u8>, at: SystemTime, dropped: u64, full: bool) {
    let (level, message) = if full {
        (
            "WARN",
            "request log queue full: lines dropped until it has room (stdout is slower than the traffic); logged once, and again when it has",
        )
    } else {
        ("INFO", "request log queue has room again")
    };
    let _ = write!(
        out,
        "{{\"timestamp\":\"{}\",\"level\":\"{level}\",\"dropped\":{dropped},\"message\":",
        humantime::format_rfc3339_micros(at)
    );
    json_string(out, message);
    out.extend_from_slice(b",\"target\":");
    json_string(out, ACCESS_LOG_TARGET);
    out.extend_from_slice(b"}\n");
}

/// A JSON string literal, escaped by serde_json.
fn json_string(out: &mut Vec<u8>, value: &str) {
    let _ = serde_json::to_writer(&mut *out, value);
}

fn hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)]);
        out.push(DIGITS[usize::from(byte & 0xf)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn line(path: &str) -> LogLine {
        LogLine {
            at: SystemTime::UNIX_EPOCH + Duration::from_micros(1_796_428_800_123_456),
            method: Cow::Borrowed("GET"),
            route: "/api/github/{path}",
            path: path.to_owned(),
            status: 200,
            latency: Duration::from_micros(1_250),
            cache_hit: true,
            cache_tier: "memory",
            bytes: 15_658,
            trace_id: [0x0a; 16],
            span_id: [0xb7; 8],
        }
    }

    fn parsed(line: &LogLine) -> Value {
        let mut out = Vec::new();
        line.write_json(&mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1, "one line");
        serde_json::from_slice(&out).expect("valid JSON")
    }

    #[test]
    fn the_line_carries_every_field_of_the_contract() {
        let json = parsed(&line("/api/github/pulls?state=open"));
        assert_eq!(json["timestamp"], "2026-12-05T00:00:00.123456Z");
        assert_eq!(json["level"], "INFO");
        assert_eq!(json["message"], "request");
        assert_eq!(json["target"], ACCESS_LOG_TARGET);
        assert_eq!(json["method"], "GET");
        assert_eq!(json["route"], "/api/github/{path}");
        assert_eq!(json["path"], "/api/github/pulls?state=open");
        assert_eq!(json["status"], 200);
        assert_eq!(json["latency_ms"], 1.25);
        assert_eq!(json["cache_hit"], true);
        assert_eq!(json["cache_tier"], "memory");
        assert_eq!(json["bytes"], 15_658);
        assert_eq!(json["trace_id"], "0a".repeat(16));
        assert_eq!(json["span_id"], "b7".repeat(8));
    }

    #[test]
    fn a_hostile_path_stays_inside_its_string() {
        let hostile = "/api/x\"}\n{\"level\":\"ERROR\\\u{0}\u{1b}[31m\u{2028}é";
        let json = parsed(&line(hostile));
        assert_eq!(json["path"], hostile);
        assert_eq!(json["level"], "INFO");
    }

    #[test]
    fn the_queue_notices_are_json_lines() {
        let mut out = Vec::new();
        write_queue_notice(&mut out, SystemTime::now(), 7, true);
        write_queue_notice(&mut out, SystemTime::now(), 9, false);
        let lines: Vec<Value> = out
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).expect("JSON"))
            .collect();
        assert_eq!(lines[0]["level"], "WARN");
        assert_eq!(lines[0]["dropped"], 7);
        assert_eq!(lines[1]["level"], "INFO");
        assert_eq!(lines[1]["dropped"], 9);
    }
}
