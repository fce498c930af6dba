//! Every file in `examples/` is a valid definition, and says what it claims to be.

use cpe_config::{load_file, Mode, Severity};
use std::path::PathBuf;

fn examples() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_example_is_valid() {
    let all = examples();
    assert!(all.len() >= 5, "{all:?}");
    for p in all {
        let loaded = load_file(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let name = p.file_stem().unwrap().to_str().unwrap();
        let want = if name.starts_with("external-lb") {
            Mode::ExternalLb
        } else if name.starts_with("virtual-ip") {
            Mode::VirtualIp
        } else {
            Mode::SingleNode
        };
        assert_eq!(loaded.endpoint.mode, want, "{name}");
        // `external-lb-5` has 5 replicas, and so on.
        if let Some(n) = name.rsplit('-').next().and_then(|n| n.parse::<u32>().ok()) {
            assert_eq!(loaded.endpoint.replicas, n, "{name}");
        }
        // Only the single node carries a warning.
        let warned = loaded
            .warnings
            .iter()
            .any(|w| w.severity == Severity::Warning);
        assert_eq!(
            warned,
            want == Mode::SingleNode,
            "{name}: {:?}",
            loaded.warnings
        );
    }
}
