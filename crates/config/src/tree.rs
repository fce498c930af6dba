//! The YAML document as a tree of positioned nodes, before any field is interpreted.
//!
//! serde-saphyr parses the text (syntax errors, duplicate keys, alias bombs and nesting
//! depth stop here, with their line and column), but into a shape-agnostic [`Node`]
//! rather than straight into the definition's types. That is deliberate: serde stops at
//! the first wrong type or unknown field, while `cpe plan` must report *every* problem at
//! once. [`crate::input`] walks this tree and collects all of them.
//!
//! It does not know any field of the definition.

use crate::problem::{Pos, Problem};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;
use std::fmt;

/// A node and where it stands in the file.
#[derive(Clone, Debug, PartialEq)]
pub struct At {
    pub node: Node,
    /// Where the node starts (`None` for nodes not read from a file, e.g. built from flags).
    pub pos: Option<Pos>,
    /// The scalar's text as written (without quotes), for messages. Empty for collections.
    pub raw: String,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// A string scalar: plain text, or anything quoted (`"6443"` is text, `6443` is not).
    Str(String),
    Seq(Vec<At>),
    Map(Vec<(At, At)>),
}

impl Node {
    /// What the node is, as a user reads it in a message ("a list", "a number").
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Null => "empty",
            Node::Bool(_) => "true/false",
            Node::Int(_) => "a whole number",
            Node::Float(_) => "a decimal number",
            Node::Str(_) => "text",
            Node::Seq(_) => "a list",
            Node::Map(_) => "a mapping",
        }
    }
}

/// Nesting deeper than this is refused. A definition nests 4 deep; serde's recursive
/// descent needs a lot of stack per level in debug builds (64 levels overflowed a 2 MiB
/// test thread), so the parser's default of 64 is lowered.
pub const MAX_DEPTH: usize = 16;

/// Parses one YAML document into a positioned tree. A syntax error becomes one
/// [`Problem`] with the position serde-saphyr reports.
pub fn parse(text: &str) -> Result<At, Problem> {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_DEPTH;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    let spanned: Spanned<Raw> =
        serde_saphyr::from_str_with_options(text, options).map_err(|e| {
            let pos = e.location().map(|l| Pos {
                line: l.line(),
                column: l.column(),
            });
            let msg = first_line(&e);
            let rule = if msg.starts_with("is ") {
                msg
            } else {
                format!("is not valid YAML: {msg}")
            };
            Problem::error("(file)", "", rule)
                .at(pos)
                .hint("see examples/ for annotated definitions of every mode")
        })?;
    Ok(convert(spanned, text))
}

/// serde-saphyr renders `error: line L column C: message` plus a code frame; the
/// position is reported separately, so only the message is kept.
fn first_line(e: &serde_saphyr::Error) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or("").trim();
    let line = line.strip_prefix("error:").unwrap_or(line).trim();
    let line = match line.strip_prefix("line ") {
        Some(rest) => rest
            .split_once(": ")
            .map(|(_, m)| m)
            .unwrap_or(rest)
            .to_string(),
        None => line.to_string(),
    };
    if line.starts_with("budget breached") || line.starts_with("recursion limit") {
        return format!(
            "is too large or nested too deeply for a definition (more than {MAX_DEPTH} levels or 250000 nodes)"
        );
    }
    // The parser's advice is for programs using it (options to set), not for someone
    // writing a definition: replaced by what to do in the file.
    if let Some((what, _)) = line.split_once(" If you just use !!binary") {
        return format!("{what} Write the value as plain text, without !!binary");
    }
    line.replace(", set DuplicateKeyPolicy in Options if acceptable", "")
        .replace(
            "; use from_str_multiple or from_str_multiple_with_options",
            ": a definition is one document",
        )
}

fn pos_of(l: &serde_saphyr::Location) -> Option<Pos> {
    (l.line() > 0).then(|| Pos {
        line: l.line(),
        column: l.column(),
    })
}

fn raw_of(l: &serde_saphyr::Location, text: &str) -> String {
    let s = l.span();
    match (s.byte_offset(), s.byte_len()) {
        (Some(o), Some(n)) => text
            .get(o as usize..(o + n) as usize)
            .unwrap_or("")
            .to_string(),
        _ => String::new(),
    }
}

fn convert(s: Spanned<Raw>, text: &str) -> At {
    let pos = pos_of(&s.referenced);
    let (node, raw) = match s.value {
        Raw::Null => (Node::Null, String::new()),
        Raw::Bool(b) => (Node::Bool(b), b.to_string()),
        Raw::Int(i) => (Node::Int(i), i.to_string()),
        Raw::Float(f) => (Node::Float(f), raw_or(&s.referenced, text, f.to_string())),
        Raw::Str(v) => {
            let raw = v.clone();
            (Node::Str(v), raw)
        }
        Raw::Seq(items) => (
            Node::Seq(items.into_iter().map(|i| convert(i, text)).collect()),
            String::new(),
        ),
        Raw::Map(entries) => (
            Node::Map(
                entries
                    .into_iter()
                    .map(|(k, v)| {
                        // Keys are text; anything else (`~`, `[a, b]`) keeps its source
                        // text so that it is reported as an unknown field.
                        let source = raw_of(&k.referenced, text);
                        let key = convert(k, text);
                        let raw = match &key.node {
                            Node::Str(s) if s.is_empty() => "\"\"".to_string(),
                            Node::Str(s) => s.clone(),
                            _ if !source.is_empty() => source,
                            Node::Null => "~".to_string(),
                            Node::Seq(_) | Node::Map(_) => "(a complex key)".to_string(),
                            _ => key.raw.clone(),
                        };
                        let key = At {
                            node: Node::Str(raw.clone()),
                            raw,
                            ..key
                        };
                        (key, convert(v, text))
                    })
                    .collect(),
            ),
            String::new(),
        ),
    };
    At { node, pos, raw }
}

fn raw_or(l: &serde_saphyr::Location, text: &str, fallback: String) -> String {
    let r = raw_of(l, text);
    if r.is_empty() {
        fallback
    } else {
        r
    }
}

/// What serde-saphyr hands over: any YAML value, every child with its span.
enum Raw {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Raw>>),
    Map(Vec<(Spanned<Raw>, Spanned<Raw>)>),
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_none<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
        Raw::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Raw, E> {
        Ok(match i64::try_from(v) {
            Ok(i) => Raw::Int(i),
            Err(_) => Raw::Float(v as f64),
        })
    }
    fn visit_i128<E>(self, v: i128) -> Result<Raw, E> {
        Ok(match i64::try_from(v) {
            Ok(i) => Raw::Int(i),
            Err(_) => Raw::Float(v as f64),
        })
    }
    fn visit_u128<E>(self, v: u128) -> Result<Raw, E> {
        Ok(match i64::try_from(v) {
            Ok(i) => Raw::Int(i),
            Err(_) => Raw::Float(v as f64),
        })
    }
    fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
        Ok(Raw::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Raw, E> {
        Ok(Raw::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Raw, E> {
        Ok(Raw::Str(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Raw, A::Error> {
        let mut v = Vec::new();
        while let Some(x) = a.next_element()? {
            v.push(x);
        }
        Ok(Raw::Seq(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Raw, A::Error> {
        let mut v = Vec::new();
        while let Some(k) = a.next_key::<Spanned<Raw>>()? {
            let val = a.next_value()?;
            v.push((k, val));
        }
        Ok(Raw::Map(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_positions_and_raw_text() {
        let t = parse("a: 1\nb:\n  c: abc\n  d: \"6443\"\n  e: 0x10\n").unwrap();
        let Node::Map(m) = &t.node else {
            panic!("{t:?}")
        };
        assert_eq!(m[0].1.node, Node::Int(1));
        assert_eq!(m[0].1.pos, Some(Pos { line: 1, column: 4 }));
        let Node::Map(b) = &m[1].1.node else { panic!() };
        assert_eq!(b[0].1.node, Node::Str("abc".into()));
        assert_eq!(b[0].0.pos, Some(Pos { line: 3, column: 3 }));
        assert_eq!(b[1].1.node, Node::Str("6443".into()));
        assert_eq!(b[2].1.node, Node::Int(16));
    }

    #[test]
    fn syntax_errors_carry_a_position_and_no_code_frame() {
        let p = parse("a: [1\n").unwrap_err();
        assert_eq!(p.pos, Some(Pos { line: 1, column: 4 }));
        assert_eq!(p.rule, "is not valid YAML: unclosed bracket '['");
        let p = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(p.rule, "is not valid YAML: duplicate mapping key: a");
        assert_eq!(p.pos, Some(Pos { line: 2, column: 1 }));
    }
}
