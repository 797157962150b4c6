//! What a person watching sees: progress bars and spinners on a terminal,
//! and log lines that never tear them.
//!
//! **Invariant:** while a bar is on screen it is registered with
//! [`show`], and every log line goes through [`LogWriter`], which clears
//! the bar, writes the line and draws the bar again below it: no line is
//! written into a bar, and no stale bar is left above a line.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

/// The bar on screen, if any.
static ACTIVE: Mutex<Option<indicatif::ProgressBar>> = Mutex::new(None);

/// Registers `bar` as the one on screen (`None`: none is).
pub fn show(bar: Option<&indicatif::ProgressBar>) {
    *ACTIVE.lock().unwrap_or_else(|p| p.into_inner()) = bar.cloned();
}

/// Clears `bar` from the screen and forgets it.
pub fn finish(bar: Option<indicatif::ProgressBar>) {
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    show(None);
}

/// The log's writer: one formatted line, written on drop with the bar
/// suspended.
#[derive(Debug, Default)]
pub struct LogWriter {
    line: Vec<u8>,
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        let line = std::mem::take(&mut self.line);
        let bar = ACTIVE.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let write = || {
            let _ = std::io::stderr().write_all(&line);
        };
        match bar {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }
}

/// Makes a [`LogWriter`] per log line, for `tracing_subscriber`.
#[derive(Clone, Copy, Debug, Default)]
pub struct MakeLogWriter;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for MakeLogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> LogWriter {
        LogWriter::default()
    }
}

/// A spinner with `what` beside it, on a terminal only; it turns by
/// itself, so a long silent step (hashing, waiting) visibly moves.
pub fn spinner(enabled: bool, what: &str) -> Option<indicatif::ProgressBar> {
    if !enabled || !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = indicatif::ProgressBar::new_spinner();
    pb.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .expect("valid template"),
    );
    pb.set_message(what.to_string());
    pb.enable_steady_tick(Duration::from_millis(100));
    show(Some(&pb));
    Some(pb)
}

/// The style of a byte bar whose rate is in bits per second, as `--rate`
/// and `--min-rate` are.
fn byte_bar_style() -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template(
        "{msg:>12} [{bar:30}] {bytes}/{total_bytes} {bitrate} eta {eta}",
    )
    .expect("valid template")
    .with_key(
        "bitrate",
        |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:.0} Mbit/s", s.per_sec() * 8.0 / 1e6);
        },
    )
    .progress_chars("=> ")
}

/// Turns a spinner into a byte bar of `total` bytes whose elapsed time and
/// rate count from now (the first datagram, not the wait before it).
pub fn start_bytes(bar: &indicatif::ProgressBar, total: u64, what: &str) {
    bar.disable_steady_tick();
    bar.set_style(byte_bar_style());
    bar.set_length(total);
    bar.set_position(0);
    bar.reset_elapsed();
    bar.reset_eta();
    bar.set_message(what.to_string());
}

/// A byte progress bar on a terminal, nothing otherwise.
pub fn progress_bar(enabled: bool, total: u64, what: &str) -> Option<indicatif::ProgressBar> {
    if !enabled || !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = indicatif::ProgressBar::new(total);
    pb.set_style(byte_bar_style());
    pb.set_message(what.to_string());
    show(Some(&pb));
    Some(pb)
}

/// Rate-limits plain progress log lines (used when there is no terminal
/// for a progress bar): at most one a second.
#[derive(Debug)]
pub struct ProgressLog {
    enabled: bool,
    next: std::time::Instant,
}

impl ProgressLog {
    /// A limiter; `enabled = false` never says a line is due.
    pub fn new(enabled: bool) -> Self {
        ProgressLog {
            enabled,
            next: std::time::Instant::now() + Duration::from_secs(1),
        }
    }

    /// True when a progress line should be logged now.
    pub fn due(&mut self) -> bool {
        let now = std::time::Instant::now();
        if self.enabled && now >= self.next {
            self.next = now + Duration::from_secs(1);
            true
        } else {
            false
        }
    }
}
