//! A problem found in a definition. Every problem names where it is (file, line, column
//! when it came from a file), the field path (`controlPlane.machines[1].address`), the
//! value as written, the rule it breaks, and a hint that says how to fix it.

use serde::Serialize;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

/// Line and column (1-based) of a value in the definition file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub severity: Severity,
    /// Where the offending value stands, when the definition came from a file.
    pub pos: Option<Pos>,
    /// Field path as written in the file (`endpoint.port`), or the flag (`--control-plane-replicas`).
    pub field: String,
    /// The value as written (empty when the field is missing).
    pub value: String,
    /// The rule, in one sentence.
    pub rule: String,
    /// How to fix it.
    pub hint: Option<String>,
}

impl Problem {
    pub fn error(
        field: impl Into<String>,
        value: impl Into<String>,
        rule: impl Into<String>,
    ) -> Self {
        Problem {
            severity: Severity::Error,
            pos: None,
            field: field.into(),
            value: value.into(),
            rule: rule.into(),
            hint: None,
        }
    }

    pub fn warning(
        field: impl Into<String>,
        value: impl Into<String>,
        rule: impl Into<String>,
    ) -> Self {
        Problem {
            severity: Severity::Warning,
            ..Problem::error(field, value, rule)
        }
    }

    pub fn at(mut self, pos: Option<Pos>) -> Self {
        self.pos = pos;
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Renders `file:line:column: error: field = value: rule` plus the hint line.
    pub fn render(&self, file: Option<&str>) -> String {
        let mut out = String::new();
        if let Some(f) = file {
            out.push_str(f);
            out.push(':');
            if let Some(p) = self.pos {
                out.push_str(&format!("{}:{}:", p.line, p.column));
            }
            out.push(' ');
        }
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        if self.value.is_empty() {
            out.push_str(&format!("{sev}: {}: {}", self.field, self.rule));
        } else {
            out.push_str(&format!(
                "{sev}: {} = {}: {}",
                self.field, self.value, self.rule
            ));
        }
        if let Some(h) = &self.hint {
            out.push_str(&format!("\n  hint: {h}"));
        }
        out
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(None))
    }
}
