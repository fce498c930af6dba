//! Shared by the render tests: the examples, loaded.

pub mod kubectl;

use cpe_config::Endpoint;
use std::path::PathBuf;

/// Every `examples/*.yaml`, by file stem, loaded and valid. (Not every test binary that
/// includes this module uses it.)
#[allow(dead_code)]
pub fn examples() -> Vec<(String, Endpoint)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut v: Vec<(String, Endpoint)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| {
            let e = cpe_config::load_file(&p)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
                .endpoint;
            (p.file_stem().unwrap().to_string_lossy().into_owned(), e)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(v.len() >= 5, "examples missing: {}", v.len());
    v
}
