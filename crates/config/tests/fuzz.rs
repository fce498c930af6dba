//! Fuzzing the parser and validator on stable Rust with proptest (cargo-fuzz needs
//! nightly). Properties, for any input: no panic; every problem fits on a screen and
//! names a field; a definition with no error resolves to an [`Endpoint`]; errors and a
//! resolved endpoint never come together.
//!
//! `tests/corpus/` is the regression corpus: hostile inputs found or imagined (alias
//! bombs, deep nesting, huge numbers, tags, merge keys, control characters). Every file
//! in it is run through the same properties. proptest also keeps its own failure seeds in
//! `proptest-regressions/` when a property fails.

use cpe_config::{check_str, Severity};
use proptest::prelude::*;

const VALID: &[&str] = &[
    include_str!("../../../examples/external-lb-3.yaml"),
    include_str!("../../../examples/virtual-ip-3.yaml"),
    include_str!("../../../examples/single-node.yaml"),
];

/// The properties every input must keep.
fn holds(text: &str) -> Result<(), TestCaseError> {
    let checked = check_str(text);
    let errors = checked.errors();
    prop_assert_eq!(
        checked.endpoint.is_some(),
        errors == 0,
        "{:?}",
        checked.problems
    );
    for p in &checked.problems {
        let r = p.render(Some("endpoint.yaml"));
        prop_assert!(r.lines().count() <= 4, "too long: {}", r);
        prop_assert!(r.len() <= 1000, "too long: {}", r);
        prop_assert!(!p.field.is_empty(), "{:?}", p);
        prop_assert!(!p.rule.is_empty(), "{:?}", p);
        // Every problem in a file points at its place; only whole-file ones may not.
        match p.pos {
            Some(pos) => prop_assert!(pos.line >= 1 && pos.column >= 1, "{:?}", p),
            None => prop_assert!(p.field == "(file)", "no position: {:?}\n{}", p, text),
        }
    }
    if let Some(e) = &checked.endpoint {
        prop_assert!(e.replicas >= 1 && e.port >= 1);
        prop_assert!(e.machines.len() >= e.replicas as usize);
        prop_assert!(checked
            .problems
            .iter()
            .all(|p| p.severity == Severity::Warning));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn any_text_is_handled(text in ".{0,400}") {
        holds(&text)?;
    }

    #[test]
    fn any_yaml_like_text_is_handled(text in "([a-zA-Z0-9 :\\-\\[\\]{},#&*!|>'\"?~.\n]|  ){0,300}") {
        holds(&text)?;
    }

    /// Mutations of the valid examples: a byte replaced, a line dropped or duplicated, a
    /// token inserted. This reaches the validator's rules far more often than random text.
    #[test]
    fn mutated_examples_are_handled(
        which in 0..VALID.len(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..4, prop::sample::select(vec![
            "0", "-1", "70000", "\"x\"", "[]", "{}", "~", "true", "::", "10.0.0.11", "eth0",
            "&a", "*a", "!!str", "2", "4", "virtual-ip", "single-node", "/24", "\n  ", ":", "- ",
        ])), 1..4),
    ) {
        let mut text: Vec<String> = VALID[which].lines().map(str::to_string).collect();
        for (at, kind, token) in edits {
            if text.is_empty() { break; }
            let i = at.index(text.len());
            match kind {
                0 => { text.remove(i); }
                1 => { let l = text[i].clone(); text.insert(i, l); }
                2 => {
                    let line = &mut text[i];
                    let cut = line.char_indices().map(|(b, _)| b).nth(at.index(line.chars().count() + 1)).unwrap_or(line.len());
                    line.insert_str(cut, token);
                }
                _ => {
                    let line = &mut text[i];
                    if let Some(colon) = line.find(": ") {
                        line.truncate(colon + 2);
                        line.push_str(token);
                    }
                }
            }
        }
        holds(&text.join("\n"))?;
    }

    /// Definitions built from values: the verdict matches the rules computed here.
    #[test]
    fn generated_definitions_follow_the_rules(
        port in -5i64..70_000,
        replicas in -2i64..12,
        machines in 0usize..12,
        vip in any::<bool>(),
    ) {
        let mut y = format!(
            "endpoint:\n  host: {}\n  port: {port}\ncontrolPlane:\n  replicas: {replicas}\n  machines:\n",
            if vip { "10.0.0.250" } else { "lb.example.com" }
        );
        for i in 0..machines {
            y.push_str(&format!("    - {{name: cp{i}, address: 10.0.0.{}/24}}\n", i + 1));
        }
        if machines == 0 {
            y = y.replace("  machines:\n", "  machines: []\n");
        }
        if vip {
            y.push_str("virtualIP:\n  interface: eth0\n");
        }
        holds(&y)?;
        let valid = (1..=65535).contains(&port)
            && replicas >= 1
            && replicas % 2 == 1
            && machines >= replicas as usize
;
        let c = check_str(&y);
        prop_assert_eq!(c.endpoint.is_some(), valid, "{}\n{:?}", y, c.problems);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// Konvoy-style flags with any values: no panic, problems name a flag or a field.
    #[test]
    fn any_konvoy_flags_are_handled(
        host in proptest::option::of(".{0,40}"),
        port in any::<i64>(),
        replicas in any::<i64>(),
        interface in proptest::option::of(".{0,20}"),
        machines in prop::collection::vec(".{0,30}", 0..8),
    ) {
        let c = cpe_config::KonvoyFlags { cluster: None, host, port, replicas, interface, machines }.check();
        prop_assert_eq!(c.endpoint.is_some(), c.errors() == 0);
        for p in &c.problems {
            prop_assert!(!p.field.is_empty() && !p.rule.is_empty(), "{:?}", p);
            prop_assert!(p.pos.is_none(), "{:?}", p);
        }
    }
}

#[test]
fn the_regression_corpus_is_handled() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = match cpe_config::read_file(&path) {
            Ok(t) => t,
            Err(e) => {
                // Refused before parsing (binary, too large): one problem, that is all.
                assert_eq!(e.problems().len(), 1, "{}", path.display());
                continue;
            }
        };
        if let Err(e) = holds(&text) {
            panic!("{}: {e}", path.display());
        }
        n += 1;
    }
    assert!(n >= 15, "the corpus went missing: {n} files");
}
