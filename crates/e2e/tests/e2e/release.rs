//! The release, as an operator receives it: `scripts/release.sh image` packs a static
//! `cpe` into an OCI archive; the test reads the archive as a registry or runtime would
//! (tar, `index.json`, manifest, config, layer), checks the tag, labels and entrypoint,
//! runs `/cpe version` from the image's root filesystem alone (chroot: no library
//! beside it), runs the image with podman, and checks that `cpe render` names the image
//! the archive is tagged with. The completions and man pages `cpe generate` writes for
//! the release tarball are checked too.
//!
//! The full static release build takes minutes (see docs/install.md), so the image step
//! gets its binary from `CPE_STATIC_BINARY` when set (e.g. CI after `scripts/release.sh`),
//! else from a static debug build into `target/static` (incremental after the first).
//! Needs root (chroot, podman) and the Debian packages scripts/test.sh installs (umoci,
//! file, podman, runc): when something is missing the test fails and says what.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    // crates/e2e -> the workspace root
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn cpe() -> Command {
    Command::new(cpe_e2e::cpe_bin())
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A statically linked cpe of this source.
fn static_cpe() -> PathBuf {
    if let Some(p) = std::env::var_os("CPE_STATIC_BINARY") {
        return PathBuf::from(p);
    }
    let target_dir = workspace().join("target/static");
    run(Command::new(env!("CARGO"))
        .current_dir(workspace())
        .args(["build", "--locked", "-p", "cpe", "--bin", "cpe"])
        .args(["--target", "x86_64-unknown-linux-gnu"])
        .env("CARGO_TARGET_DIR", &target_dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        // Line tables are enough for a test binary, and build much faster.
        .env("CARGO_PROFILE_DEV_DEBUG", "line-tables-only"));
    target_dir.join("x86_64-unknown-linux-gnu/debug/cpe")
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn blob(layout: &Path, digest: &str) -> PathBuf {
    let (alg, hex) = digest.split_once(':').unwrap();
    layout.join("blobs").join(alg).join(hex)
}

fn is_root() -> bool {
    run(Command::new("id").arg("-u")).trim() == "0"
}

#[test]
fn the_image_archive_holds_only_the_static_binary_and_it_runs() {
    assert!(
        is_root(),
        "this test needs root (chroot into the image's root filesystem, podman): run it as root, as scripts/test.sh does"
    );
    let bin = static_cpe();
    let file = run(Command::new("file").arg("-L").arg(&bin));
    assert!(
        file.contains("statically linked") || file.contains("static-pie linked"),
        "{file}"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    run(Command::new("bash")
        .arg(workspace().join("scripts/release.sh"))
        .arg("image")
        .arg(&bin)
        .arg(&out));
    let archive = out.join(format!("cpe-{VERSION}-oci.tar"));

    // The archive as a runtime reads it.
    let layout = dir.path().join("layout");
    std::fs::create_dir(&layout).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&layout));
    assert_eq!(
        json(&layout.join("oci-layout"))["imageLayoutVersion"],
        "1.0.0"
    );
    let index = json(&layout.join("index.json"));
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1, "{index}");
    let m = &manifests[0];
    let ann = &m["annotations"];
    assert_eq!(
        ann["org.opencontainers.image.ref.name"],
        format!("cpe:{VERSION}")
    );
    let full_name = ann["io.containerd.image.name"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(full_name, format!("ghcr.io/cpe-dev/cpe:{VERSION}"));
    let manifest = json(&blob(&layout, m["digest"].as_str().unwrap()));
    assert_eq!(manifest["schemaVersion"], 2);
    let config = json(&blob(
        &layout,
        manifest["config"]["digest"].as_str().unwrap(),
    ));
    assert_eq!(config["os"], "linux");
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["config"]["Entrypoint"], serde_json::json!(["/cpe"]));
    let labels = &config["config"]["Labels"];
    let build: serde_json::Value =
        serde_json::from_str(&run(Command::new(&bin).args(["version", "--json"]))).unwrap();
    assert_eq!(labels["org.opencontainers.image.version"], VERSION);
    assert_eq!(
        labels["org.opencontainers.image.revision"],
        build["revision"]
    );
    assert!(labels["org.opencontainers.image.source"]
        .as_str()
        .unwrap()
        .starts_with("https://"));

    // One layer, one file: /cpe, the binary given.
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{manifest}");
    let layer = blob(&layout, layers[0]["digest"].as_str().unwrap());
    let listing = run(Command::new("tar").arg("-tzf").arg(&layer));
    let entries: Vec<&str> = listing
        .lines()
        .map(|l| l.trim_start_matches("./"))
        .filter(|l| !l.is_empty() && *l != ".")
        .collect();
    assert_eq!(entries, ["cpe"], "the image holds more than the binary");
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&layer)
        .arg("-C")
        .arg(&rootfs));
    assert_eq!(
        std::fs::read(rootfs.join("cpe")).unwrap(),
        std::fs::read(&bin).unwrap()
    );

    // It runs with nothing but itself in its root filesystem.
    let v = run(Command::new("chroot")
        .arg(&rootfs)
        .args(["/cpe", "version"]));
    assert!(v.starts_with(&format!("cpe {VERSION}\n")), "{v}");
    assert!(v.contains("ring"), "{v}");

    // And with a container runtime: podman, with private storage, runc (crun cannot
    // work with this sandbox's hybrid cgroups), and rlimits it may set without
    // CAP_SYS_RESOURCE.
    let podman = |args: &[&str]| {
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(dir.path().join("storage"))
            .arg("--runroot")
            .arg(dir.path().join("run"))
            .args(["--storage-driver", "vfs", "--runtime", "runc"])
            .args(["--cgroup-manager", "cgroupfs", "--events-backend", "file"])
            .args(args);
        c
    };
    // podman names it by the containerd annotation: what `cpe render` names by default.
    let loaded = run(&mut podman(&["load", "-i", archive.to_str().unwrap()]));
    assert!(loaded.contains(&full_name), "{loaded}");
    let v = run(&mut podman(&[
        "run",
        "--rm",
        "--pull",
        "never",
        "--network",
        "none",
        "--ulimit",
        "nofile=1024:1024",
        "--ulimit",
        "nproc=1024:1024",
        &full_name,
        "version",
    ]));
    assert!(v.starts_with(&format!("cpe {VERSION}\n")), "{v}");

    // `cpe render` names this image: the registry's full name by default, the archive's
    // own tag with an empty registry.
    let example = workspace().join("examples/virtual-ip-3.yaml");
    let image_of = |extra: &[&str]| -> String {
        let pod = run(cpe()
            .args(["render", "--kind", "static-pod", "-f"])
            .arg(&example)
            .args(extra));
        pod.lines()
            .find_map(|l| l.trim().strip_prefix("image: "))
            .unwrap_or_else(|| panic!("no image in\n{pod}"))
            .trim_matches('"')
            .to_string()
    };
    assert_eq!(image_of(&[]), full_name);
    assert_eq!(
        image_of(&["--image-registry", ""]),
        format!("cpe:{VERSION}")
    );
}

#[test]
fn completions_and_man_pages_cover_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("completions");
    let m = dir.path().join("man");
    run(cpe().args(["generate", "completions"]).arg(&c));
    run(cpe().args(["generate", "man"]).arg(&m));
    for f in ["cpe.bash", "_cpe", "cpe.fish"] {
        let text = std::fs::read_to_string(c.join(f)).unwrap();
        for sub in ["render", "vip", "lb", "version"] {
            assert!(text.contains(sub), "{f} lacks {sub}");
        }
    }
    for page in ["cpe", "cpe-render", "cpe-lb", "cpe-vip", "cpe-version"] {
        let text = std::fs::read_to_string(m.join(format!("{page}.1"))).unwrap();
        assert!(text.contains(".TH"), "{page}.1 is not a man page");
    }
    assert!(
        !m.join("cpe-generate.1").exists(),
        "a page for the hidden subcommand"
    );
    let render = std::fs::read_to_string(m.join("cpe-render.1")).unwrap();
    assert!(render.contains("image\\-registry"), "{render}");
    // bash accepts its completion script.
    run(Command::new("bash").arg("-n").arg(c.join("cpe.bash")));
}

#[test]
fn version_names_revision_date_compiler_and_tls_provider() {
    let v = run(cpe().arg("version"));
    for key in [
        "revision:",
        "build date:",
        "rustc:",
        "TLS provider: rustls (ring)",
    ] {
        assert!(v.contains(key), "{key} missing:\n{v}");
    }
    let short = run(cpe().arg("--version"));
    assert_eq!(short.trim(), format!("cpe {VERSION}"));
}

/// Every metric the dashboard, the alert rules and the install docs name is one an agent
/// registers (`cpe_lb_*` in cpe-lb, `cpe_vip_*` in cpe-vip) or the admin listener adds
/// (`cpe_build_info`, `process_*`). The running LB's `/metrics` is checked in
/// admin_conventions.rs; this catches a renamed metric the dashboard would silently lose.
#[test]
fn deploy_and_docs_name_only_metrics_that_exist() {
    let read = |p: &str| std::fs::read_to_string(workspace().join(p)).unwrap();
    let lb = read("crates/lb/src/metrics.rs");
    let vip = read("crates/vip/src/metrics.rs");
    let process = read("crates/admin/src/process.rs");
    let mut checked = 0;
    for doc in [
        "deploy/grafana-dashboard.json",
        "deploy/prometheus-rules.yaml",
        "docs/install.md",
    ] {
        let text = read(doc);
        let names = text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("cpe_") || w.starts_with("process_"));
        for name in names {
            let base = ["_bucket", "_count", "_sum", "_total"]
                .iter()
                .fold(name, |n, s| n.strip_suffix(s).unwrap_or(n));
            let exists = if let Some(v) = base.strip_prefix("cpe_vip_") {
                vip.contains(&format!("\"{v}\""))
            } else if base.starts_with("cpe_lb_") {
                lb.contains(&format!("\"{base}\""))
            } else {
                process.contains(base)
            };
            assert!(exists, "{doc} names {name}, which no agent exposes");
            checked += 1;
        }
    }
    assert!(checked > 20, "{checked}");
}
