//! The comparison's table: one [`Row`] per case and tool, its medians over
//! the runs that succeeded, rendered as Markdown and JSON.

use super::tools::Sample;
use std::fmt::Write as _;

/// One row of the table.
#[derive(Clone, Debug)]
pub struct Row {
    pub case: String,
    pub tool: String,
    pub runs: Vec<Sample>,
    pub bytes: u64,
}

/// The median (NaN for no values).
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

impl Row {
    fn ok(&self) -> Vec<&Sample> {
        self.runs.iter().filter(|s| s.ok).collect()
    }
    pub fn secs(&self) -> f64 {
        median(self.ok().iter().map(|s| s.secs).collect())
    }
    fn goodput(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.secs() / 1e6
    }
    fn med(&self, f: impl Fn(&Sample) -> f64) -> f64 {
        median(self.ok().iter().map(|s| f(s)).collect())
    }
}

/// The Markdown table and the JSON document of `rows`.
pub fn render(rows: &[Row]) -> (String, serde_json::Value) {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| case | tool | ok runs | wall time (median) | goodput | wire bytes per delivered byte | CPU s, all hosts (sender) | peak RSS sender / receiver | mdp's speed-up |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
    let mut json = Vec::new();
    for r in rows {
        let mdp = rows
            .iter()
            .find(|m| m.case == r.case && m.tool.starts_with("mdp"))
            .map(|m| m.secs());
        let speedup = match mdp {
            Some(m) if !r.tool.starts_with("mdp") && r.secs().is_finite() => {
                format!("{:.1}×", r.secs() / m)
            }
            Some(_) if !r.tool.starts_with("mdp") => "peer failed".into(),
            _ => "".into(),
        };
        let ok = r.ok().len();
        let mut notes: Vec<String> = r
            .runs
            .iter()
            .filter(|s| !s.note.is_empty())
            .map(|s| s.note.clone())
            .collect();
        notes.dedup();
        let _ = writeln!(
            md,
            "| {} | {} | {}/{}{} | {:.2} s | {:.0} Mbit/s | {:.3} | {:.2} ({:.2}) | {:.0} / {:.0} MiB | {} |",
            r.case,
            r.tool,
            ok,
            r.runs.len(),
            if notes.is_empty() {
                String::new()
            } else {
                format!(" ({})", notes.join("; "))
            },
            r.secs(),
            r.goodput(),
            r.med(|s| s.wire),
            r.med(|s| s.cpu),
            r.med(|s| s.cpu_send),
            r.med(|s| s.rss_send_kb as f64) / 1024.0,
            r.med(|s| s.rss_recv_kb as f64) / 1024.0,
            speedup
        );
        json.push(serde_json::json!({
            "case": r.case,
            "tool": r.tool,
            "runs": r.runs.len(),
            "ok_runs": ok,
            "failures": notes,
            "secs_median": r.secs(),
            "goodput_mbps": r.goodput(),
            "wire_per_byte": r.med(|s| s.wire),
            "cpu_secs": r.med(|s| s.cpu),
            "cpu_sender_secs": r.med(|s| s.cpu_send),
            "rss_sender_kib": r.med(|s| s.rss_send_kb as f64),
            "rss_receiver_kib": r.med(|s| s.rss_recv_kb as f64),
            "secs_all": r.runs.iter().map(|s| s.secs).collect::<Vec<_>>(),
        }));
    }
    (md, serde_json::Value::Array(json))
}
