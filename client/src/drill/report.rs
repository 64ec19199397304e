//! The drill's report: phases with their durations, the workload, RPO and RTO, the lag at
//! the start, and the comparison — as JSON and as text for a human.

use serde::Serialize;

use super::sites::BucketPair;
use super::verify::Comparison;
use super::workload::WorkloadReport;
use super::Mode;

#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub name: String,
    pub seconds: f64,
    pub note: String,
}

/// The acknowledged changes the target did not have when the link was cut or the source
/// fenced: versions, their bytes, and how many seconds of writes they span.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Rpo {
    pub versions: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub examples: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Lag {
    pub region: String,
    pub peer: String,
    pub pending_versions: u64,
    pub pending_bytes: u64,
    pub lag_seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    pub mode: &'static str,
    pub run_id: String,
    pub buckets: Vec<BucketPair>,
    pub phases: Vec<Phase>,
    pub workload: Option<WorkloadReport>,
    pub rpo: Option<Rpo>,
    /// From the fence (or cut) to the first write the target accepted.
    pub rto_seconds: Option<f64>,
    /// Replication backlog of each region when the drill started.
    pub lag: Vec<Lag>,
    pub verify: Option<Comparison>,
    /// Run-time access keys or grants that differ between the regions (`None`: not
    /// compared, e.g. the credentials may not read keys).
    pub key_differences: Option<Vec<String>>,
    /// The regions ended identical (what the exit status says).
    pub identical: bool,
    pub error: Option<String>,
}

impl DrillReport {
    pub fn new(mode: &Mode, buckets: &[BucketPair], run_id: &str) -> DrillReport {
        DrillReport {
            mode: match mode {
                Mode::Verify => "verify",
                Mode::Failover => "failover",
                Mode::Outage => "outage",
            },
            run_id: run_id.to_owned(),
            buckets: buckets.to_vec(),
            phases: Vec::new(),
            workload: None,
            rpo: None,
            rto_seconds: None,
            lag: Vec::new(),
            verify: None,
            key_differences: None,
            identical: false,
            error: None,
        }
    }

    /// The report as text.
    pub fn human(&self) -> String {
        let mut out = format!("Meridian DR drill: {} (run {})\n", self.mode, self.run_id);
        for b in &self.buckets {
            out.push_str(&format!("  bucket {} -> {}\n", b.source, b.target));
        }
        for l in &self.lag {
            out.push_str(&format!(
                "  lag at start: {} -> {}: {} versions, {} bytes, {:.1} s\n",
                l.region, l.peer, l.pending_versions, l.pending_bytes, l.lag_seconds
            ));
        }
        out.push_str("phases:\n");
        for p in &self.phases {
            out.push_str(&format!(
                "  {:<10} {:>8.2} s  {}\n",
                p.name, p.seconds, p.note
            ));
        }
        if let Some(w) = &self.workload {
            out.push_str(&format!(
                "workload: {} changes acknowledged under {} ({} bytes) in {:.1} s, {} failed\n",
                w.acknowledged, w.prefix, w.bytes, w.seconds, w.failed
            ));
        }
        if let Some(r) = &self.rpo {
            out.push_str(&format!(
                "RPO: {} versions, {} bytes, {:.2} s of acknowledged writes not on the target\n",
                r.versions, r.bytes, r.seconds
            ));
            for e in &r.examples {
                out.push_str(&format!("  lost at cut: {e}\n"));
            }
        }
        if let Some(s) = self.rto_seconds {
            out.push_str(&format!(
                "RTO: {s:.2} s to the first write accepted by the target\n"
            ));
        }
        if let Some(c) = &self.verify {
            out.push_str(&format!(
                "verify: {} matching, {} missing on the target, {} extra on the target, {} different\n",
                c.matching, c.missing, c.extra, c.different
            ));
            for e in &c.examples {
                out.push_str(&format!("  {e}\n"));
            }
        }
        if let Some(d) = &self.key_differences {
            out.push_str(&format!("access keys: {} differences\n", d.len()));
            for e in d {
                out.push_str(&format!("  {e}\n"));
            }
        }
        if let Some(e) = &self.error {
            out.push_str(&format!("error: {e}\n"));
        }
        out.push_str(if self.identical {
            "result: the regions are identical\n"
        } else {
            "result: the regions are NOT identical\n"
        });
        out
    }
}
