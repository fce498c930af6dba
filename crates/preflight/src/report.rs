//! What a run of checks produced: one [`Check`] per fact checked, grouped by the machine
//! (or other target) it is about, a summary line, a text table and a JSON form, and the
//! exit code. Pure: nothing here probes anything.

use serde::Serialize;
use std::fmt::Write as _;

/// The verdict of one check. Ordered: the worst status of a report decides its exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    /// Works as it is, but something deserves a look (or could not be known).
    Warn,
    /// The cluster create will fail, or the endpoint will not stay up, if this is not fixed.
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One checked fact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable identifier for scripts (`port.6443`, `vip.dad`, `etcd.status`).
    pub id: String,
    /// What was checked, in words (`port 6443 (API server / endpoint) free`).
    pub title: String,
    pub status: Status,
    /// What was observed, and why that is the verdict.
    pub reason: String,
    /// What to do about it; empty for a pass.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub fix: String,
}

impl Check {
    fn new(
        id: impl Into<String>,
        title: impl Into<String>,
        status: Status,
        reason: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Check {
            id: id.into(),
            title: title.into(),
            status,
            reason: reason.into(),
            fix: fix.into(),
        }
    }

    pub fn pass(
        id: impl Into<String>,
        title: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Check::new(id, title, Status::Pass, reason, "")
    }

    pub fn warn(
        id: impl Into<String>,
        title: impl Into<String>,
        reason: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Check::new(id, title, Status::Warn, reason, fix)
    }

    pub fn fail(
        id: impl Into<String>,
        title: impl Into<String>,
        reason: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Check::new(id, title, Status::Fail, reason, fix)
    }
}

/// The checks about one machine, or about the endpoint itself, or about etcd.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Target {
    /// `cp1 (10.0.0.11)`, `endpoint lb.example.com:6443`, `etcd`.
    pub name: String,
    pub checks: Vec<Check>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub passed: usize,
    pub warnings: usize,
    pub failed: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = |n: usize, one: &str, many: &str| {
            if n == 1 {
                format!("{n} {one}")
            } else {
                format!("{n} {many}")
            }
        };
        write!(
            f,
            "{}, {}, {}",
            plural(self.passed, "passed", "passed"),
            plural(self.warnings, "warning", "warnings"),
            plural(self.failed, "failed", "failed")
        )
    }
}

/// Everything one `cpe preflight` or `cpe check` found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    /// `preflight --local`, `preflight` or `check`.
    pub command: String,
    /// The endpoint as clients write it (`lb.example.com:6443`).
    pub endpoint: String,
    pub mode: String,
    pub targets: Vec<Target>,
}

impl Report {
    pub fn new(command: &str, endpoint: &cpe_config::Endpoint) -> Self {
        Report {
            command: command.to_string(),
            endpoint: endpoint.url_authority(),
            mode: endpoint.mode.to_string(),
            targets: Vec::new(),
        }
    }

    pub fn push(&mut self, target: impl Into<String>, checks: Vec<Check>) {
        self.targets.push(Target {
            name: target.into(),
            checks,
        });
    }

    pub fn checks(&self) -> impl Iterator<Item = &Check> {
        self.targets.iter().flat_map(|t| t.checks.iter())
    }

    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for c in self.checks() {
            match c.status {
                Status::Pass => s.passed += 1,
                Status::Warn => s.warnings += 1,
                Status::Fail => s.failed += 1,
            }
        }
        s
    }

    /// 0 when nothing failed (warnings included), 1 when any check failed. (2, a usage
    /// error, is decided before any check runs.)
    pub fn exit_code(&self) -> u8 {
        if self.checks().any(|c| c.status == Status::Fail) {
            1
        } else {
            0
        }
    }

    /// The JSON form of `--output json`: the report plus its summary and exit code.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("a report always serializes");
        v["summary"] = serde_json::to_value(self.summary()).expect("serializes");
        v["exitCode"] = self.exit_code().into();
        v
    }

    /// A table per target: status, check, what was seen; the fix on the line below for
    /// warnings and failures. Then the summary line.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "cpe {}: endpoint {} ({})",
            self.command, self.endpoint, self.mode
        );
        for t in &self.targets {
            let _ = writeln!(out, "\n{}", t.name);
            let width = t
                .checks
                .iter()
                .map(|c| c.title.chars().count())
                .max()
                .unwrap_or(0);
            for c in &t.checks {
                let mark = match c.status {
                    Status::Pass => "PASS",
                    Status::Warn => "WARN",
                    Status::Fail => "FAIL",
                };
                let _ = writeln!(out, "  {mark}  {:<width$}  {}", c.title, c.reason);
                if !c.fix.is_empty() {
                    let _ = writeln!(out, "        {:<width$}  fix: {}", "", c.fix);
                }
            }
        }
        let _ = writeln!(out, "\n{}", self.summary());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(statuses: &[Status]) -> Report {
        let checks = statuses
            .iter()
            .enumerate()
            .map(|(i, s)| Check {
                id: format!("c{i}"),
                title: format!("check {i}"),
                status: *s,
                reason: "seen".into(),
                fix: if *s == Status::Pass {
                    String::new()
                } else {
                    "do it".into()
                },
            })
            .collect();
        Report {
            command: "preflight".into(),
            endpoint: "lb:6443".into(),
            mode: "external-lb".into(),
            targets: vec![Target {
                name: "cp1".into(),
                checks,
            }],
        }
    }

    #[test]
    fn summary_counts_and_reads_as_a_sentence() {
        use Status::*;
        let r = report(&[Pass, Pass, Warn, Fail, Fail]);
        assert_eq!(
            r.summary(),
            Summary {
                passed: 2,
                warnings: 1,
                failed: 2
            }
        );
        assert_eq!(r.summary().to_string(), "2 passed, 1 warning, 2 failed");
        assert_eq!(
            report(&[Pass]).summary().to_string(),
            "1 passed, 0 warnings, 0 failed"
        );
    }

    #[test]
    fn exit_code_is_one_only_when_something_failed() {
        use Status::*;
        assert_eq!(report(&[]).exit_code(), 0);
        assert_eq!(report(&[Pass, Warn]).exit_code(), 0);
        assert_eq!(report(&[Pass, Warn, Fail]).exit_code(), 1);
    }

    #[test]
    fn table_shows_fix_only_for_warnings_and_failures() {
        use Status::*;
        let t = report(&[Pass, Fail]).to_table();
        assert!(t.contains("PASS  check 0  seen"), "{t}");
        assert!(t.contains("FAIL  check 1  seen"), "{t}");
        assert_eq!(t.matches("fix: do it").count(), 1, "{t}");
        assert!(
            t.trim_end().ends_with("1 passed, 0 warnings, 1 failed"),
            "{t}"
        );
    }

    #[test]
    fn json_has_statuses_summary_and_exit_code() {
        use Status::*;
        let j = report(&[Pass, Warn]).to_json();
        assert_eq!(j["targets"][0]["checks"][1]["status"], "warn");
        assert_eq!(j["targets"][0]["checks"][1]["fix"], "do it");
        assert!(j["targets"][0]["checks"][0].get("fix").is_none());
        assert_eq!(j["summary"]["warnings"], 1);
        assert_eq!(j["exitCode"], 0);
    }
}
