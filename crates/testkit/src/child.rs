//! A process started by a test, usually inside a host's namespace: killed (SIGKILL) and
//! reaped when dropped, so a failing test leaves nothing running; its stdout and stderr go to
//! a log file that [`Child::tail`] prints when a test fails.
//!
//! It does not restart anything or watch for readiness: callers poll what they need (an
//! HTTP endpoint, `etcdctl endpoint health`).

use anyhow::{Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A running (or finished) process with its log.
#[derive(Debug)]
pub struct Child {
    label: String,
    child: std::process::Child,
    log: PathBuf,
    status: Option<ExitStatus>,
}

impl Child {
    /// Starts `cmd` with stdin closed and stdout+stderr appended to `log`.
    pub fn spawn(label: &str, mut cmd: Command, log: &Path) -> Result<Child> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening log {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {label}: {cmd:?}"))?;
        Ok(Child {
            label: label.to_string(),
            child,
            log: log.to_path_buf(),
            status: None,
        })
    }

    /// What the test called this process.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Sends a signal (no error if it already exited).
    pub fn signal(&self, sig: Signal) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), sig);
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if self.status.is_none() {
            self.signal(Signal::SIGKILL);
            self.status = self.child.wait().ok();
        }
    }

    /// SIGTERM, then wait up to `grace` for it to exit, then SIGKILL. Returns the exit status
    /// if it exited by itself.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.signal(Signal::SIGTERM);
        let st = self.wait_timeout(grace);
        if st.is_none() {
            self.kill();
        }
        st
    }

    /// Waits up to `d` for the process to exit.
    pub fn wait_timeout(&mut self, d: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + d;
        loop {
            if let Some(st) = self.try_status() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The exit status if it has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        self.try_status().is_none()
    }

    /// The last `lines` lines of its log.
    pub fn tail(&self, lines: usize) -> String {
        tail_file(&self.log, lines)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `lines` lines of a file (empty if unreadable).
pub fn tail_file(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
