//! The final reports, as text for people and JSON for scripts. The JSON
//! schema is documented in docs/REPORT.md.

use mdp_proto::wire::{FailReason, HookOutcome};
use mdp_proto::{Manifest, ObjectId, ReceiverStats, SenderReport, SessionOutcome, Verdict};
use serde::Serialize;
use std::time::{Duration, SystemTime};

/// What the receiver's report needs to know of a push beyond its outcome.
#[derive(Clone, Debug)]
pub struct PushSpan {
    /// This receiver's node name.
    pub node: String,
    /// When its manifest arrived.
    pub started: SystemTime,
}

/// `t` as RFC 3339 in UTC with milliseconds: `2026-12-04T07:52:31.123Z`.
pub fn timestamp(t: SystemTime) -> String {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// The proleptic Gregorian date of a day count from 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `mdp-send --json` output.
#[derive(Debug, Serialize)]
pub struct SendJson {
    /// Tool version.
    pub mdp: &'static str,
    /// Session id (hex).
    pub session: String,
    /// This host's name.
    pub host: String,
    /// When the push started (the files were hashed from here on) and
    /// ended, UTC, RFC 3339.
    pub started_at: String,
    /// See `started_at`.
    pub ended_at: String,
    /// The files and directories pushed, as given.
    pub roots: Vec<String>,
    /// Paths `--exclude` left out (a directory counts once).
    pub excluded: usize,
    /// A dry run (`--dry-run`): no file data was sent; each receiver's
    /// `verified` and `missing` say what it holds and lacks.
    pub dry_run: bool,
    /// True when every expected receiver confirmed every file.
    pub success: bool,
    /// The process exit code.
    pub exit_code: i32,
    /// Why not a success.
    pub problem: Option<String>,
    /// True when `--timeout` ended the push.
    pub timed_out: bool,
    /// Receivers whose confirmation is required: `--receivers`, or the
    /// number of `--expect` names (0: open group).
    pub expected: u32,
    /// Expected receivers that confirmed every file.
    pub confirmed: u32,
    /// Files pushed.
    pub files: u32,
    /// File bytes pushed.
    pub bytes: u64,
    /// Bytes of file data per DATA datagram.
    pub symbol_size: u16,
    /// The AEAD the push was encrypted with ("AES-256-GCM",
    /// "ChaCha20-Poly1305"), or null when it was not encrypted.
    pub encryption: Option<&'static str>,
    /// Wall time of the push.
    pub elapsed_secs: f64,
    /// File bytes per second of wall time, in Mbit/s.
    pub goodput_mbps: f64,
    /// One entry per receiver.
    pub receivers: Vec<ReceiverJson>,
    /// Receivers that confirmed every file but whose push hook failed
    /// (exit code 3 when the push is otherwise a success).
    pub hook_failures: Vec<String>,
    /// Counters.
    pub stats: SendStatsJson,
    /// Rate control.
    pub rate: RateJson,
}

/// How the rate behaved, in [`SendJson`].
#[derive(Debug, Serialize)]
pub struct RateJson {
    /// `adaptive` or `fixed`.
    pub mode: &'static str,
    /// Rate at the end, Mbit/s.
    pub final_mbps: f64,
    /// Lowest rate set, Mbit/s.
    pub lowest_mbps: f64,
    /// The receiver the push was paced to (most congestion cuts), if any.
    pub limited_by: Option<String>,
    /// Congestion cuts it caused.
    pub cuts: u32,
}

/// One receiver in [`SendJson`].
#[derive(Debug, Serialize)]
pub struct ReceiverJson {
    /// Node id (hex); null for an expected receiver that never registered.
    pub node: Option<String>,
    /// Node name.
    pub name: String,
    /// With receivers known by key (`--expect-file` with keys): the
    /// fingerprint of its key, `SHA256:…`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Its confirmation is required for success.
    pub expected: bool,
    /// `confirmed`, `failed`, `incomplete`, `dropped` or `never_registered`.
    pub verdict: &'static str,
    /// For `dropped`: `silent` or `too_slow`.
    pub dropped_because: Option<&'static str>,
    /// For `dropped` because `silent`: seconds it had been silent.
    pub silent_secs: Option<f64>,
    /// For `dropped` because `too_slow`: the rate that reached it, Mbit/s.
    pub delivered_mbps: Option<f64>,
    /// Files it verified and placed.
    pub verified: u32,
    /// Files it still missed (first 32).
    pub missing: Vec<String>,
    /// Files that failed there.
    pub failed: Vec<FailedJson>,
    /// How its push hook (`mdp-recv --exec`) ended; null when it ran none
    /// (no hook configured, or it did not confirm).
    pub hook: Option<HookJson>,
    /// The relay it is behind, by name (absent: it heard this sender
    /// directly); a relay that went silent takes its hosts with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

/// A receiver's push hook, in [`ReceiverJson`].
#[derive(Debug, Serialize)]
pub struct HookJson {
    /// `succeeded`, `exited` (non-zero status), `killed` (a signal or its
    /// time limit) or `not_started`.
    pub result: &'static str,
    /// For `exited`: its exit status.
    pub exit_code: Option<u8>,
}

impl From<HookOutcome> for HookJson {
    fn from(h: HookOutcome) -> Self {
        let (result, exit_code) = match h {
            HookOutcome::Succeeded => ("succeeded", None),
            HookOutcome::Exited(code) => ("exited", Some(code)),
            HookOutcome::Killed => ("killed", None),
            HookOutcome::NotStarted => ("not_started", None),
        };
        HookJson { result, exit_code }
    }
}

/// A failed file.
#[derive(Debug, Serialize)]
pub struct FailedJson {
    /// Relative path.
    pub path: String,
    /// `hash_mismatch` or `io`.
    pub reason: &'static str,
}

/// Sender counters.
#[derive(Debug, Serialize)]
pub struct SendStatsJson {
    /// Datagrams sent.
    pub packets_sent: u64,
    /// UDP payload bytes sent.
    pub bytes_sent: u64,
    /// `bytes_sent` / file bytes.
    pub wire_bytes_per_file_byte: f64,
    /// Symbols sent once.
    pub data_symbols: u64,
    /// Repair symbols sent.
    pub repair_symbols: u64,
    /// NACKs received.
    pub nacks_received: u64,
    /// Files not sent because every receiver already had them.
    pub skipped_files: u64,
    /// Blocks of other files not sent because every receiver had them
    /// from an interrupted push.
    pub skipped_blocks: u64,
    /// Bytes of the skipped files and blocks.
    pub skipped_bytes: u64,
    /// Feedback that failed authentication.
    pub auth_failed: u64,
    /// Authentic feedback dropped as a replay.
    pub replayed: u64,
}

fn reason(r: FailReason) -> &'static str {
    match r {
        FailReason::HashMismatch => "hash_mismatch",
        FailReason::Io => "io",
        FailReason::Refused => "refused",
    }
}

impl SendJson {
    /// Builds the JSON view of a report of a push of `roots` that started
    /// at `started` and took `elapsed`.
    pub fn new(
        r: &SenderReport,
        files: u32,
        bytes: u64,
        (started, elapsed): (SystemTime, Duration),
        roots: Vec<String>,
        exit_code: i32,
    ) -> Self {
        let secs = elapsed.as_secs_f64().max(1e-9);
        SendJson {
            mdp: env!("CARGO_PKG_VERSION"),
            session: r.session.to_string(),
            host: mdp_net::recv::host_name(),
            started_at: timestamp(started),
            ended_at: timestamp(started + elapsed),
            roots,
            excluded: 0,
            dry_run: false,
            success: r.success,
            exit_code,
            problem: r.problem.clone(),
            timed_out: r.timed_out,
            expected: r.expected,
            confirmed: r.confirmed,
            files,
            bytes,
            symbol_size: r.symbol_size,
            encryption: r.encryption.map(|a| a.name()),
            elapsed_secs: elapsed.as_secs_f64(),
            goodput_mbps: bytes as f64 * 8.0 / secs / 1e6,
            receivers: r
                .receivers
                .iter()
                .map(|rr| ReceiverJson {
                    node: rr.node.map(|n| n.to_string()),
                    name: rr.name.clone(),
                    key: rr.key.clone(),
                    expected: rr.expected,
                    verdict: match rr.verdict {
                        Verdict::Confirmed => "confirmed",
                        Verdict::Failed => "failed",
                        Verdict::Incomplete => "incomplete",
                        Verdict::Dropped { .. } | Verdict::TooSlow { .. } => "dropped",
                        Verdict::NeverRegistered => "never_registered",
                        Verdict::DryRun => "dry_run",
                    },
                    dropped_because: match rr.verdict {
                        Verdict::Dropped { .. } => Some("silent"),
                        Verdict::TooSlow { .. } => Some("too_slow"),
                        _ => None,
                    },
                    silent_secs: match rr.verdict {
                        Verdict::Dropped { silent_for } => Some(silent_for.as_secs_f64()),
                        _ => None,
                    },
                    delivered_mbps: match rr.verdict {
                        Verdict::TooSlow { delivered_bps, .. } => Some(delivered_bps as f64 / 1e6),
                        _ => None,
                    },
                    verified: rr.verified,
                    missing: rr.missing.clone(),
                    failed: rr
                        .failed
                        .iter()
                        .map(|(p, r)| FailedJson {
                            path: p.clone(),
                            reason: reason(*r),
                        })
                        .collect(),
                    hook: rr.hook.map(HookJson::from),
                    via: rr.via.clone(),
                })
                .collect(),
            hook_failures: r.hook_failures().map(|rr| rr.name.clone()).collect(),
            stats: SendStatsJson {
                packets_sent: r.stats.packets_sent,
                bytes_sent: r.stats.bytes_sent,
                wire_bytes_per_file_byte: r.stats.bytes_sent as f64 / bytes.max(1) as f64,
                data_symbols: r.stats.data_symbols_sent,
                repair_symbols: r.stats.repair_symbols_sent,
                nacks_received: r.stats.nacks_received,
                skipped_files: r.stats.files_skipped,
                skipped_blocks: r.stats.blocks_skipped,
                skipped_bytes: r.stats.bytes_skipped,
                auth_failed: r.stats.auth_failed,
                replayed: r.stats.replayed,
            },
            rate: RateJson {
                mode: if r.rate.adaptive { "adaptive" } else { "fixed" },
                final_mbps: r.rate.final_bps as f64 / 1e6,
                lowest_mbps: r.rate.lowest_bps as f64 / 1e6,
                limited_by: r.rate.limited_by.as_ref().map(|(n, _)| n.clone()),
                cuts: r.rate.limited_by.as_ref().map_or(0, |(_, c)| *c),
            },
        }
    }

    /// Unicast mode: each datagram went out `copies` times (once per
    /// `--to`); the byte and packet counts say so.
    pub fn count_copies(&mut self, copies: u64) {
        self.stats.packets_sent *= copies;
        self.stats.bytes_sent *= copies;
        self.stats.wire_bytes_per_file_byte *= copies as f64;
    }

    /// The report for people, several lines.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let status = match (self.dry_run, self.success) {
            (true, true) => "DRY RUN",
            (true, false) => "DRY RUN FAILED",
            (false, true) if !self.hook_failures.is_empty() => "HOOK FAILED",
            (false, true) => "OK",
            (false, false) => "FAILED",
        };
        out.push_str(&format!(
            "mdp-send: {status}: {} files, {} in {:.2}s ({:.0} Mbit/s), session {}\n",
            self.files,
            crate::human_bytes(self.bytes),
            self.elapsed_secs,
            self.goodput_mbps,
            self.session
        ));
        for r in &self.receivers {
            if r.verdict == "dry_run" {
                let mut line = if r.missing.is_empty() {
                    format!("  {:<24} holds all {} files", r.name, self.files)
                } else {
                    format!(
                        "  {:<24} holds {} of {} files, lacks: {}",
                        r.name,
                        r.verified,
                        self.files,
                        r.missing.join(", ")
                    )
                };
                if self.files as usize - r.verified as usize > r.missing.len() {
                    line.push_str(", ...");
                }
                out.push_str(&line);
                out.push('\n');
                continue;
            }
            let mut line = format!("  {:<24} {:<10} {} files", r.name, r.verdict, r.verified);
            if let Some(k) = &r.key {
                line.push_str(&format!(", key {k}"));
            }
            if let Some(v) = &r.via {
                line.push_str(&format!(", via relay {v}"));
            }
            if let Some(s) = r.silent_secs {
                line.push_str(&format!(", silent for {s:.1}s"));
            }
            if let Some(m) = r.delivered_mbps {
                line.push_str(&format!(", too slow: took {m:.1} Mbit/s, below --min-rate"));
            }
            if !r.missing.is_empty() {
                line.push_str(&format!(", missing: {}", r.missing.join(", ")));
            }
            for f in &r.failed {
                line.push_str(&format!(", {} failed ({})", f.path, f.reason));
            }
            if let Some(h) = &r.hook {
                line.push_str(&format!(", hook {}", h.result.replace('_', " ")));
                if let Some(code) = h.exit_code {
                    line.push_str(&format!(" (status {code})"));
                }
            }
            out.push_str(&line);
            out.push('\n');
        }
        if let Some(p) = &self.problem {
            out.push_str(&format!("mdp-send: {p}\n"));
        } else if !self.hook_failures.is_empty() {
            out.push_str(&format!(
                "mdp-send: every file was delivered, but the push hook failed on {}: see mdp-recv's log there (journalctl -u mdp-recv)\n",
                self.hook_failures.join(", ")
            ));
        }
        out.push_str(&match (&self.rate.limited_by, self.rate.mode) {
            (_, "fixed") => format!("  rate: fixed at {:.0} Mbit/s\n", self.rate.final_mbps),
            (Some(who), _) => format!(
                "  rate: adaptive, paced to {who} ({} congestion cuts; lowest {:.0}, final {:.0} Mbit/s)\n",
                self.rate.cuts, self.rate.lowest_mbps, self.rate.final_mbps
            ),
            (None, _) => format!(
                "  rate: adaptive, no receiver reported congestion (final {:.0} Mbit/s)\n",
                self.rate.final_mbps
            ),
        });
        out.push_str(&format!(
            "  wire: {} datagrams, {:.3} bytes per file byte, {} repairs, {} NACKs\n",
            self.stats.packets_sent,
            self.stats.wire_bytes_per_file_byte,
            self.stats.repair_symbols,
            self.stats.nacks_received
        ));
        if self.stats.skipped_files > 0 {
            out.push_str(&format!(
                "  sync: {} files ({}) not sent, every receiver had them\n",
                self.stats.skipped_files,
                crate::human_bytes(self.stats.skipped_bytes)
            ));
        }
        out
    }
}

/// `mdp-recv --json` output, one object per session.
#[derive(Debug, Serialize)]
pub struct RecvJson {
    /// Tool version.
    pub mdp: &'static str,
    /// Session id (hex).
    pub session: String,
    /// This receiver's node name (the host name unless --node-id).
    pub node: String,
    /// When the push was first heard and when it ended, UTC, RFC 3339.
    pub started_at: String,
    /// See `started_at`.
    pub ended_at: String,
    /// Seconds from the first to the last.
    pub elapsed_secs: f64,
    /// The push's top-level paths.
    pub roots: Vec<String>,
    /// File bytes in the push.
    pub bytes: u64,
    /// True when every file was verified and placed.
    pub complete: bool,
    /// Why not.
    pub problem: Option<String>,
    /// Files in the session.
    pub files: u32,
    /// Files verified and placed.
    pub verified: u32,
    /// The files that failed, by path, with the reason.
    pub failed: Vec<FailedJson>,
    /// Datagrams received.
    pub packets_received: u64,
    /// NACKs sent.
    pub nacks_sent: u64,
    /// Blocks rebuilt with Reed-Solomon.
    pub blocks_decoded: u64,
    /// Blocks rebuilt that did not match their hash (a forged or corrupt
    /// symbol went into them): not written, received again.
    pub blocks_rejected: u64,
    /// DATA symbols of the session received.
    pub symbols_received: u64,
    /// Of those, symbols that were not needed (block already complete).
    pub symbols_redundant: u64,
    /// Blocks asked for in NACKs.
    pub nack_entries_sent: u64,
    /// Blocks not asked for because another receiver's NACK covered them.
    pub nack_entries_suppressed: u64,
    /// CONGESTION reports sent.
    pub congestion_sent: u64,
    /// Symbols dropped because the block buffer (`--buffer`) was full.
    pub dropped_no_buffer: u64,
    /// Most bytes of block memory held at once (bounded by `--buffer`).
    pub buffer_peak_bytes: u64,
    /// Datagrams that failed authentication (bad tag, or unsealed with a key).
    pub auth_failed: u64,
    /// Authenticated datagrams ignored for lack of a key.
    pub auth_no_key: u64,
    /// Authentic datagrams dropped as replays.
    pub replayed: u64,
    /// The sender's address (of its first ANNOUNCE), when known.
    pub sender: Option<String>,
    /// How the `--exec` hook ended (null: none ran).
    pub hook: Option<crate::hook::HookResult>,
    /// What the sender's `--delete` removed, relative to the directory.
    pub deleted: Vec<String>,
}

impl RecvJson {
    /// Builds the JSON view of an outcome of `push`.
    pub fn new(o: &SessionOutcome, s: &ReceiverStats, push: &PushSpan) -> Self {
        let manifest: Option<&Manifest> = o.manifest.as_deref();
        // Paths by object, looked up once however many files failed.
        let paths: std::collections::HashMap<ObjectId, &str> = match manifest {
            Some(m) if !o.failed.is_empty() => {
                m.files().map(|(id, e)| (id, e.path.as_str())).collect()
            }
            _ => Default::default(),
        };
        let path = |id: ObjectId| {
            paths
                .get(&id)
                .map_or_else(|| format!("object {}", id.0), |p| p.to_string())
        };
        let mut roots: Vec<String> = manifest
            .iter()
            .flat_map(|m| m.entries.iter())
            .map(|e| e.path.split('/').next().unwrap_or_default().to_string())
            .collect();
        roots.dedup();
        let ended = SystemTime::now();
        RecvJson {
            mdp: env!("CARGO_PKG_VERSION"),
            session: o.session.to_string(),
            node: push.node.clone(),
            started_at: timestamp(push.started),
            ended_at: timestamp(ended),
            elapsed_secs: ended
                .duration_since(push.started)
                .unwrap_or_default()
                .as_secs_f64(),
            roots,
            bytes: manifest.map_or(0, |m| m.total_bytes()),
            complete: o.complete,
            problem: o.problem.as_ref().map(ToString::to_string),
            files: o.files,
            verified: o.verified,
            failed: o
                .failed
                .iter()
                .map(|(id, r)| FailedJson {
                    path: path(*id),
                    reason: reason(*r),
                })
                .collect(),
            packets_received: s.packets_received,
            nacks_sent: s.nacks_sent,
            blocks_decoded: s.blocks_decoded,
            blocks_rejected: s.blocks_rejected,
            symbols_received: s.symbols_received,
            symbols_redundant: s.symbols_redundant,
            nack_entries_sent: s.nack_entries_sent,
            nack_entries_suppressed: s.nack_entries_suppressed,
            congestion_sent: s.congestion_sent,
            dropped_no_buffer: s.dropped_no_buffer,
            buffer_peak_bytes: s.buffer_peak,
            auth_failed: s.auth_failed,
            auth_no_key: s.auth_no_key,
            replayed: s.replayed,
            sender: None,
            hook: None,
            deleted: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mdp_proto::{NodeId, ReceiverReport, SenderStats, SessionId};

    fn receiver(name: &str, verdict: Verdict) -> ReceiverReport {
        ReceiverReport {
            node: Some(NodeId(0xab)),
            name: name.into(),
            expected: true,
            verdict,
            verified: 1,
            missing: vec!["tree/x".into()],
            failed: vec![("tree/y".into(), FailReason::HashMismatch)],
            key: None,
            hook: None,
            via: None,
        }
    }

    #[test]
    fn every_verdict_is_named_in_json_and_text() {
        let report = SenderReport {
            session: SessionId(0x1234),
            success: false,
            expected: 5,
            confirmed: 1,
            problem: Some("2 of 3 receivers did not confirm every file".into()),
            timed_out: false,
            symbol_size: 1444,
            encryption: None,
            receivers: vec![
                receiver("a", Verdict::Confirmed),
                receiver(
                    "b",
                    Verdict::Dropped {
                        silent_for: Duration::from_millis(6200),
                    },
                ),
                receiver("c", Verdict::Failed),
                receiver(
                    "d",
                    Verdict::TooSlow {
                        delivered_bps: 2_500_000,
                        min_bps: 10_000_000,
                    },
                ),
                ReceiverReport {
                    node: None,
                    verified: 0,
                    failed: vec![],
                    ..receiver("e", Verdict::NeverRegistered)
                },
            ],
            stats: SenderStats {
                bytes_sent: 2040,
                ..Default::default()
            },
            rate: mdp_proto::RateSummary {
                adaptive: true,
                final_bps: 900_000_000,
                lowest_bps: 400_000_000,
                limited_by: Some(("a".into(), 3)),
            },
        };
        let started = SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_370_751_250);
        let j = SendJson::new(
            &report,
            2,
            2000,
            (started, Duration::from_secs(2)),
            vec!["site".into()],
            1,
        );
        let v: serde_json::Value = serde_json::to_value(&j).unwrap();
        assert_eq!(v["session"], "0000000000001234");
        assert_eq!(v["started_at"], "2026-12-04T07:52:31.250Z");
        assert_eq!(v["ended_at"], "2026-12-04T07:52:33.250Z");
        assert_eq!(v["roots"][0], "site");
        assert!(v["host"].as_str().is_some_and(|h| !h.is_empty()));
        assert_eq!(v["exit_code"], 1);
        assert_eq!(v["receivers"][0]["verdict"], "confirmed");
        assert_eq!(v["receivers"][1]["verdict"], "dropped");
        assert_eq!(v["receivers"][1]["silent_secs"], 6.2);
        assert_eq!(v["receivers"][2]["failed"][0]["reason"], "hash_mismatch");
        assert_eq!(v["receivers"][3]["verdict"], "dropped");
        assert_eq!(v["receivers"][3]["dropped_because"], "too_slow");
        assert_eq!(v["receivers"][3]["delivered_mbps"], 2.5);
        assert_eq!(v["receivers"][4]["verdict"], "never_registered");
        assert_eq!(v["receivers"][4]["node"], serde_json::Value::Null);
        assert_eq!(v["receivers"][4]["expected"], true);
        assert_eq!(v["confirmed"], 1);
        assert_eq!(v["rate"]["mode"], "adaptive");
        assert_eq!(v["rate"]["limited_by"], "a");
        assert_eq!(v["stats"]["wire_bytes_per_file_byte"], 1.02);
        assert_eq!(v["goodput_mbps"], 0.008);
        let text = j.text();
        assert!(text.starts_with("mdp-send: FAILED: 2 files"), "{text}");
        assert!(
            text.contains("dropped") && text.contains("silent for 6.2s"),
            "{text}"
        );
        assert!(text.contains("missing: tree/x"), "{text}");
        assert!(text.contains("too slow: took 2.5 Mbit/s"), "{text}");
        assert!(text.contains("never_registered"), "{text}");
        assert!(text.contains("paced to a (3 congestion cuts"), "{text}");
        assert!(
            text.contains("mdp-send: 2 of 3 receivers did not confirm every file"),
            "{text}"
        );
    }

    #[test]
    fn a_failed_hook_is_named_per_host_in_json_and_text() {
        let ok = |name: &str, hook| ReceiverReport {
            missing: vec![],
            failed: vec![],
            hook,
            ..receiver(name, Verdict::Confirmed)
        };
        let report = SenderReport {
            session: SessionId(0x99),
            success: true,
            expected: 3,
            confirmed: 3,
            problem: None,
            timed_out: false,
            symbol_size: 1444,
            encryption: None,
            receivers: vec![
                ok("web1", Some(HookOutcome::Succeeded)),
                ok("web2", Some(HookOutcome::Exited(7))),
                ok("web3", Some(HookOutcome::Killed)),
                ok("web4", None),
            ],
            stats: SenderStats::default(),
            rate: mdp_proto::RateSummary {
                adaptive: false,
                final_bps: 1,
                lowest_bps: 1,
                limited_by: None,
            },
        };
        let j = SendJson::new(
            &report,
            1,
            10,
            (SystemTime::UNIX_EPOCH, Duration::from_secs(1)),
            vec![],
            3,
        );
        let v: serde_json::Value = serde_json::to_value(&j).unwrap();
        assert_eq!(v["hook_failures"], serde_json::json!(["web2", "web3"]));
        assert_eq!(v["receivers"][0]["hook"]["result"], "succeeded");
        assert_eq!(v["receivers"][1]["hook"]["exit_code"], 7);
        assert_eq!(v["receivers"][2]["hook"]["result"], "killed");
        assert_eq!(v["receivers"][3]["hook"], serde_json::Value::Null);
        let text = j.text();
        assert!(text.starts_with("mdp-send: HOOK FAILED: 1 files"), "{text}");
        assert!(text.contains("hook exited (status 7)"), "{text}");
        assert!(text.contains("hook killed"), "{text}");
        assert!(
            text.contains("the push hook failed on web2, web3"),
            "{text}"
        );
    }

    #[test]
    fn timestamps_are_utc_rfc3339_across_leap_years_and_centuries() {
        let at = |secs: u64| timestamp(SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00.000Z");
        assert_eq!(at(4_107_542_399), "2100-02-28T23:59:59.000Z");
        assert_eq!(at(4_107_542_400), "2100-03-01T00:00:00.000Z");
    }
}
