//! Markdown tables from the JSON lines of many runs: one table per metric,
//! a row per case, a column per peer holding the median of the repetitions
//! and their spread (min–max), then the subject's ratio against the direct
//! baseline, against the floor relay (`bench/floor/`: the least a relay can
//! cost; never counted as a peer) and against the best peer. A run that
//! stalled or failed is never averaged in: its cell says so. The same
//! figures as JSON ([`summary`]) feed `bench/charts.py`.

use serde_json::{json, Map, Value};

use crate::stats::median;

/// One table of the report.
struct Metric {
    mode: &'static str,
    title: &'static str,
    /// JSON pointer to the value in a record.
    pointer: &'static str,
    higher_better: bool,
    /// Whether the direct baseline has this figure (CPU and memory of a
    /// proxy do not exist without one).
    with_baseline: bool,
    /// Latency: also show what the subject and the best peer add to direct.
    added: bool,
}

const METRICS: &[Metric] = &[
    Metric {
        mode: "throughput",
        title: "Throughput, Gbit/s (higher is better)",
        pointer: "/gbps",
        higher_better: true,
        with_baseline: true,
        added: false,
    },
    Metric {
        mode: "throughput",
        title: "Proxy CPU-seconds per GB relayed (lower is better)",
        pointer: "/cpu_s_per_gb",
        higher_better: false,
        with_baseline: false,
        added: false,
    },
    Metric {
        mode: "connrate",
        title: "Connections per second: connect + greeting + CONNECT + 64-byte echo + close (higher is better)",
        pointer: "/conns_per_s",
        higher_better: true,
        with_baseline: true,
        added: false,
    },
    Metric {
        mode: "connrate",
        title: "Connection latency p50, µs (lower is better)",
        pointer: "/latency/p50_us",
        higher_better: false,
        with_baseline: true,
        added: false,
    },
    Metric {
        mode: "connrate",
        title: "Connection latency p99, µs (lower is better)",
        pointer: "/latency/p99_us",
        higher_better: false,
        with_baseline: true,
        added: false,
    },
    Metric {
        mode: "connrate",
        title: "Connection latency p99.9, µs (lower is better)",
        pointer: "/latency/p999_us",
        higher_better: false,
        with_baseline: true,
        added: false,
    },
    Metric {
        mode: "connrate",
        title: "Proxy CPU-µs per connection (lower is better)",
        pointer: "/cpu_us_per_conn",
        higher_better: false,
        with_baseline: false,
        added: false,
    },
    Metric {
        mode: "pingpong",
        title: "Ping-pong round trip p50, µs (lower is better)",
        pointer: "/rtt/p50_us",
        higher_better: false,
        with_baseline: true,
        added: true,
    },
    Metric {
        mode: "pingpong",
        title: "Ping-pong round trip p99, µs (lower is better)",
        pointer: "/rtt/p99_us",
        higher_better: false,
        with_baseline: true,
        added: true,
    },
    Metric {
        mode: "pingpong",
        title: "Proxy CPU-µs per ping-pong round trip (lower is better)",
        pointer: "/cpu_us_per_round_trip",
        higher_better: false,
        with_baseline: false,
        added: false,
    },
    Metric {
        mode: "idle",
        title: "Memory per idle relayed connection, RSS KiB (lower is better)",
        pointer: "/rss_kib_per_conn",
        higher_better: false,
        with_baseline: false,
        added: false,
    },
    Metric {
        mode: "idle",
        title: "Memory per idle relayed connection, PSS KiB (lower is better)",
        pointer: "/pss_kib_per_conn",
        higher_better: false,
        with_baseline: false,
        added: false,
    },
    Metric {
        mode: "idle",
        title: "Memory per idle relayed connection, anonymous PSS KiB (lower is better)",
        pointer: "/anon_kib_per_conn",
        higher_better: false,
        with_baseline: false,
        added: false,
    },
    Metric {
        mode: "idle",
        title: "Memory per idle relayed connection beyond its warm rest (after 16 connections relayed and closed), RSS KiB (lower is better)",
        pointer: "/rss_kib_per_conn_warm",
        higher_better: false,
        with_baseline: false,
        added: false,
    },
];

/// The JSON objects among `s`'s lines (other lines are skipped).
pub fn parse_lines(s: &str) -> Vec<Value> {
    s.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .filter(Value::is_object)
        .collect()
}

fn str_of<'a>(r: &'a Value, key: &str) -> &'a str {
    r.get(key).and_then(Value::as_str).unwrap_or("")
}

fn ok(r: &Value) -> bool {
    r.get("ok").and_then(Value::as_bool).unwrap_or(false)
}

fn stalled(r: &Value) -> bool {
    r.get("stalled").and_then(Value::as_bool).unwrap_or(false)
}

/// An integer with thousands separators: 20305 → "20,305".
pub fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 && s != "0" {
        out.insert(0, '-');
    }
    out
}

/// A figure with as many digits as are meaningful.
pub fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        "–".into()
    } else if a >= 1000.0 {
        thousands(v)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else if a == 0.0 {
        "0".into()
    } else {
        format!("{v:.3}")
    }
}

/// The statistics of one cell.
struct Cell {
    runs: usize,
    bad: usize,
    any_stall: bool,
    values: Vec<f64>,
}

impl Cell {
    fn median(&self) -> Option<f64> {
        median(&self.values)
    }

    fn render(&self) -> String {
        if self.runs == 0 {
            return "–".into();
        }
        let what = if self.any_stall { "STALL" } else { "FAIL" };
        let Some(m) = self.median() else {
            return format!("**{what}** ({}/{})", self.bad, self.runs);
        };
        let mut s = fmt_num(m);
        if self.values.len() > 1 {
            let lo = self.values.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = self
                .values
                .iter()
                .copied()
                .fold(f64::NEG_INFINITY, f64::max);
            s.push_str(&format!(" ({}–{})", fmt_num(lo), fmt_num(hi)));
        }
        if self.bad > 0 {
            s.push_str(&format!(" **{what} {}/{}**", self.bad, self.runs));
        }
        s
    }
}

impl Cell {
    fn to_json(&self) -> Value {
        let lo = self.values.iter().copied().reduce(f64::min);
        let hi = self.values.iter().copied().reduce(f64::max);
        json!({"median": self.median(), "min": lo, "max": hi, "values": self.values,
               "runs": self.runs, "bad": self.bad, "stalled": self.any_stall})
    }
}

fn cell(records: &[&Value], case: &str, label: &str, pointer: &str) -> Cell {
    let mut c = Cell {
        runs: 0,
        bad: 0,
        any_stall: false,
        values: Vec::new(),
    };
    for r in records
        .iter()
        .filter(|r| str_of(r, "case") == case && str_of(r, "label") == label)
    {
        c.runs += 1;
        if !ok(r) {
            c.bad += 1;
            c.any_stall |= stalled(r);
            continue;
        }
        if let Some(v) = r.pointer(pointer).and_then(Value::as_f64) {
            if v.is_finite() {
                c.values.push(v);
            }
        }
    }
    c
}

fn first_seen<'a>(records: &[&'a Value], key: &str) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for r in records {
        let v = str_of(r, key);
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

fn ratio(a: f64, b: f64) -> String {
    if b == 0.0 || !a.is_finite() || !b.is_finite() {
        "–".into()
    } else {
        format!("{:.2}×", a / b)
    }
}

/// Who is measured in a table, and in which column order.
struct Roles<'a> {
    subject: &'a str,
    baseline: &'a str,
    floor: &'a str,
}

impl<'a> Roles<'a> {
    /// The table's labels (baseline, floor, subject, then the peers as
    /// first seen) and the peers among them (neither of the three).
    fn columns(&self, m: &Metric, recs: &[&'a Value]) -> (Vec<&'a str>, Vec<&'a str>) {
        let seen = first_seen(recs, "label");
        let mut labels: Vec<&str> = Vec::new();
        if m.with_baseline && seen.contains(&self.baseline) {
            labels.push(self.baseline);
        }
        for l in [self.floor, self.subject] {
            if seen.contains(&l) && !labels.contains(&l) {
                labels.push(l);
            }
        }
        let special = [self.baseline, self.subject, self.floor];
        let peers: Vec<&str> = seen
            .iter()
            .copied()
            .filter(|l| !special.contains(l))
            .collect();
        labels.extend(&peers);
        (labels, peers)
    }
}

/// The whole report: a table per metric, then the runs that went wrong.
/// `floor` is the label of the floor relay's runs.
pub fn render(records: &[Value], subject: &str, baseline: &str, floor: &str) -> String {
    let roles = Roles {
        subject,
        baseline,
        floor,
    };
    let mut out = String::new();
    for m in METRICS {
        let recs: Vec<&Value> = records
            .iter()
            .filter(|r| str_of(r, "mode") == m.mode)
            .collect();
        if recs.is_empty() {
            continue;
        }
        let (labels, peers) = roles.columns(m, &recs);
        let has_subject = labels.contains(&subject);
        let has_base = labels.contains(&baseline);
        let has_floor = labels.contains(&floor) && floor != subject && floor != baseline;

        out.push_str(&format!("### {}\n\n| case |", m.title));
        for l in &labels {
            out.push_str(&format!(" {l} |"));
        }
        if has_subject && has_base {
            out.push_str(&format!(" {subject} ÷ {baseline} |"));
        }
        if has_subject && has_floor {
            out.push_str(&format!(" {subject} ÷ {floor} |"));
        }
        if has_subject && !peers.is_empty() {
            out.push_str(&format!(" {subject} ÷ best peer |"));
        }
        if m.added && has_subject && has_base {
            out.push_str(&format!(" added over {baseline}: {subject} / best peer |"));
        }
        if m.added && has_floor && has_base {
            out.push_str(&format!(" added over {baseline}: {floor} |"));
        }
        out.push_str("\n|---|");
        let extra = usize::from(has_subject && has_base)
            + usize::from(has_subject && has_floor)
            + usize::from(has_subject && !peers.is_empty())
            + usize::from(m.added && has_subject && has_base)
            + usize::from(m.added && has_floor && has_base);
        for _ in 0..labels.len() + extra {
            out.push_str("---|");
        }
        out.push('\n');

        for case in first_seen(&recs, "case") {
            out.push_str(&format!("| {case} |"));
            let cells: Vec<Cell> = labels
                .iter()
                .map(|l| cell(&recs, case, l, m.pointer))
                .collect();
            for c in &cells {
                out.push_str(&format!(" {} |", c.render()));
            }
            let med = |label: &str| {
                labels
                    .iter()
                    .position(|l| *l == label)
                    .and_then(|i| cells[i].median())
            };
            let best = peers
                .iter()
                .filter_map(|p| med(p).map(|v| (*p, v)))
                .reduce(|a, b| {
                    let better = if m.higher_better {
                        b.1 > a.1
                    } else {
                        b.1 < a.1
                    };
                    if better {
                        b
                    } else {
                        a
                    }
                });
            let s = med(subject);
            let b = med(baseline);
            if has_subject && has_base {
                let r = match (s, b) {
                    (Some(s), Some(b)) => ratio(s, b),
                    _ => "–".into(),
                };
                out.push_str(&format!(" {r} |"));
            }
            if has_subject && has_floor {
                // A variant the floor has no runs of ("32 workers, SOCKS 6
                // 0-RTT") is compared with the floor's figure in the case
                // it varies ("32 workers"), which the cell names.
                let r = match (s, med(floor)) {
                    (Some(s), Some(f)) => ratio(s, f),
                    (Some(s), None) if cell(&recs, case, floor, m.pointer).runs == 0 => {
                        match case.rsplit_once(", ").and_then(|(base, _)| {
                            Some((base, cell(&recs, base, floor, m.pointer).median()?))
                        }) {
                            Some((base, f)) => format!("{} ({floor}, {base})", ratio(s, f)),
                            None => "–".into(),
                        }
                    }
                    _ => "–".into(),
                };
                out.push_str(&format!(" {r} |"));
            }
            if has_subject && !peers.is_empty() {
                // A variant measured for the subject alone ("32 workers,
                // SOCKS 6 0-RTT") is compared with the subject's own figure
                // in the case it varies ("32 workers").
                let own = || {
                    let (base, _) = case.rsplit_once(", ")?;
                    let v = cell(&recs, base, subject, m.pointer).median()?;
                    Some((format!("{subject}, {base}"), v))
                };
                let r = match (s, best) {
                    (Some(s), Some((p, v))) => format!("{} ({p})", ratio(s, v)),
                    (Some(s), None) => match own() {
                        Some((l, v)) => format!("{} ({l})", ratio(s, v)),
                        None => "–".into(),
                    },
                    _ => "–".into(),
                };
                out.push_str(&format!(" {r} |"));
            }
            if m.added && has_subject && has_base {
                let r = match (s, b) {
                    (Some(s), Some(b)) => {
                        let peer = best
                            .map(|(p, v)| format!("{} ({p})", fmt_num(v - b)))
                            .unwrap_or_else(|| "–".into());
                        format!("{} / {peer}", fmt_num(s - b))
                    }
                    _ => "–".into(),
                };
                out.push_str(&format!(" {r} |"));
            }
            if m.added && has_floor && has_base {
                let r = match (med(floor), b) {
                    (Some(f), Some(b)) => fmt_num(f - b),
                    _ => "–".into(),
                };
                out.push_str(&format!(" {r} |"));
            }
            out.push('\n');
        }
        out.push('\n');
    }
    let bad: Vec<String> = failures(records, &[]);
    if !bad.is_empty() {
        out.push_str("### Runs that stalled or failed\n\n");
        for b in bad {
            out.push_str(&format!("- {b}\n"));
        }
        out.push('\n');
    }
    out
}

/// The figures of [`render`]'s tables as JSON (for `bench/charts.py`):
/// `{"subject", "baseline", "floor", "metrics": [{"mode", "title",
/// "pointer", "higher_better", "labels": [in column order], "cases":
/// [{"case", "cells": {LABEL: {"median", "min", "max", "values", "runs",
/// "bad", "stalled"}}}]}]}`. `median`, `min` and `max` are null where no
/// run of the cell succeeded; a label without runs in a case has no cell.
pub fn summary(records: &[Value], subject: &str, baseline: &str, floor: &str) -> Value {
    let roles = Roles {
        subject,
        baseline,
        floor,
    };
    let mut metrics = Vec::new();
    for m in METRICS {
        let recs: Vec<&Value> = records
            .iter()
            .filter(|r| str_of(r, "mode") == m.mode)
            .collect();
        if recs.is_empty() {
            continue;
        }
        let (labels, _) = roles.columns(m, &recs);
        let cases: Vec<Value> = first_seen(&recs, "case")
            .into_iter()
            .map(|case| {
                let mut cells = Map::new();
                for l in &labels {
                    let c = cell(&recs, case, l, m.pointer);
                    if c.runs > 0 {
                        cells.insert((*l).to_string(), c.to_json());
                    }
                }
                json!({"case": case, "cells": cells})
            })
            .collect();
        metrics.push(
            json!({"mode": m.mode, "title": m.title, "pointer": m.pointer,
                            "higher_better": m.higher_better, "labels": labels, "cases": cases}),
        );
    }
    json!({"subject": subject, "baseline": baseline, "floor": floor, "metrics": metrics})
}

/// The runs that failed or stalled, as lines; only those of `labels`
/// unless it is empty.
pub fn failures(records: &[Value], labels: &[String]) -> Vec<String> {
    records
        .iter()
        .filter(|r| !ok(r))
        .filter(|r| labels.is_empty() || labels.iter().any(|l| l == str_of(r, "label")))
        .map(|r| {
            format!(
                "{} {}, {}, rep {}: {}",
                str_of(r, "mode"),
                str_of(r, "case"),
                str_of(r, "label"),
                r.get("rep").and_then(Value::as_u64).unwrap_or(0),
                r.get("problem").and_then(Value::as_str).unwrap_or("failed")
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tp(label: &str, rep: u32, gbps: f64, cpu: Option<f64>, ok: bool) -> Value {
        let mut v = json!({"mode": "throughput", "case": "upload, 1 stream", "label": label,
                           "rep": rep, "gbps": gbps, "ok": ok, "stalled": !ok});
        if let Some(c) = cpu {
            v["cpu_s_per_gb"] = json!(c);
        }
        if !ok {
            v["problem"] = json!("1/1 streams stalled (longest gap 1500 ms)");
        }
        v
    }

    #[test]
    fn numbers() {
        assert_eq!(thousands(20305.4), "20,305");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(-1234567.0), "-1,234,567");
        assert_eq!(fmt_num(19.74), "19.7");
        assert_eq!(fmt_num(7.7), "7.70");
        assert_eq!(fmt_num(0.634), "0.634");
        assert_eq!(fmt_num(123.4), "123");
        assert_eq!(fmt_num(f64::NAN), "–");
    }

    #[test]
    fn parse_skips_noise() {
        let r = parse_lines("hello\n{\"mode\":\"x\"}\n[1]\n\n{\"mode\":\"y\"}\n");
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn table_medians_ratios_and_stalls() {
        let recs = vec![
            tp("direct", 0, 20.0, None, true),
            tp("direct", 1, 18.0, None, true),
            tp("direct", 2, 22.0, None, true),
            tp("sixsocks", 0, 10.0, Some(0.2), true),
            tp("sixsocks", 1, 12.0, Some(0.1), true),
            tp("sixsocks", 2, 11.0, Some(0.3), true),
            tp("danted", 0, 5.0, Some(0.8), true),
            tp("danted", 1, 4.0, Some(0.9), true),
            tp("danted", 2, 6.0, Some(0.7), true),
            tp("microsocks", 0, 9.0, Some(2.0), false),
            tp("microsocks", 1, 9.0, Some(2.0), false),
            tp("microsocks", 2, 9.0, Some(2.0), false),
        ];
        let out = render(&recs, "sixsocks", "direct", "floor");
        assert!(out.contains("| case | direct | sixsocks | danted | microsocks | sixsocks ÷ direct | sixsocks ÷ best peer |"), "{out}");
        // medians with spread; the stalled peer is not a number and not the best peer
        assert!(
            out.contains("| upload, 1 stream | 20.0 (18.0–22.0) | 11.0 (10.0–12.0) | 5.00 (4.00–6.00) | **STALL** (3/3) | 0.55× | 2.20× (danted) |"),
            "{out}"
        );
        // CPU table: no direct column, lower is better
        assert!(
            out.contains("| upload, 1 stream | 0.200 (0.100–0.300) | 0.800 (0.700–0.900) | **STALL** (3/3) | 0.25× (danted) |"),
            "{out}"
        );
        assert!(out.contains("Runs that stalled or failed"));
        assert_eq!(failures(&recs, &["microsocks".into()]).len(), 3);
        assert!(failures(&recs, &["sixsocks".into(), "direct".into()]).is_empty());
    }

    #[test]
    fn a_variant_of_the_subject_alone_is_compared_with_its_own_case() {
        let cr = |label: &str, case: &str, rate: f64| {
            json!({"mode": "connrate", "case": case, "label": label, "rep": 0, "ok": true,
                   "stalled": false, "conns_per_s": rate})
        };
        let recs = vec![
            cr("direct", "32 workers", 20000.0),
            cr("sixsocks", "32 workers", 8000.0),
            cr("microsocks", "32 workers", 7000.0),
            cr("sixsocks", "32 workers, SOCKS 6 0-RTT", 10000.0),
        ];
        let out = render(&recs, "sixsocks", "direct", "floor");
        assert!(
            out.contains(
                "| 32 workers, SOCKS 6 0-RTT | – | 10,000 | – | – | 1.25× (sixsocks, 32 workers) |"
            ),
            "{out}"
        );
        assert!(
            out.contains("| 32 workers | 20,000 | 8,000 | 7,000 | 0.40× | 1.14× (microsocks) |"),
            "{out}"
        );
    }

    #[test]
    fn partial_stall_is_flagged_and_added_latency() {
        let pp = |label: &str, rep: u32, p50: f64, ok: bool| {
            json!({"mode": "pingpong", "case": "1 B", "label": label, "rep": rep, "ok": ok,
                   "stalled": !ok, "rtt": {"p50_us": p50, "p99_us": p50 * 2.0}})
        };
        let recs = vec![
            pp("direct", 0, 10.0, true),
            pp("sixsocks", 0, 15.0, true),
            pp("danted", 0, 30.0, true),
            pp("danted", 1, 32.0, false),
        ];
        let out = render(&recs, "sixsocks", "direct", "floor");
        assert!(out.contains("| 1 B | 10.0 | 15.0 | 30.0 **STALL 1/2** | 1.50× | 0.50× (danted) | 5.00 / 20.0 (danted) |"), "{out}");
    }

    #[test]
    fn the_floor_gets_its_column_and_is_never_the_best_peer() {
        let recs = vec![
            tp("direct", 0, 40.0, None, true),
            tp("sixsocks", 0, 10.0, Some(0.4), true),
            tp("floor", 0, 20.0, Some(0.2), true),
            tp("danted", 0, 5.0, Some(0.8), true),
        ];
        let out = render(&recs, "sixsocks", "direct", "floor");
        assert!(
            out.contains("| case | direct | floor | sixsocks | danted | sixsocks ÷ direct | sixsocks ÷ floor | sixsocks ÷ best peer |"),
            "{out}"
        );
        assert!(
            out.contains(
                "| upload, 1 stream | 40.0 | 20.0 | 10.0 | 5.00 | 0.25× | 0.50× | 2.00× (danted) |"
            ),
            "{out}"
        );
        // CPU: no direct column, the floor's is there (lower is better).
        assert!(
            out.contains("| upload, 1 stream | 0.200 | 0.400 | 0.800 | 2.00× | 0.50× (danted) |"),
            "{out}"
        );

        let pp = |label: &str, p50: f64| {
            json!({"mode": "pingpong", "case": "1 B", "label": label, "rep": 0, "ok": true,
                   "stalled": false, "rtt": {"p50_us": p50, "p99_us": p50 * 2.0}})
        };
        let cr = |label: &str, case: &str, rate: f64| {
            json!({"mode": "connrate", "case": case, "label": label, "rep": 0, "ok": true,
                   "stalled": false, "conns_per_s": rate})
        };
        let recs = vec![
            pp("direct", 10.0),
            pp("floor", 12.0),
            pp("sixsocks", 15.0),
            pp("danted", 30.0),
            cr("floor", "32 workers", 10000.0),
            cr("sixsocks", "32 workers", 8000.0),
            cr("sixsocks", "32 workers, SOCKS 6 0-RTT", 11000.0),
        ];
        let out = render(&recs, "sixsocks", "direct", "floor");
        assert!(
            out.contains("| added over direct: sixsocks / best peer | added over direct: floor |"),
            "{out}"
        );
        assert!(
            out.contains("| 1 B | 10.0 | 12.0 | 15.0 | 30.0 | 1.50× | 1.25× | 0.50× (danted) | 5.00 / 20.0 (danted) | 2.00 |"),
            "{out}"
        );
        // Only the subject and the floor: no best peer column; the SOCKS 6
        // variant is compared with the floor's SOCKS5 run of its case.
        assert!(
            out.contains("| 32 workers | 10,000 | 8,000 | 0.80× |"),
            "{out}"
        );
        assert!(
            out.contains("| 32 workers, SOCKS 6 0-RTT | – | 11,000 | 1.10× (floor, 32 workers) |"),
            "{out}"
        );
    }

    #[test]
    fn the_summary_holds_every_cell_in_column_order() {
        let recs = vec![
            tp("sixsocks", 0, 10.0, Some(0.4), true),
            tp("sixsocks", 1, 12.0, Some(0.2), true),
            tp("direct", 0, 40.0, None, true),
            tp("floor", 0, 20.0, Some(0.2), true),
            tp("microsocks", 0, 9.0, Some(2.0), false),
        ];
        let v = summary(&recs, "sixsocks", "direct", "floor");
        assert_eq!(v["floor"], "floor");
        let m = &v["metrics"][0];
        assert_eq!(m["pointer"], "/gbps");
        assert_eq!(m["higher_better"], true);
        assert_eq!(
            m["labels"],
            json!(["direct", "floor", "sixsocks", "microsocks"])
        );
        let c = &m["cases"][0];
        assert_eq!(c["case"], "upload, 1 stream");
        assert_eq!(c["cells"]["sixsocks"]["median"], 11.0);
        assert_eq!(c["cells"]["sixsocks"]["min"], 10.0);
        assert_eq!(c["cells"]["sixsocks"]["max"], 12.0);
        assert_eq!(c["cells"]["sixsocks"]["runs"], 2);
        assert_eq!(c["cells"]["microsocks"]["median"], Value::Null);
        assert_eq!(c["cells"]["microsocks"]["stalled"], true);
        // The CPU table has no direct column.
        assert_eq!(
            v["metrics"][1]["labels"],
            json!(["floor", "sixsocks", "microsocks"])
        );
    }
}
