//! Golden files: every kind rendered from every example is compared with
//! `tests/golden/<example>.<kind>` (an error is pinned as `....error`; the `--inline`
//! static pod as `<example>.static-pod.inline.yaml`). Run with
//! `UPDATE_GOLDEN=1` to rewrite them after an intended change, then review the diff.

mod common;

use cpe_render::{render, Kind, Options};
use std::path::PathBuf;

#[test]
fn rendered_artifacts_match_the_golden_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut mismatches = Vec::new();
    let mut expected_files = Vec::new();
    let default = Options::default();
    let inline = Options {
        inline: true,
        ..Options::default()
    };
    // Cluster API 1.11's v1beta2 with a named infrastructure template.
    let v1beta2 = Options {
        capi_version: cpe_render::CapiVersion::V1beta2,
        infrastructure: Some(
            cpe_render::InfrastructureRef::new(
                "VSphereMachineTemplate",
                "infrastructure.cluster.x-k8s.io/v1beta1",
            )
            .unwrap(),
        ),
        ..Options::default()
    };
    // Every kind with the default options, the one-file static pod (`--inline`), and
    // Cluster API v1beta2.
    let variants: Vec<(Kind, &str, &Options)> = Kind::ALL
        .into_iter()
        .map(|k| (k, "", &default))
        .chain([
            (Kind::StaticPod, ".inline", &inline),
            (Kind::Capi, ".v1beta2", &v1beta2),
        ])
        .collect();
    for (name, e) in common::examples() {
        for &(kind, suffix, options) in &variants {
            let (text, ext) = match render(&e, kind, options) {
                Ok(t) => (
                    t,
                    if kind == Kind::Systemd {
                        "service"
                    } else {
                        "yaml"
                    },
                ),
                Err(err) => (format!("{err}\n"), "error"),
            };
            let file = dir.join(format!("{name}.{kind}{suffix}.{ext}"));
            expected_files.push(file.file_name().unwrap().to_owned());
            if update {
                std::fs::write(&file, &text).unwrap();
                continue;
            }
            match std::fs::read_to_string(&file) {
                Ok(want) if want == text => {}
                Ok(want) => mismatches.push(format!(
                    "{}: differs (rerun with UPDATE_GOLDEN=1 if intended)\n--- want\n{want}\n--- got\n{text}",
                    file.display()
                )),
                Err(err) => mismatches.push(format!("{}: {err}", file.display())),
            }
        }
    }
    // No stale golden file left behind for a kind or example that no longer exists.
    for entry in std::fs::read_dir(&dir).unwrap() {
        let f = entry.unwrap().file_name();
        if !expected_files.contains(&f) {
            if update {
                std::fs::remove_file(dir.join(&f)).unwrap();
            } else {
                mismatches.push(format!("stale golden file {}", f.to_string_lossy()));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n\n"));
}

#[test]
fn the_written_definition_reads_back_as_the_same_endpoint() {
    for (name, e) in common::examples() {
        let text = cpe_render::definition(&e);
        let back = cpe_config::load_str(&text)
            .unwrap_or_else(|err| panic!("{name}: {err}\n{text}"))
            .endpoint;
        assert_eq!(back, e, "{name}\n{text}");
    }
}
