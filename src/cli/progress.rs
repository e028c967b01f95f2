//! Progress on stderr: a file counter while reading, a token bar with rate
//! and ETA while the model reads the prompt. Bars only on a terminal; step
//! lines (which window, how many tokens) always, unless `--quiet`.
//!
//! Never writes to stdout, and draws nothing when stderr is not a terminal.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// `{rate}`: items per second, whole.
fn with_rate(
    style: Result<ProgressStyle, indicatif::style::TemplateError>,
) -> Result<ProgressStyle, indicatif::style::TemplateError> {
    style.map(|s| {
        s.with_key(
            "rate",
            |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0}/s", state.per_sec());
            },
        )
    })
}

pub struct Progress {
    bar: ProgressBar,
    quiet: bool,
    /// Drawn at all (a hidden bar still takes a lock per update).
    drawn: bool,
    /// A sweep's calls are under way: the bar counts all of their prompt
    /// tokens, and a call's start does not reset it.
    in_sweep: std::sync::atomic::AtomicBool,
}

impl Progress {
    fn new(quiet: bool, style: ProgressStyle) -> Self {
        let drawn = !quiet && std::io::stderr().is_terminal();
        let target = if drawn {
            ProgressDrawTarget::stderr_with_hz(8)
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(None, target);
        bar.set_style(style);
        Self {
            bar,
            quiet,
            drawn,
            in_sweep: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// A counter of files read, with the current path.
    pub fn files(quiet: bool) -> Self {
        let p = Self::new(
            quiet,
            with_rate(ProgressStyle::with_template(
                "{spinner} reading {pos} files ({rate}) {wide_msg}",
            ))
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        p.bar.enable_steady_tick(Duration::from_millis(120));
        p
    }

    /// The number of files the walk will hand over, once known: the
    /// counter becomes a bar with an ETA.
    pub fn set_total(&self, files: u64) {
        self.bar.set_length(files);
        self.bar.set_style(
            with_rate(ProgressStyle::with_template(
                "{bar:30} {pos}/{len} files ({rate}), ETA {eta} {wide_msg}",
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
    }

    /// Whether anything is drawn (a terminal, not `--quiet`).
    pub fn visible(&self) -> bool {
        !self.bar.is_hidden()
    }

    pub fn file(&self, path: &str) {
        if !self.drawn {
            return;
        }
        self.bar.inc(1);
        self.bar.set_message(crate::report::terminal::field(path).into_owned());
    }

    /// A bar of prompt tokens processed.
    pub fn prefill(quiet: bool) -> Self {
        Self::new(
            quiet,
            ProgressStyle::with_template("reading the prompt {bar:30} {pos}/{len} tokens, {per_sec}, ETA {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        )
    }

    /// A model call begins.
    pub fn step(&self, what: &str, prompt_tokens: u32) {
        self.say(&format!("{what} ({prompt_tokens} prompt tokens)"));
        if !self.in_sweep.load(std::sync::atomic::Ordering::Relaxed) {
            self.bar.reset();
            self.bar.set_length(u64::from(prompt_tokens));
        }
    }

    /// A line on stderr above the bar (none with `--quiet`).
    pub fn say(&self, line: &str) {
        if self.quiet {
            return;
        }
        self.bar.suspend(|| {
            eprintln!("scout: {}", crate::report::terminal::text(line));
        });
    }

    /// A sweep of `windows` calls and `prompt_tokens` begins: one bar for
    /// all of them, with the windows done beside it.
    pub fn sweep(&self, windows: usize, prompt_tokens: u64) {
        self.in_sweep.store(true, std::sync::atomic::Ordering::Relaxed);
        self.bar.reset();
        self.bar.set_style(
            ProgressStyle::with_template("reading {bar:30} {pos}/{len} tokens, {msg}, {per_sec}, ETA {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        self.bar.set_length(prompt_tokens);
        self.bar.set_message(format!("0/{windows} windows"));
    }

    /// Call `index` of the sweep ended; without a terminal, a line for it.
    pub fn window_done(&self, index: usize, done: usize, windows: usize) {
        self.bar.set_message(format!("{done}/{windows} windows"));
        if self.bar.is_hidden() {
            self.say(&format!("window {} of {windows} done ({done} of {windows})", index + 1));
        }
        if done >= windows {
            self.in_sweep.store(false, std::sync::atomic::Ordering::Relaxed);
            self.bar.set_style(
                ProgressStyle::with_template("reading the prompt {bar:30} {pos}/{len} tokens, {per_sec}, ETA {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
        }
    }

    pub fn prefill_progress(&self, done: u32, total: u32) {
        self.bar.set_length(u64::from(total));
        self.bar.set_position(u64::from(done));
    }

    /// A bar of batch jobs: done of total, failures, ETA.
    pub fn jobs(quiet: bool, total: usize) -> Self {
        let p = Self::new(
            quiet,
            ProgressStyle::with_template("{bar:30} {pos}/{len} jobs, {msg}, ETA {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        p.bar.set_length(total as u64);
        p
    }

    /// Jobs done so far; without a terminal, a line per job instead.
    pub fn jobs_done(&self, done: usize, failed: usize, total: usize, last: Option<&str>) {
        self.bar.set_position(done as u64);
        self.bar
            .set_message(format!("{failed} failed, {} remaining", total - done));
        if let Some(id) = last {
            if !self.quiet && self.bar.is_hidden() {
                eprintln!(
                    "scout: job {} done ({done}/{total}, {failed} failed)",
                    crate::report::terminal::field(id)
                );
            }
        }
    }

    pub fn clear(&self) {
        self.bar.finish_and_clear();
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
