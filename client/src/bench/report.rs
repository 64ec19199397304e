//! The result of a run: what was measured and with which settings, as a readable table or as
//! JSON (`--json`). The JSON field names are the stable interface `make bench` and other
//! tools read; MB means 10^6 bytes, latencies are milliseconds.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::bench::stats::OpTally;

/// The settings a run used, quoted back in its report. Fields that only some workloads have
/// are omitted from the JSON when unset.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub endpoint: String,
    /// The CA an `https://` endpoint was verified against, when not the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<std::path::PathBuf>,
    pub region: String,
    pub bucket: String,
    /// Keys are `<prefix>obj-<index>`.
    pub prefix: String,
    pub size_bytes: u64,
    /// `size_bytes` in the unit it was given in, e.g. `64KiB`.
    pub size: String,
    pub concurrency: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_limit_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Distinct keys the workload cycles through.
    pub keys: u64,
    pub part_size_bytes: u64,
    pub part_concurrency: usize,
    /// Objects larger than this are written with multipart uploads when pre-populating.
    pub multipart_threshold_bytes: u64,
    pub verify: bool,
    pub tolerate_errors: bool,
    /// Whether the untimed pre-population ran (GET, mixed, list and delete workloads).
    pub prepared: bool,
    pub op_timeout_s: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub get_ratio: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranged: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_keys: Option<u32>,
    /// The bucket default encryption the run set (`AES256`, `aws:kms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_encryption: Option<String>,
}

/// Latency percentiles of successful operations, in milliseconds (0 when there were none).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyMs {
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl LatencyMs {
    fn of(tally: &OpTally) -> LatencyMs {
        let h = &tally.latency_us;
        if h.is_empty() {
            return LatencyMs::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        LatencyMs {
            mean: h.mean() / 1000.0,
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        }
    }
}

/// Measurements of one kind of operation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OpReport {
    pub ops: u64,
    pub errors: u64,
    pub bytes: u64,
    pub objects: u64,
    pub ops_per_sec: f64,
    pub mb_per_sec: f64,
    pub objects_per_sec: f64,
    pub latency_ms: LatencyMs,
    pub errors_by_code: BTreeMap<String, u64>,
}

impl OpReport {
    /// The report of `tally` over a run of `elapsed`.
    pub fn of(tally: &OpTally, elapsed: Duration) -> OpReport {
        let secs = elapsed.as_secs_f64().max(1e-9);
        OpReport {
            ops: tally.ops,
            errors: tally.error_count(),
            bytes: tally.bytes,
            objects: tally.objects,
            ops_per_sec: tally.ops as f64 / secs,
            mb_per_sec: tally.bytes as f64 / secs / 1e6,
            objects_per_sec: tally.objects as f64 / secs,
            latency_ms: LatencyMs::of(tally),
            errors_by_code: tally.errors.clone(),
        }
    }
}

/// A finished run. The top-level figures cover the workload's primary operations (e.g. `put`,
/// or `get` and `put` together for `mixed`); `operations` breaks them down by kind, including
/// secondary ones such as `upload_part`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub workload: String,
    pub settings: Settings,
    /// Wall time from the first operation's start to the last one's end.
    pub duration_s: f64,
    pub ops: u64,
    pub errors: u64,
    pub ops_per_sec: f64,
    pub bytes: u64,
    pub mb_per_sec: f64,
    pub latency_ms: LatencyMs,
    pub errors_by_code: BTreeMap<String, u64>,
    pub operations: BTreeMap<String, OpReport>,
    /// The kinds in `operations` that the top-level figures add up.
    #[serde(default)]
    pub primary_operations: Vec<String>,
    /// The first few error messages verbatim, to say what went wrong.
    #[serde(default)]
    pub error_examples: Vec<String>,
    /// CPU time (user + system) the load generator itself used during the timed run, to
    /// show whether the client could have been the bottleneck. `None` where not measured.
    #[serde(default)]
    pub client_cpu_s: Option<f64>,
}

impl Report {
    /// Builds a report from per-kind tallies; the kinds named in `primary` make up the
    /// top-level figures. Usable by any measurement that fills [`OpTally`]s (e.g. the
    /// gateway's `bench pipeline`).
    pub fn from_tallies(
        workload: &str,
        settings: Settings,
        elapsed: Duration,
        tallies: &BTreeMap<String, OpTally>,
        primary: &[&str],
        error_examples: Vec<String>,
    ) -> Report {
        let mut total = OpTally::default();
        for (name, tally) in tallies {
            if primary.contains(&name.as_str()) {
                total.merge(tally);
            }
        }
        let top = OpReport::of(&total, elapsed);
        Report {
            workload: workload.to_string(),
            settings,
            duration_s: elapsed.as_secs_f64(),
            ops: top.ops,
            errors: top.errors,
            ops_per_sec: top.ops_per_sec,
            bytes: top.bytes,
            mb_per_sec: top.mb_per_sec,
            latency_ms: top.latency_ms,
            errors_by_code: top.errors_by_code,
            operations: tallies
                .iter()
                .map(|(name, t)| (name.clone(), OpReport::of(t, elapsed)))
                .collect(),
            primary_operations: primary.iter().map(|p| p.to_string()).collect(),
            error_examples,
            client_cpu_s: None,
        }
    }

    /// Whether the process should exit successfully: no errors, or `--tolerate-errors`.
    pub fn exit_ok(&self) -> bool {
        self.errors == 0 || self.settings.tolerate_errors
    }

    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serialises")
    }

    /// The readable table, as printed by [`Report::print_table`].
    pub fn table(&self) -> String {
        let s = &self.settings;
        let mut out = String::new();
        let limit = match (s.count, s.duration_limit_s) {
            (Some(n), _) => format!("count {n}"),
            (None, Some(d)) => format!("duration {d} s"),
            (None, None) => String::new(),
        };
        let _ = writeln!(
            out,
            "meridian bench {}: {} objects, {} keys, concurrency {}, {limit}, {} / {}{}",
            self.workload,
            s.size,
            s.keys,
            s.concurrency,
            s.endpoint,
            s.bucket,
            if s.verify { ", verified" } else { "" }
        );
        let _ = writeln!(
            out,
            "{:<12} {:>9} {:>11} {:>10} {:>9} {:>9} {:>9} {:>9} {:>7}",
            "operation", "ops", "ops/s", "MB/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors"
        );
        let row = |out: &mut String, name: &str, r: &OpReport| {
            let l = &r.latency_ms;
            let _ = writeln!(
                out,
                "{name:<12} {:>9} {:>11.1} {:>10.1} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>7}",
                r.ops, r.ops_per_sec, r.mb_per_sec, l.p50, l.p90, l.p99, l.max, r.errors
            );
        };
        for (name, r) in &self.operations {
            row(&mut out, name, r);
        }
        if self.primary_operations.len() > 1 {
            let total = OpReport {
                ops: self.ops,
                errors: self.errors,
                ops_per_sec: self.ops_per_sec,
                mb_per_sec: self.mb_per_sec,
                latency_ms: self.latency_ms.clone(),
                ..OpReport::default()
            };
            row(&mut out, "total", &total);
        }
        if let Some(list) = self.operations.get("list") {
            let _ = writeln!(
                out,
                "listed {} keys, {:.0} keys/s",
                list.objects, list.objects_per_sec
            );
        }
        let _ = write!(out, "elapsed {:.2} s", self.duration_s);
        if let Some(cpu) = self.client_cpu_s {
            let cores = cpu / self.duration_s.max(1e-9);
            let _ = write!(out, ", client CPU {cpu:.2} s ({cores:.2} cores)");
        }
        out.push('\n');
        if !self.errors_by_code.is_empty() {
            let codes: Vec<String> = self
                .errors_by_code
                .iter()
                .map(|(c, n)| format!("{c} {n}"))
                .collect();
            let _ = writeln!(out, "errors: {}", codes.join(", "));
            for example in &self.error_examples {
                let _ = writeln!(out, "  e.g. {example}");
            }
        }
        out
    }

    /// Prints [`Report::table`] to stdout.
    pub fn print_table(&self) {
        print!("{}", self.table());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let mut get = OpTally::default();
        for ms in 1..=100 {
            get.record_ok(Duration::from_millis(ms), 1_000_000, 1);
        }
        get.record_error("ContentMismatch");
        let mut put = OpTally::default();
        put.record_ok(Duration::from_millis(5), 1_000_000, 1);
        let tallies = BTreeMap::from([("get".to_string(), get), ("put".to_string(), put)]);
        let settings = Settings {
            endpoint: "http://127.0.0.1:9000".into(),
            bucket: "bench".into(),
            size_bytes: 1_000_000,
            size: "1000000B".into(),
            concurrency: 4,
            count: Some(102),
            keys: 10,
            get_ratio: Some(0.7),
            ..Settings::default()
        };
        Report::from_tallies(
            "mixed",
            settings,
            Duration::from_secs(2),
            &tallies,
            &["get", "put"],
            vec!["bench/k: content differs".into()],
        )
    }

    #[test]
    fn top_level_figures_add_up_the_primary_operations() {
        let r = sample();
        assert_eq!(r.ops, 101);
        assert_eq!(r.errors, 1);
        assert_eq!(r.bytes, 101_000_000);
        assert!((r.ops_per_sec - 50.5).abs() < 1e-9);
        assert!((r.mb_per_sec - 50.5).abs() < 1e-9);
        assert_eq!(r.errors_by_code.get("ContentMismatch"), Some(&1));
        assert_eq!(r.operations["get"].ops, 100);
        let p50 = r.operations["get"].latency_ms.p50;
        assert!((49.0..=51.0).contains(&p50), "p50 {p50}");
        assert!((r.operations["get"].latency_ms.max - 100.0).abs() < 0.1);
    }

    #[test]
    fn json_has_the_documented_shape_and_round_trips() {
        let r = sample();
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        for field in [
            "workload",
            "settings",
            "duration_s",
            "ops",
            "errors",
            "ops_per_sec",
            "bytes",
            "mb_per_sec",
        ] {
            assert!(json.get(field).is_some(), "missing {field}");
        }
        for field in ["p50", "p90", "p99", "max", "mean"] {
            assert!(
                json["latency_ms"][field].is_number(),
                "missing latency_ms.{field}"
            );
        }
        assert_eq!(json["errors_by_code"]["ContentMismatch"], 1);
        assert_eq!(json["operations"]["put"]["ops"], 1);
        assert_eq!(
            json["primary_operations"],
            serde_json::json!(["get", "put"])
        );
        assert_eq!(json["settings"]["concurrency"], 4);
        assert_eq!(json["settings"]["get_ratio"], 0.7);
        assert!(
            json["settings"].get("ranged").is_none(),
            "unset workload options are omitted"
        );
        let back: Report = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(
            (back.ops, back.errors, back.bytes),
            (r.ops, r.errors, r.bytes)
        );
        assert_eq!(back.errors_by_code, r.errors_by_code);
        assert_eq!(back.operations.keys().collect::<Vec<_>>(), ["get", "put"]);
    }

    #[test]
    fn errors_fail_the_run_unless_tolerated() {
        let mut r = sample();
        assert!(!r.exit_ok());
        r.settings.tolerate_errors = true;
        assert!(r.exit_ok());
        let clean = Report::from_tallies(
            "put",
            Settings::default(),
            Duration::from_secs(1),
            &BTreeMap::new(),
            &[],
            vec![],
        );
        assert!(clean.exit_ok());
        assert_eq!(clean.latency_ms, LatencyMs::default());
    }

    #[test]
    fn table_names_each_operation_the_total_and_the_errors() {
        let table = sample().table();
        for needle in [
            "meridian bench mixed",
            "get ",
            "put ",
            "total",
            "ContentMismatch 1",
            "content differs",
        ] {
            assert!(table.contains(needle), "table lacks {needle:?}:\n{table}");
        }
    }
}
