//! `mdp-recv --exec` and `--exec-file`: commands run after each push and
//! after each placed file.
//!
//! Hooks run one at a time, in order, on their own thread, so the receiver
//! keeps receiving while a hook works. Each runs as `sh -c CMD` with the
//! push described in environment variables (see [`Hooks::push_done`] and
//! [`Hooks::file_placed`]); its output (stdout and stderr) goes to
//! mdp-recv's stderr, never into the `--json` lines on stdout. Each hook is
//! the leader of its own process group: one that runs over its time limit
//! is killed with everything it started. A hook that fails, cannot start or
//! runs over its time limit is logged and reported; it never stops the
//! service. File names in `MDP_FILES`, `MDP_CHANGED` and the list file are
//! one a line and cannot forge a line: the manifest's rules refuse paths
//! with control characters (a name may still start with `-`: pass them
//! after `--`).

use mdp_proto::wire::HookOutcome;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How a hook ended.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct HookResult {
    /// The command.
    pub command: String,
    /// Its exit code (`None` when it did not exit by itself).
    pub exit_code: Option<i32>,
    /// Why it failed to run or finish, in one line.
    pub error: Option<String>,
    /// How long it ran, seconds.
    pub secs: f64,
}

impl HookResult {
    /// True when the command ran and exited 0.
    pub fn ok(&self) -> bool {
        self.exit_code == Some(0) && self.error.is_none()
    }

    /// What the receiver's confirmation tells the sender.
    pub fn outcome(&self) -> HookOutcome {
        match (self.exit_code, &self.error) {
            (Some(0), None) => HookOutcome::Succeeded,
            (Some(code), _) => HookOutcome::Exited(u8::try_from(code).unwrap_or(u8::MAX)),
            (None, Some(e)) if e.starts_with(NOT_STARTED) => HookOutcome::NotStarted,
            (None, _) => HookOutcome::Killed,
        }
    }
}

/// How the error of a hook that could not start begins.
const NOT_STARTED: &str = "cannot start";

/// What a settled push tells its hook.
#[derive(Clone, Debug)]
pub struct PushInfo {
    /// Session id (hex).
    pub session: String,
    /// The sender's address, when known.
    pub sender: Option<String>,
    /// The cache directory.
    pub dir: PathBuf,
    /// Every file of the push, relative to `dir`.
    pub files: Vec<String>,
    /// The files this push placed (the others were already there).
    pub changed: Vec<String>,
    /// Every file arrived and was verified.
    pub complete: bool,
    /// Signed by a trusted key: no hook runs for a push taken with
    /// `--insecure`.
    pub authenticated: bool,
}

enum Job {
    Push(PushInfo, Box<dyn FnOnce(Option<HookResult>) + Send>),
    File(PushInfo, String),
}

/// The hook runner of one mdp-recv process.
pub struct Hooks {
    jobs: Option<mpsc::Sender<Job>>,
    per_file: bool,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PushInfo {
    /// Nothing known yet about a push into `dir`.
    pub fn empty(dir: PathBuf) -> PushInfo {
        PushInfo {
            session: String::new(),
            sender: None,
            dir,
            files: Vec::new(),
            changed: Vec::new(),
            complete: false,
            authenticated: false,
        }
    }
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("running", &self.thread.is_some())
            .finish()
    }
}

impl Hooks {
    /// A runner for `on_push` (after each complete push) and `on_file`
    /// (after each placed file), each killed after `limit`.
    pub fn new(on_push: Option<String>, on_file: Option<String>, limit: Duration) -> Hooks {
        let per_file = on_file.is_some();
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("mdp-hooks".into())
            .spawn(move || {
                for job in rx {
                    match job {
                        Job::Push(info, done) => {
                            let result = on_push
                                .as_deref()
                                .filter(|_| info.complete)
                                .map(|cmd| run(cmd, &push_env(&info), limit));
                            if let Some(r) = &result {
                                log(r, &format!("push {}", info.session));
                            }
                            done(result);
                        }
                        Job::File(info, file) => {
                            if let Some(cmd) = on_file.as_deref() {
                                let r = run(cmd, &file_env(&info, &file), limit);
                                log(&r, &file);
                            }
                        }
                    }
                }
            })
            .ok();
        Hooks {
            jobs: thread.as_ref().map(|_| tx),
            per_file,
            thread,
        }
    }

    /// A push ended: runs the push hook if it is complete, then calls
    /// `done` with the hook's result (`None`: no hook ran), in order with
    /// the other jobs. Environment: `MDP_SESSION`, `MDP_SENDER`, `MDP_DIR`,
    /// `MDP_FILE_COUNT`, `MDP_FILES` (newline-separated paths relative to
    /// `MDP_DIR`, when under 64 KiB), `MDP_FILE_LIST` (a file holding the
    /// same list, removed after the hook), `MDP_CHANGED_COUNT` and
    /// `MDP_CHANGED` (the files this push placed; the others were already
    /// there).
    pub fn push_done(
        &self,
        info: PushInfo,
        done: impl FnOnce(Option<HookResult>) + Send + 'static,
    ) {
        match &self.jobs {
            Some(tx) if info.authenticated => {
                if let Err(mpsc::SendError(Job::Push(_, done))) =
                    tx.send(Job::Push(info, Box::new(done)))
                {
                    done(None);
                }
            }
            _ => done(None),
        }
    }

    /// A file was placed: runs the per-file hook with `MDP_FILE` (relative
    /// path), `MDP_PATH` (absolute path), `MDP_SESSION`, `MDP_SENDER` and
    /// `MDP_DIR`.
    pub fn file_placed(&self, info: impl FnOnce() -> PushInfo, file: String) {
        if let (Some(tx), true) = (&self.jobs, self.per_file) {
            let info = info();
            if info.authenticated {
                let _ = tx.send(Job::File(info, file));
            }
        }
    }

    /// Waits for the queued hooks to finish.
    pub fn finish(mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn log(r: &HookResult, what: &str) {
    if r.ok() {
        tracing::info!("hook for {what} done in {:.1}s", r.secs);
    } else if let Some(e) = &r.error {
        tracing::warn!("hook for {what} failed: {e} (command: {})", r.command);
    } else {
        tracing::warn!(
            "hook for {what} exited with status {} (command: {})",
            r.exit_code.map_or("?".to_string(), |c| c.to_string()),
            r.command
        );
    }
}

fn base_env(info: &PushInfo) -> Vec<(String, String)> {
    vec![
        ("MDP_SESSION".into(), info.session.clone()),
        ("MDP_SENDER".into(), info.sender.clone().unwrap_or_default()),
        ("MDP_DIR".into(), info.dir.display().to_string()),
    ]
}

/// Most bytes of file names passed in `MDP_FILES` / `MDP_CHANGED` (the
/// kernel limits one environment string to 128 KiB).
const MAX_ENV_LIST: usize = 64 << 10;

fn push_env(info: &PushInfo) -> Vec<(String, String)> {
    let mut env = base_env(info);
    env.push(("MDP_FILE_COUNT".into(), info.files.len().to_string()));
    env.push(("MDP_CHANGED_COUNT".into(), info.changed.len().to_string()));
    let files = info.files.join("\n");
    let changed = info.changed.join("\n");
    if files.len() <= MAX_ENV_LIST {
        env.push(("MDP_FILES".into(), files.clone()));
    }
    if changed.len() <= MAX_ENV_LIST {
        env.push(("MDP_CHANGED".into(), changed));
    }
    let list = info
        .dir
        .join(mdp_net::store::TMP_DIR)
        .join(format!("{}.files", info.session));
    if std::fs::write(&list, files + "\n").is_ok() {
        env.push(("MDP_FILE_LIST".into(), list.display().to_string()));
    }
    env
}

fn file_env(info: &PushInfo, file: &str) -> Vec<(String, String)> {
    let mut env = base_env(info);
    env.push(("MDP_FILE".into(), file.to_string()));
    env.push(("MDP_PATH".into(), info.dir.join(file).display().to_string()));
    env
}

/// Runs `sh -c cmd` with `env`, killing it after `limit`.
fn run(cmd: &str, env: &[(String, String)], limit: Duration) -> HookResult {
    let start = Instant::now();
    let mut result = HookResult {
        command: cmd.to_string(),
        exit_code: None,
        error: None,
        secs: 0.0,
    };
    use std::os::fd::AsFd;
    use std::os::unix::process::CommandExt;
    // Its output goes to our stderr, never to stdout, which carries the
    // JSON lines of `--json`.
    let stdout = match std::io::stderr().as_fd().try_clone_to_owned() {
        Ok(fd) => std::process::Stdio::from(fd),
        Err(_) => std::process::Stdio::null(),
    };
    let mut child = Command::new("sh");
    child
        .arg("-c")
        .arg(cmd)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(stdout)
        // Its own process group, so that a timeout ends whatever it started.
        .process_group(0);
    // A hook acts on files; it has no business with the network
    // capabilities a receiver service may hold.
    let child = mdp_net::sys::without_network_capabilities(&mut child).spawn();
    let status: Result<ExitStatus, String> = match child {
        Err(e) => Err(format!("{NOT_STARTED} sh: {e}")),
        Ok(mut c) => loop {
            match c.try_wait() {
                Ok(Some(st)) => break Ok(st),
                Ok(None) if start.elapsed() >= limit => {
                    mdp_net::sys::kill_process_group(c.id());
                    let _ = c.kill();
                    let _ = c.wait();
                    break Err(format!(
                        "still running after {}s (--exec-timeout), killed",
                        limit.as_secs()
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => break Err(format!("cannot wait for it: {e}")),
            }
        },
    };
    match status {
        Ok(st) => {
            result.exit_code = st.code();
            if st.code().is_none() {
                use std::os::unix::process::ExitStatusExt;
                result.error = Some(format!(
                    "killed by signal {}",
                    st.signal().unwrap_or_default()
                ));
            }
        }
        Err(e) => result.error = Some(e),
    }
    if let Some((_, list)) = env.iter().find(|(k, _)| k == "MDP_FILE_LIST") {
        let _ = std::fs::remove_file(Path::new(list));
    }
    result.secs = start.elapsed().as_secs_f64();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(dir: &Path) -> PushInfo {
        PushInfo {
            session: "00000000000000ab".into(),
            sender: Some("10.0.0.5:41000".into()),
            dir: dir.to_path_buf(),
            files: vec!["etc/a.conf".into(), "etc/b.conf".into()],
            changed: vec!["etc/b.conf".into()],
            complete: true,
            authenticated: true,
        }
    }

    #[test]
    fn a_push_hook_sees_the_push_in_its_environment() {
        let dir = std::env::temp_dir().join(format!("mdp-hook-{}", std::process::id()));
        std::fs::create_dir_all(dir.join(mdp_net::store::TMP_DIR)).unwrap();
        let out = dir.join("seen");
        let cmd = format!(
            "printf '%s|%s|%s|%s|%s|' \"$MDP_SESSION\" \"$MDP_SENDER\" \"$MDP_FILE_COUNT\" \"$MDP_CHANGED\" \"$MDP_DIR\" > {0}; cat \"$MDP_FILE_LIST\" >> {0}",
            out.display()
        );
        let r = run(&cmd, &push_env(&info(&dir)), Duration::from_secs(10));
        assert!(r.ok(), "{r:?}");
        let seen = std::fs::read_to_string(&out).unwrap();
        assert_eq!(
            seen,
            format!(
                "00000000000000ab|10.0.0.5:41000|2|etc/b.conf|{}|etc/a.conf\netc/b.conf\n",
                dir.display()
            )
        );
        // The list file is gone after the hook.
        assert!(!dir.join(".mdp-tmp/00000000000000ab.files").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn failing_and_hanging_hooks_are_reported_not_fatal() {
        let env = vec![];
        let r = run("exit 3", &env, Duration::from_secs(10));
        assert_eq!((r.exit_code, r.ok()), (Some(3), false));
        assert_eq!(r.outcome(), HookOutcome::Exited(3));
        assert_eq!(
            run("true", &env, Duration::from_secs(10)).outcome(),
            HookOutcome::Succeeded
        );
        let r = run("sleep 5", &env, Duration::from_millis(200));
        assert!(!r.ok());
        assert_eq!(r.outcome(), HookOutcome::Killed);
        assert!(r.error.unwrap().contains("killed"), "timeout reported");
        assert!(r.secs < 4.0);
    }

    #[test]
    fn a_hook_killed_for_its_time_limit_takes_its_children_with_it() {
        let dir = std::env::temp_dir().join(format!("mdp-hook-kids-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pid_file = dir.join("child.pid");
        // The hook starts a background child that would outlive it, and
        // waits past its limit.
        let cmd = format!("sleep 30 & echo $! > {}; wait", pid_file.display());
        let r = run(&cmd, &[], Duration::from_millis(300));
        assert!(!r.ok());
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        let pid = pid.trim();
        // Give the kernel a moment to reap it (its parent is gone, so init
        // does), then it must not be running.
        let alive = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.split_whitespace().nth(2).is_none_or(|st| st != "Z"))
                .unwrap_or(false)
        };
        let deadline = Instant::now() + Duration::from_secs(3);
        while alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive(), "the hook's child {pid} outlived it");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A hook runs without the network capabilities (as root, where the
    /// service would hold them): none in its effective set, nor in its
    /// bounding set, from which nothing it starts could regain them.
    #[test]
    fn a_hook_runs_without_network_capabilities() {
        if !mdp_net::sys::is_root() {
            eprintln!("skipped: needs root, whose processes hold the capabilities");
            return;
        }
        let dir = std::env::temp_dir().join(format!("mdp-hook-caps-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("status");
        let r = run(
            &format!(
                "grep -E '^Cap(Eff|Bnd)' /proc/self/status > {}",
                out.display()
            ),
            &[],
            Duration::from_secs(10),
        );
        assert!(r.ok(), "{r:?}");
        let text = std::fs::read_to_string(&out).unwrap();
        let net = (10..=13).fold(0u64, |m, c| m | 1 << c);
        let mut seen = 0;
        for line in text.lines() {
            let (name, hex) = line.split_once(':').unwrap();
            let caps = u64::from_str_radix(hex.trim(), 16).unwrap();
            assert_eq!(caps & net, 0, "{name}: {hex}");
            assert_ne!(caps, 0, "{name}: other capabilities stay: {hex}");
            seen += 1;
        }
        assert_eq!(seen, 2, "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
