//! The outcome of a push: each receiver's [`Verdict`], the
//! [`SenderReport`] built once when the session ends (`finish`), and the
//! counters ([`SenderStats`]).
//!
//! **Invariant:** the report says success only when every expected receiver
//! confirmed every file; a closed group's name registered twice counts once,
//! with its best verdict.

use super::*;

/// A receiver's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It confirmed every file.
    Confirmed,
    /// It finished, but some files failed (see `failed`).
    Failed,
    /// It had not confirmed when the session ended.
    Incomplete,
    /// It went silent and was dropped.
    Dropped {
        /// How long it had been silent.
        silent_for: Duration,
    },
    /// It could not take the minimum rate and was dropped.
    TooSlow {
        /// Its pace (bits per second) when it was dropped: the moving
        /// average of what it reported taking.
        delivered_bps: u64,
        /// The minimum rate of the push.
        min_bps: u64,
    },
    /// An expected receiver that never registered.
    NeverRegistered,
    /// A dry run (`mdp-send --dry-run`): it registered, and `verified` and
    /// `missing` say which files it holds and lacks; nothing was sent.
    DryRun,
}

impl Verdict {
    /// A short description for one-line summaries.
    pub fn describe(&self) -> &'static str {
        match self {
            Verdict::Confirmed => "confirmed",
            Verdict::Failed => "some files failed",
            Verdict::Incomplete => "incomplete",
            Verdict::Dropped { .. } => "dropped: silent",
            Verdict::TooSlow { .. } => "dropped: too slow",
            Verdict::NeverRegistered => "never registered",
            Verdict::DryRun => "dry run",
        }
    }
}

/// One receiver in the final report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiverReport {
    /// Node id (`None` for an expected receiver that never registered).
    pub node: Option<NodeId>,
    /// Name it registered with (or was expected under).
    pub name: String,
    /// True when its confirmation is required for success: every receiver
    /// of a group given by count, only the named ones of a closed group.
    pub expected: bool,
    /// Verdict.
    pub verdict: Verdict,
    /// Files verified and placed, as last reported.
    pub verified: u32,
    /// Files it still missed (the first few), by path.
    pub missing: Vec<String>,
    /// Files that failed, by path, with the reason.
    pub failed: Vec<(String, FailReason)>,
    /// With receivers known by key: the fingerprint of the key listed for
    /// its name (the one its feedback was signed with).
    pub key: Option<String>,
    /// How its push hook (`mdp-recv --exec`) ended, from its
    /// confirmation (`None`: it ran none, or did not confirm).
    pub hook: Option<HookOutcome>,
    /// The relay it is behind, by name (`None`: it heard this sender
    /// directly).
    pub via: Option<String>,
}

/// The outcome of a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SenderReport {
    /// Session id.
    pub session: SessionId,
    /// True when every expected receiver confirmed every file.
    pub success: bool,
    /// Receivers that were expected (0: open group).
    pub expected: u32,
    /// Expected receivers that confirmed every file.
    pub confirmed: u32,
    /// Why the session is not a success, in one line.
    pub problem: Option<String>,
    /// True when the session deadline ended it.
    pub timed_out: bool,
    /// Bytes of file data per DATA datagram (the session's symbol size).
    pub symbol_size: u16,
    /// The AEAD the push was encrypted with, if it was.
    pub encryption: Option<crate::crypto::Aead>,
    /// Every receiver that registered.
    pub receivers: Vec<ReceiverReport>,
    /// Counters at the end.
    pub stats: SenderStats,
    /// How the rate behaved.
    pub rate: RateSummary,
}

impl SenderReport {
    /// The expected receivers that confirmed every file but whose push
    /// hook failed (what was to follow the delivery there did not work).
    /// Hosts that were not expected (an open group's extra members, a name
    /// not listed) do not count.
    pub fn hook_failures(&self) -> impl Iterator<Item = &ReceiverReport> {
        self.receivers.iter().filter(|r| {
            r.expected && r.verdict == Verdict::Confirmed && r.hook.is_some_and(HookOutcome::failed)
        })
    }
}

/// The rate control's part of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateSummary {
    /// True for an adaptive rate, false for `--rate`.
    pub adaptive: bool,
    /// The rate at the end, bits per second.
    pub final_bps: u64,
    /// The lowest rate set, bits per second.
    pub lowest_bps: u64,
    /// The receiver whose congestion reports cut the rate most often (the
    /// one the push was paced to), with the number of cuts it caused.
    pub limited_by: Option<(String, u32)>,
}

/// Counters. `bytes_sent` counts UDP payload bytes of every datagram.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SenderStats {
    /// Datagrams sent.
    pub packets_sent: u64,
    /// UDP payload bytes sent.
    pub bytes_sent: u64,
    /// Source and proactive parity symbols sent once.
    pub data_symbols_sent: u64,
    /// Repair symbols sent in answer to NACKs.
    pub repair_symbols_sent: u64,
    /// Control datagrams sent.
    pub control_sent: u64,
    /// NACK datagrams received.
    pub nacks_received: u64,
    /// NACK entries received.
    pub nack_entries_received: u64,
    /// NACK datagrams ignored because their receiver was reporting that it
    /// takes less than the floor (`--min-rate`).
    pub nacks_below_floor: u64,
    /// Datagrams received that were not valid mdp packets for this session.
    pub ignored_received: u64,
    /// Blocks whose parity was computed.
    pub blocks_encoded: u64,
    /// CONGESTION reports received.
    pub congestion_received: u64,
    /// Bytes of file data the caller passed in.
    pub bytes_read: u64,
    /// Files not sent because every receiver already had them.
    pub files_skipped: u64,
    /// Blocks of other files not sent because every receiver already had
    /// them (from an interrupted push).
    pub blocks_skipped: u64,
    /// Bytes of the skipped files and blocks.
    pub bytes_skipped: u64,
    /// Feedback dropped by authentication (bad tag, unsealed with a key,
    /// sealed without one).
    pub auth_failed: u64,
    /// Authentic feedback dropped as a replay.
    pub replayed: u64,
    /// Feedback refused because its sender is not admitted: a REGISTER or
    /// STATUS not signed by the key listed for its name, a name not
    /// listed, or a NACK or CONGESTION from a receiver not admitted.
    pub unadmitted: u64,
    /// Session keys sealed for a receiver (one per admitted KEYREQ;
    /// re-sent copies not counted).
    pub keys_sent: u64,
    /// RELAY messages taken: a relay's receivers' REGISTER and STATUS.
    pub relayed_received: u64,
}

/// Files 1..`objects` that the ranges `have` cover.
fn held_files(have: &[(u32, u32)], objects: u32) -> u32 {
    crate::ranges::normalize(have, objects)
        .iter()
        .map(|&(first, count)| count - u32::from(first == 0).min(count))
        .sum()
}

/// Files 1..`objects` that the ranges `have` do not cover, in order,
/// walking the gaps (not every file).
fn lacking(have: &[(u32, u32)], objects: u32) -> impl Iterator<Item = u32> {
    let held = crate::ranges::normalize(have, objects);
    let mut gaps = Vec::new();
    let mut next = 1u32;
    for (first, count) in held {
        if first > next {
            gaps.push(next..first);
        }
        next = next.max(first.saturating_add(count));
    }
    gaps.push(next..objects);
    gaps.into_iter().flatten()
}

impl Sender {
    /// The fingerprint of the key `--expect-file` lists for `name`.
    fn key_of(&self, name: &str) -> Option<String> {
        self.config
            .expected_keys
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, k)| k.fingerprint())
    }

    pub(super) fn finish(&mut self, now: Instant) {
        self.phase = Phase::Done { sent: 0 };
        self.timers.stop_all();
        self.timers.set(Timer::Done, now);
        let mut receivers = Vec::new();
        let everything = || {
            self.paths[1..]
                .iter()
                .take(crate::limits::MAX_STATUS_OBJECTS)
                .cloned()
                .collect::<Vec<_>>()
        };
        let dry = self.config.dry_run;
        for (node, p) in &self.peers {
            let verdict = match p.state {
                PeerState::Active if dry => Verdict::DryRun,
                PeerState::Active => Verdict::Incomplete,
                PeerState::Confirmed => Verdict::Confirmed,
                PeerState::Failed => Verdict::Failed,
                PeerState::Dropped(d) => Verdict::Dropped { silent_for: d },
                PeerState::TooSlow(delivered_bps) => Verdict::TooSlow {
                    delivered_bps,
                    min_bps: self.cc.mode().min(),
                },
            };
            let path = |o: &ObjectId| match o.0 {
                0 => "(the push's tree)".to_string(),
                n => self.paths.get(n as usize).cloned().unwrap_or_default(),
            };
            receivers.push(ReceiverReport {
                node: Some(*node),
                key: self.key_of(&p.name),
                name: p.name.clone(),
                expected: self.is_expected(&p.name),
                verified: if dry {
                    held_files(&p.have, self.paths.len() as u32)
                } else {
                    p.verified
                },
                missing: if verdict == Verdict::Confirmed {
                    Vec::new()
                } else if dry {
                    lacking(&p.have, self.paths.len() as u32)
                        .map(|o| path(&ObjectId(o)))
                        .take(crate::limits::MAX_STATUS_OBJECTS)
                        .collect()
                } else if !p.status_seen {
                    // Never reported progress: it misses everything.
                    everything()
                } else {
                    p.missing.iter().map(path).collect()
                },
                failed: p.failed.iter().map(|(o, r)| (path(o), *r)).collect(),
                hook: p.hook,
                via: self.relay_name(node),
                verdict,
            });
        }
        for name in &self.config.expected_names {
            if !receivers.iter().any(|r| &r.name == name) {
                receivers.push(ReceiverReport {
                    node: None,
                    key: self.key_of(name),
                    name: name.clone(),
                    expected: true,
                    verdict: Verdict::NeverRegistered,
                    verified: 0,
                    missing: everything(),
                    failed: Vec::new(),
                    hook: None,
                    via: None,
                });
            }
        }
        // Of a name registered twice (two processes, or a restart), the
        // best verdict counts.
        let mut satisfied: Vec<&str> = Vec::new();
        let mut short: Vec<(&str, &'static str)> = Vec::new();
        // In a dry run, registering is all a receiver can do.
        let done = |v: &Verdict| *v == Verdict::Confirmed || *v == Verdict::DryRun;
        for r in receivers.iter().filter(|r| r.expected) {
            if done(&r.verdict) {
                satisfied.push(&r.name);
            }
        }
        let named = !self.config.expected_names.is_empty();
        for r in receivers.iter().filter(|r| r.expected) {
            let covered = named && satisfied.contains(&r.name.as_str());
            if !done(&r.verdict) && !covered {
                short.push((&r.name, r.verdict.describe()));
            }
        }
        let confirmed = if named {
            let mut names = satisfied.clone();
            names.sort_unstable();
            names.dedup();
            names.len()
        } else {
            satisfied.len()
        };
        let expected = self.expected_count();
        let list = |v: &[(&str, &str)]| {
            let mut s: Vec<String> = v
                .iter()
                .take(5)
                .map(|(n, d)| format!("{n} ({d})"))
                .collect();
            if v.len() > 5 {
                s.push(format!("and {} more", v.len() - 5));
            }
            s.join(", ")
        };
        let problem = if let Some(reason) = &self.aborted {
            Some(reason.clone())
        } else if receivers.is_empty() {
            Some("no receiver registered: is mdp-recv running and joined to the same group and interface?".to_string())
        } else if !short.is_empty() {
            let of = if expected > 0 {
                expected
            } else {
                receivers.len()
            };
            Some(format!(
                "{} of {} receivers did not confirm every file: {}",
                of - confirmed.min(of),
                of,
                list(&short)
            ))
        } else if confirmed < expected {
            Some(format!(
                "only {confirmed} of {expected} expected receivers registered"
            ))
        } else {
            None
        };
        let problem = match problem {
            Some(p) if self.timed_out => Some(format!(
                "timed out after {}s: {p}",
                self.config.timeout.as_secs()
            )),
            other => other,
        };
        self.report = Some(Arc::new(SenderReport {
            session: self.config.session,
            success: problem.is_none(),
            expected: expected as u32,
            confirmed: confirmed as u32,
            problem,
            timed_out: self.timed_out,
            symbol_size: self.config.symbol_size,
            encryption: self.config.encryption.as_ref().map(|e| e.aead),
            receivers,
            stats: self.stats,
            rate: RateSummary {
                adaptive: matches!(self.cc.mode(), RateMode::Adaptive { .. }),
                final_bps: self.cc.rate_bps(),
                lowest_bps: self.cc.lowest_bps(),
                limited_by: self.cc.limiting().map(|(node, cuts)| {
                    let name = self
                        .peers
                        .get(&node)
                        .map_or_else(|| node.to_string(), |p| p.name.clone());
                    (name, cuts)
                }),
            },
        }));
    }
}
