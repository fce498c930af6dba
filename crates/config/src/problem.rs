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
    /// Invisible characters (zero-width, bidirectional overrides, controls) in any part are
    /// shown escaped (`\u{200b}`): a message must show what the file holds, and must not
    /// be reordered on the terminal by what it quotes.
    pub fn render(&self, file: Option<&str>) -> String {
        let (field, value, rule) = (escape(&self.field), escape(&self.value), escape(&self.rule));
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
        if value.is_empty() {
            out.push_str(&format!("{sev}: {field}: {rule}"));
        } else {
            out.push_str(&format!("{sev}: {field} = {value}: {rule}"));
        }
        if let Some(h) = &self.hint {
            out.push_str(&format!("\n  hint: {}", escape(h)));
        }
        out
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(None))
    }
}

/// Is `c` invisible or reordering when printed: a control character, or one of Unicode's
/// format characters (zero-width spaces and joiners, bidirectional marks, embeddings,
/// overrides and isolates, the byte order mark, invisible operators, tags).
pub fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{ad}'
                | '\u{61c}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
                | '\u{e0000}'..='\u{e007f}'
        )
}

/// `text` with every invisible character written as `\u{XXXX}`.
pub fn escape(text: &str) -> String {
    if !text.chars().any(is_invisible) {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if is_invisible(c) {
                format!("\\u{{{:x}}}", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_characters_are_escaped() {
        assert_eq!(escape("cp\u{200b}1"), "cp\\u{200b}1");
        assert_eq!(escape("a\u{202e}b"), "a\\u{202e}b");
        assert_eq!(escape("plain-ü…"), "plain-ü…");
    }
}
