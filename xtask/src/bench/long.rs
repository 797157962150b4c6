//! Long pushes: files far larger than socket buffers and caches, where a
//! receiver must keep up for many seconds (its CPU, its memory, its disk),
//! beside a `dd` copy of the same file to the same place, and a push to
//! four receivers of which one runs under a CPU quota. mdp's alone: the
//! rows measure whether a push settles at the slowest receiver's pace
//! without overrunning it (repair symbols, congestion cuts), and what a
//! byte costs when the push is long (time per byte against the 256 MiB
//! row of the same run).
//!
//! **Invariant:** every copy a run made is checked against the source and
//! removed before the next run, and the tmpfs the receivers write to is
//! unmounted when the cases end, whatever happened.

use super::net::{Loopback, Net, Place};
use super::table::median;
use super::tools::wait_limit;
use crate::root;
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const GIB: u64 = 1 << 30;
/// The long push's size.
const LONG: u64 = 5 * GIB;
/// The slowed case's size.
const SLOWED: u64 = GIB;
/// The slowed receiver's share of one core: small enough that its pace is
/// well below the others' on the bridge, so that a floor between them
/// exists (docs/BENCHMARKS-HISTORY.md has why it is not 15 %).
const SLOW_CPU_PERCENT: u32 = 10;
/// The floor of the slowed case that drops the slow receiver:
/// [`SLOW_FLOOR_SHARE`] of the goodput of the push to four that nothing
/// slows, on the same network in the same run (its rate during the data is
/// higher still: the goodput counts the start and the flush); a host that
/// cannot keep up with its peers' pace is dropped. Not a fraction of the
/// slowed host's own goodput: paced to it, a push runs below what the host
/// could take when held higher. [`SLOW_FLOOR_DEFAULT`] when that row did
/// not run.
const SLOW_FLOOR: &str = "at 90 % of";
const SLOW_FLOOR_SHARE: f64 = 0.9;
const SLOW_FLOOR_DEFAULT: &str = "900M";
/// The floor row's name.
const FLOOR: &str = "long: testbed floor, 5 GiB of datagrams to 1 host that reads them";
/// Longest one run may take.
const LIMIT: Duration = Duration::from_secs(300);

/// Where the receivers write.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Dest {
    Tmpfs,
    Disk,
}

impl Dest {
    fn label(self) -> &'static str {
        match self {
            Dest::Tmpfs => "tmpfs",
            Dest::Disk => "the disk, durable",
        }
    }
}

/// One case of the long rows.
#[derive(Clone, Debug)]
enum Case {
    /// A push of `bytes` to `n` receivers writing to `dest`; with `slow`,
    /// the last one runs under a CPU quota; `floor`: `--min-rate`.
    Push {
        bytes: u64,
        n: usize,
        dest: Dest,
        slow: bool,
        floor: Option<&'static str>,
    },
    /// `dd` of `bytes` to `dest` (with `conv=fsync` on the disk).
    Dd { bytes: u64, dest: Dest },
}

impl Case {
    fn name(&self) -> String {
        let size = |b: u64| {
            if b >= GIB {
                format!("{} GiB", b / GIB)
            } else {
                format!("{} MiB", b >> 20)
            }
        };
        match self {
            Case::Push {
                bytes,
                n,
                dest,
                slow,
                floor,
            } => {
                let mut s = format!("long: {} to {n} ({})", size(*bytes), dest.label());
                if *slow {
                    let _ = write!(s, ", one at {SLOW_CPU_PERCENT} % of a core");
                }
                if let Some(f) = floor {
                    let _ = write!(s, ", --min-rate {f} the others' pace");
                }
                s
            }
            Case::Dd { bytes, dest } => format!(
                "long: dd of {} to {}{}",
                size(*bytes),
                dest.label(),
                if *dest == Dest::Disk {
                    " (conv=fsync)"
                } else {
                    ""
                }
            ),
        }
    }
}

/// What one run measured.
#[derive(Clone, Debug, Default)]
struct Sample {
    ok: bool,
    secs: f64,
    repairs: f64,
    wire: f64,
    cuts: f64,
    note: String,
}

/// The long rows on the bridge and on loopback, for the cases `wanted`
/// selects; prints their table and writes target/bench/long.{md,json}.
pub fn long(bin: &Path, runs: usize, wanted: &dyn Fn(&str) -> bool) -> Result<()> {
    let work = root().join("target/bench/long");
    fs::create_dir_all(&work)?;
    // Four receivers writing 5 GiB each to a tmpfs need 20 GiB of memory:
    // on a smaller machine that row pushes what fits, and says so.
    let avail = mem_available()?;
    let four = (LONG.min(avail.saturating_sub(4 * GIB) / 4) / GIB).max(1) * GIB;
    let plain = |bytes, n, dest| Case::Push {
        bytes,
        n,
        dest,
        slow: false,
        floor: None,
    };
    let mut cases = vec![
        plain(256 << 20, 1, Dest::Tmpfs),
        plain(LONG, 1, Dest::Tmpfs),
        plain(four, 4, Dest::Tmpfs),
        plain(LONG, 1, Dest::Disk),
    ];
    if cpu_quota_available() {
        for floor in [None, Some(SLOW_FLOOR)] {
            cases.push(Case::Push {
                bytes: SLOWED,
                n: 4,
                dest: Dest::Tmpfs,
                slow: true,
                floor,
            });
        }
    } else {
        eprintln!("note: skipping the slowed-receiver rows: no cpu cgroup controller (cgroup v2 cpu.max or v1 cpu.cfs_quota_us) on this machine");
    }
    let cases: Vec<Case> = cases.into_iter().filter(|c| wanted(&c.name())).collect();
    let dd: Vec<Case> = [Dest::Tmpfs, Dest::Disk]
        .into_iter()
        .map(|dest| Case::Dd { bytes: LONG, dest })
        .filter(|c| wanted(&c.name()))
        .collect();
    if cases.is_empty() && dd.is_empty() {
        return Ok(());
    }
    let need = cases
        .iter()
        .chain(&dd)
        .map(|c| match c {
            Case::Push { bytes, .. } | Case::Dd { bytes, .. } => *bytes,
        })
        .collect::<Vec<_>>();
    let mut files = Vec::new();
    for b in need {
        files.push((b, big_file(&work, b)?));
    }
    let file = |bytes: u64| -> PathBuf {
        files
            .iter()
            .find(|(b, _)| *b == bytes)
            .map(|(_, p)| p.clone())
            .expect("made above")
    };
    let most = cases
        .iter()
        .chain(&dd)
        .map(|c| match c {
            Case::Push {
                bytes,
                n,
                dest: Dest::Tmpfs,
                ..
            } => bytes * *n as u64,
            Case::Dd {
                bytes,
                dest: Dest::Tmpfs,
            } => *bytes,
            _ => 0,
        })
        .max()
        .unwrap_or(0);
    let tmpfs = Tmpfs::mount(&work.join("tmpfs"), most + GIB)?;
    let disk = work.join("disk");
    fs::create_dir_all(&disk)?;
    let dir_of = |d: Dest| match d {
        Dest::Tmpfs => tmpfs.path.clone(),
        Dest::Disk => disk.clone(),
    };
    let mut rows: Vec<(String, String, Vec<Sample>, u64)> = Vec::new();
    for c in &dd {
        let Case::Dd { bytes, dest } = c else {
            continue;
        };
        eprintln!("==> {}", c.name());
        let samples = (0..runs)
            .map(|_| dd_once(&file(*bytes), &dir_of(*dest), *dest == Dest::Disk))
            .collect::<Result<Vec<_>>>()?;
        rows.push((c.name(), "—".into(), samples, *bytes));
    }
    // The bridge's own limit for the long push: its datagrams from host 0
    // to one host that reads and drops them, in GSO batches as fast as
    // the kernels and the bridge take them (no tool can be faster there).
    if cases.iter().any(|c| {
        matches!(
            c,
            Case::Push {
                bytes: LONG,
                n: 1,
                ..
            }
        )
    }) {
        let net = Net::new(2)?;
        eprintln!("==> long: testbed floor, 5 GiB of datagrams to 1 host that reads them (bridge)");
        let samples = (0..runs)
            .map(|_| {
                net.floor(LONG, true).map(|secs| Sample {
                    ok: true,
                    secs,
                    ..Sample::default()
                })
            })
            .collect::<Result<Vec<_>>>()?;
        rows.push((FLOOR.into(), "bridge".into(), samples, LONG));
    }
    for place_name in ["bridge", "loopback"] {
        let mut net: Option<Net> = None;
        let lo = if place_name == "loopback" && !cases.is_empty() {
            Some(Loopback::new()?)
        } else {
            None
        };
        for c in &cases {
            let Case::Push { bytes, n, dest, .. } = c else {
                continue;
            };
            let place = match &lo {
                Some(lo) => Place::Loopback(lo),
                None => {
                    if net.as_ref().is_none_or(|x| x.receivers() != *n) {
                        drop(net.take());
                        net = Some(Net::new(n + 1)?);
                    }
                    Place::Bridge(net.as_ref().expect("made above"))
                }
            };
            eprintln!("==> {} ({place_name})", c.name());
            let floor = match c {
                Case::Push { floor: Some(_), .. } => Some(slow_floor(&rows, &cases, place_name)),
                _ => None,
            };
            let samples = (0..runs)
                .map(|_| {
                    push_once(
                        place,
                        bin,
                        &work,
                        &dir_of(*dest),
                        &file(*bytes),
                        c,
                        floor.as_deref(),
                    )
                })
                .collect::<Result<Vec<_>>>()?;
            rows.push((c.name(), place_name.into(), samples, *bytes));
        }
    }
    drop(tmpfs);
    let (md, json) = render(&rows);
    let out = root().join("target/bench");
    fs::write(out.join("long.md"), &md)?;
    fs::write(out.join("long.json"), serde_json::to_string_pretty(&json)?)?;
    println!(
        "\nLong pushes (mdp alone; median of {runs} runs; target/bench/long.md and long.json):\n"
    );
    println!("{md}");
    Ok(())
}

/// The floor of the slowed case with a floor on `place`: [`SLOW_FLOOR_SHARE`]
/// of the goodput of the push to four that nothing slows, from `rows` of
/// this run.
fn slow_floor(rows: &[(String, String, Vec<Sample>, u64)], cases: &[Case], place: &str) -> String {
    let goodput = |want: &dyn Fn(&Case) -> bool| {
        let name = cases.iter().find(|c| want(c))?.name();
        let (_, _, s, b) = rows.iter().find(|(c, p, _, _)| *c == name && p == place)?;
        let secs = median(s.iter().filter(|x| x.ok).map(|x| x.secs).collect());
        secs.is_finite().then(|| *b as f64 * 8.0 / secs / 1e6)
    };
    let four = goodput(&|c| {
        matches!(
            c,
            Case::Push {
                n: 4,
                slow: false,
                ..
            }
        )
    });
    match four {
        Some(b) => format!("{:.0}M", b * SLOW_FLOOR_SHARE),
        None => SLOW_FLOOR_DEFAULT.to_string(),
    }
}

/// The table, and a line per goal: time per byte of the long push against
/// the 256 MiB push's, and the disk push against `dd`'s copy.
fn render(rows: &[(String, String, Vec<Sample>, u64)]) -> (String, serde_json::Value) {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| case | network | ok runs | wall time (median) | goodput | repair symbols | wire bytes per file byte | congestion cuts |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
    let mut json = Vec::new();
    let med = |s: &[Sample], f: &dyn Fn(&Sample) -> f64| {
        median(s.iter().filter(|x| x.ok).map(f).collect())
    };
    for (case, place, samples, bytes) in rows {
        let ok = samples.iter().filter(|s| s.ok).count();
        let secs = med(samples, &|s| s.secs);
        let mut notes: Vec<&str> = samples
            .iter()
            .filter(|s| !s.note.is_empty())
            .map(|s| s.note.as_str())
            .collect();
        notes.dedup();
        let dd = case.contains(": dd of") || case == FLOOR;
        let cell = |v: f64, digits: usize| {
            if dd || !v.is_finite() {
                "—".to_string()
            } else {
                format!("{v:.digits$}")
            }
        };
        let _ = writeln!(
            md,
            "| {case} | {place} | {ok}/{}{} | {secs:.2} s | {:.0} Mbit/s | {} | {} | {} |",
            samples.len(),
            if notes.is_empty() {
                String::new()
            } else {
                format!(" ({})", notes.join("; "))
            },
            *bytes as f64 * 8.0 / secs / 1e6,
            cell(med(samples, &|s| s.repairs), 0),
            cell(med(samples, &|s| s.wire), 3),
            cell(med(samples, &|s| s.cuts), 0),
        );
        json.push(serde_json::json!({
            "case": case,
            "network": place,
            "runs": samples.len(),
            "ok_runs": ok,
            "notes": notes,
            "secs_median": secs,
            "secs_all": samples.iter().map(|s| s.secs).collect::<Vec<_>>(),
            "repair_symbols_median": med(samples, &|s| s.repairs),
            "wire_per_byte_median": med(samples, &|s| s.wire),
            "cuts_median": med(samples, &|s| s.cuts),
        }));
    }
    // The goals, from the rows of this run, found by the cases' own names.
    let per_gib = |case: &Case, place: &str| {
        let name = case.name();
        rows.iter()
            .find(|(c, p, _, _)| *c == name && p == place)
            .map(|(_, _, s, b)| med(s, &|x| x.secs) / (*b as f64 / GIB as f64))
    };
    let push = |bytes, dest| Case::Push {
        bytes,
        n: 1,
        dest,
        slow: false,
        floor: None,
    };
    let dd_tmpfs = per_gib(
        &Case::Dd {
            bytes: LONG,
            dest: Dest::Tmpfs,
        },
        "—",
    );
    let dd_disk = per_gib(
        &Case::Dd {
            bytes: LONG,
            dest: Dest::Disk,
        },
        "—",
    );
    let _ = writeln!(md);
    for place in ["bridge", "loopback"] {
        let short = per_gib(&push(256 << 20, Dest::Tmpfs), place);
        let long = per_gib(&push(LONG, Dest::Tmpfs), place);
        let disk = per_gib(&push(LONG, Dest::Disk), place);
        let floor = rows
            .iter()
            .find(|(c, p, _, _)| c == FLOOR && p == place)
            .map(|(_, _, s, b)| med(s, &|x| x.secs) / (*b as f64 / GIB as f64));
        let lines = [
            (
                long,
                short,
                "time per GiB, 5 GiB push against 256 MiB push",
                " (goal ≤ 1.3×)",
            ),
            (
                disk,
                dd_disk,
                "5 GiB push to the disk against `dd` of it with its flush",
                " (goal ≤ 1.2×)",
            ),
            (
                long,
                floor,
                "5 GiB push to tmpfs against the testbed floor",
                "",
            ),
            (
                long,
                dd_tmpfs,
                "5 GiB push to tmpfs against `dd` of it to the same tmpfs",
                "",
            ),
        ];
        for (a, b, what, goal) in lines {
            if let (Some(a), Some(b)) = (a, b) {
                let _ = writeln!(
                    md,
                    "- {place}: {what}: {a:.2} s against {b:.2} s per GiB, {:.2}×{goal}",
                    a / b
                );
            }
        }
    }
    (md, serde_json::Value::Array(json))
}

/// One push of `file` for `case` on `place`, the receivers writing below
/// `dest`: measured from the sender's JSON report, every copy checked.
fn push_once(
    place: Place,
    bin: &Path,
    work: &Path,
    dest: &Path,
    file: &Path,
    case: &Case,
    floor: Option<&str>,
) -> Result<Sample> {
    let Case::Push { n, slow, .. } = *case else {
        bail!("not a push");
    };
    let names: Vec<String> = (1..=n).map(|i| format!("h{i}")).collect();
    let keys = crate::make_keys(bin, &work.join("keys"), &names)?;
    let quota = if slow {
        Some(CpuQuota::new(SLOW_CPU_PERCENT)?)
    } else {
        None
    };
    let mut receivers: Vec<Child> = Vec::new();
    let mut dirs = Vec::new();
    for i in 1..=n {
        let dir = dest.join(format!("r{i}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        let mut c = match (&quota, i == n) {
            (Some(q), true) => q.command(),
            _ => Command::new("env"),
        };
        c.args(["ip", "netns", "exec", &place.ns(i)])
            .arg(bin.join("mdp-recv"))
            .arg("--dir")
            .arg(&dir)
            .args(["--once", "--quiet", "--timeout", "100s", "--interface"])
            .arg(place.addr(i))
            .args(["--name", &names[i - 1], "--trust", &keys.sender_pub])
            .arg("--identity")
            .arg(&keys.receivers[i - 1])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        receivers.push(c.spawn()?);
        dirs.push(dir);
    }
    std::thread::sleep(Duration::from_millis(400));
    let mut s = Command::new("ip");
    s.args(["netns", "exec", &place.ns(0)])
        .arg(bin.join("mdp-send"))
        .args(["--interface", &place.addr(0), "--identity"])
        .arg(&keys.sender)
        .args(["--receivers", &n.to_string()])
        .args(["--no-hash-cache", "--json", "--quiet", "--timeout", "250s"]);
    if let Some(f) = floor {
        s.args(["--min-rate", f]);
    }
    let out_path = work.join("send.json");
    s.arg(file)
        .stdin(Stdio::null())
        .stdout(File::create(&out_path)?)
        .stderr(Stdio::null());
    let start = Instant::now();
    let mut sender = s.spawn()?;
    let sender_ok = wait_limit(&mut sender, start + LIMIT);
    let wall = start.elapsed().as_secs_f64();
    // A receiver dropped as too slow waits for its idle timeout: stopped
    // here once the sender is done.
    for r in &mut receivers {
        if floor.is_some() {
            let _ = r.kill();
            let _ = r.wait();
        } else {
            wait_limit(r, Instant::now() + Duration::from_secs(30));
        }
    }
    drop(quota);
    let mut sample = Sample {
        secs: wall,
        ..Sample::default()
    };
    let report: serde_json::Value =
        serde_json::from_slice(&fs::read(&out_path)?).unwrap_or(serde_json::Value::Null);
    if let Some(e) = report["elapsed_secs"].as_f64() {
        sample.secs = e;
    }
    sample.repairs = report["stats"]["repair_symbols"]
        .as_f64()
        .unwrap_or(f64::NAN);
    sample.wire = report["stats"]["wire_bytes_per_file_byte"]
        .as_f64()
        .unwrap_or(f64::NAN);
    sample.cuts = report["rate"]["cuts"].as_f64().unwrap_or(f64::NAN);
    let name = file.file_name().context("file name")?;
    let want = hash_file(file)?;
    let mut complete = 0;
    for d in &dirs {
        if hash_file(&d.join(name)).is_ok_and(|h| h == want) {
            complete += 1;
        }
        let _ = fs::remove_dir_all(d);
    }
    let verdict = |name: &str| {
        report["receivers"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["name"] == name))
            .and_then(|r| r["verdict"].as_str())
            .unwrap_or("")
            .to_string()
    };
    if floor.is_some() {
        // The slow one must be dropped, the others complete.
        let dropped = verdict(&names[n - 1]) == "dropped";
        sample.ok = dropped && complete == n - 1;
        let f = floor.unwrap_or_default();
        sample.note = if sample.ok {
            format!("--min-rate {f}: the slowed host was dropped, the others completed")
        } else {
            format!(
                "--min-rate {f}: {complete}/{n} complete, slowed host {}",
                verdict(&names[n - 1])
            )
        };
    } else {
        sample.ok = sender_ok && report["success"] == true && complete == n;
        if !sample.ok {
            sample.note = format!(
                "{complete}/{n} complete{}",
                if sender_ok { "" } else { ", sender failed" }
            );
        }
    }
    Ok(sample)
}

/// `dd` of `file` into `dir` (`conv=fsync` with `fsync`), timed; the copy
/// checked and removed.
fn dd_once(file: &Path, dir: &Path, fsync: bool) -> Result<Sample> {
    let copy = dir.join("dd-copy");
    let _ = fs::remove_file(&copy);
    let mut c = Command::new("dd");
    c.arg(format!("if={}", file.display()))
        .arg(format!("of={}", copy.display()))
        .arg("bs=8M")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if fsync {
        c.arg("conv=fsync");
    }
    let start = Instant::now();
    let ok = c.status()?.success();
    let secs = start.elapsed().as_secs_f64();
    let same = ok && hash_file(&copy)? == hash_file(file)?;
    let _ = fs::remove_file(&copy);
    Ok(Sample {
        ok: same,
        secs,
        note: if same {
            String::new()
        } else {
            "dd failed".into()
        },
        ..Sample::default()
    })
}

/// A file of `bytes` random bytes under `dir`, made once, in pieces (a
/// 5 GiB file is not held in memory).
fn big_file(dir: &Path, bytes: u64) -> Result<PathBuf> {
    let p = dir.join(format!("file-{}MiB.bin", bytes >> 20));
    if fs::metadata(&p).map(|m| m.len()).unwrap_or(0) == bytes {
        return Ok(p);
    }
    let piece = 64u64 << 20;
    let mut f = File::create(&p)?;
    let mut left = bytes;
    let mut seed = 0x10_u64;
    while left > 0 {
        let n = left.min(piece);
        f.write_all(&mdp_sim::Content::random_bytes(n as usize, seed))?;
        left -= n;
        seed += 1;
    }
    f.sync_all()?;
    Ok(p)
}

/// BLAKE3 of a file, read in pieces.
fn hash_file(p: &Path) -> Result<[u8; 32]> {
    let mut h = blake3::Hasher::new();
    h.update_reader(File::open(p)?)?;
    Ok(*h.finalize().as_bytes())
}

/// `MemAvailable` of /proc/meminfo, in bytes.
fn mem_available() -> Result<u64> {
    let s = fs::read_to_string("/proc/meminfo")?;
    let kib = s
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .context("no MemAvailable in /proc/meminfo")?;
    Ok(kib * 1024)
}

/// A tmpfs mounted for the receivers, unmounted on drop.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, bytes: u64) -> Result<Tmpfs> {
        fs::create_dir_all(path)?;
        let _ = Command::new("umount").arg(path).status();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}")])
            .arg("tmpfs")
            .arg(path)
            .status()?
            .success();
        if !ok {
            bail!(
                "cannot mount a tmpfs on {}: the long rows need root",
                path.display()
            );
        }
        Ok(Tmpfs {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

/// cgroup v2 with the cpu controller (`cpu.max`), else v1's `cpu`
/// hierarchy (`cpu.cfs_quota_us`).
fn cpu_quota_root() -> Option<(PathBuf, bool)> {
    let v2 = Path::new("/sys/fs/cgroup");
    if fs::read_to_string(v2.join("cgroup.controllers")).is_ok_and(|c| c.contains("cpu")) {
        return Some((v2.to_path_buf(), true));
    }
    let v1 = Path::new("/sys/fs/cgroup/cpu");
    v1.join("cpu.cfs_quota_us")
        .exists()
        .then(|| (v1.to_path_buf(), false))
}

fn cpu_quota_available() -> bool {
    cpu_quota_root().is_some()
}

/// A cpu cgroup holding `percent` of one core, removed on drop.
struct CpuQuota {
    dir: PathBuf,
}

impl CpuQuota {
    fn new(percent: u32) -> Result<CpuQuota> {
        let (root, v2) = cpu_quota_root().context("no cpu cgroup controller")?;
        let dir = root.join("mdp-bench-slow");
        let _ = fs::remove_dir(&dir);
        fs::create_dir_all(&dir)?;
        let quota = percent as u64 * 1000;
        if v2 {
            fs::write(dir.join("cpu.max"), format!("{quota} 100000"))?;
        } else {
            fs::write(dir.join("cpu.cfs_period_us"), "100000")?;
            fs::write(dir.join("cpu.cfs_quota_us"), quota.to_string())?;
        }
        Ok(CpuQuota { dir })
    }

    /// A command that joins the group, then runs its arguments.
    fn command(&self) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(r#"echo $$ >"$0/cgroup.procs" && exec "$@""#)
            .arg(&self.dir);
        c
    }
}

impl Drop for CpuQuota {
    fn drop(&mut self) {
        // Its processes are gone (killed or exited) before it is dropped.
        let _ = fs::remove_dir(&self.dir);
    }
}
