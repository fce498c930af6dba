//! `cpe vip` and `cpe lb` flags and definitions as users run them: the same rule gives the
//! same verdict from `cpe plan -f`, `cpe vip -f` and `cpe vip --lease-ttl`, each problem
//! naming what the user wrote (the file's field and line, or the flag); the definition's
//! warnings are printed; the flags are held to the file's limits. Every `cpe vip` here
//! stops on its configuration before touching the host: no root, no network.

use assert_cmd::Command;
use std::io::Write;
use std::time::Duration;

fn cpe() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cpe"))
}

fn file_with(contents: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(contents.as_bytes()).unwrap();
    f
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str]) -> Run {
    let out = cpe()
        .args(args)
        .timeout(Duration::from_secs(20))
        .output()
        .unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

const VIP: &str = "\
cluster: prod
endpoint:
  host: 10.77.0.100
controlPlane:
  replicas: 3
  machines:
    - {name: cp1, address: 10.77.0.11}
    - {name: cp2, address: 10.77.0.12}
    - {name: cp3, address: 10.77.0.13}
virtualIP:
  interface: eth0
";

const TTL_RULE: &str = "must be a whole number of seconds, at least 2s";

/// The example: `leaseTTL: 1s` passed `cpe plan` with a warning, then `cpe vip -f`
/// refused it naming `--lease-ttl`, a flag the user never typed.
#[test]
fn lease_ttl_1s_is_an_error_from_plan_vip_file_and_vip_flag_alike() {
    let def = file_with(&format!("{VIP}  leaseTTL: 1s\n"));
    let path = def.path().to_str().unwrap();
    let field = format!("{path}:12:13: error: virtualIP.leaseTTL = 1s: {TTL_RULE}");

    let plan = run(&["plan", "-f", path]);
    assert_eq!(plan.code, Some(1), "{}{}", plan.stdout, plan.stderr);
    assert!(
        plan.stdout.contains(&field) || plan.stderr.contains(&field),
        "{}{}",
        plan.stdout,
        plan.stderr
    );

    let vip = run(&["vip", "-f", path, "--node", "cp1"]);
    assert_eq!(vip.code, Some(1), "{}", vip.stderr);
    assert!(vip.stderr.contains(&field), "{}", vip.stderr);
    assert!(!vip.stderr.contains("--lease-ttl"), "{}", vip.stderr);

    let flag = run(&[
        "vip",
        "--vip",
        "10.77.0.100/24",
        "--interface",
        "eth0",
        "--etcd",
        "http://127.0.0.1:2379",
        "--node",
        "cp1",
        "--lease-ttl",
        "1s",
    ]);
    assert_eq!(flag.code, Some(2), "{}", flag.stderr);
    assert!(
        flag.stderr
            .contains(&format!("error: --lease-ttl = 1s: {TTL_RULE}")),
        "{}",
        flag.stderr
    );
    // The flag over a valid definition: the flag is named, not the file.
    let ok = file_with(VIP);
    let over = run(&[
        "vip",
        "-f",
        ok.path().to_str().unwrap(),
        "--node",
        "cp1",
        "--lease-ttl",
        "1s",
    ]);
    assert_eq!(over.code, Some(2), "{}", over.stderr);
    assert!(
        over.stderr
            .starts_with(&format!("error: --lease-ttl = 1s: {TTL_RULE}")),
        "{}",
        over.stderr
    );
}

/// `cpe vip -f` prints the definition's warnings as `cpe plan` does. The run then stops at
/// the etcd client's settings (a CA file that does not exist), before touching the host.
#[test]
fn vip_with_a_file_prints_the_definitions_warnings() {
    let def = file_with(&VIP.replace("  replicas: 3\n", ""));
    let path = def.path().to_str().unwrap();
    let r = run(&[
        "vip",
        "-f",
        path,
        "--node",
        "cp1",
        "--etcd-ca",
        "/nonexistent/etcd-ca.crt",
    ]);
    assert_ne!(r.code, Some(0), "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!(
            "{path}:4:1: warning: controlPlane.replicas: is not given: 3 is assumed"
        )),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("/nonexistent/etcd-ca.crt"),
        "{}",
        r.stderr
    );
}

/// The file's 10 ms minimum of the health interval holds for the flags of both commands.
#[test]
fn health_interval_flags_are_held_to_the_files_minimum() {
    let want = "error: --health-interval = 1ms: must be at least 10ms";
    let vip = run(&[
        "vip",
        "--vip",
        "10.77.0.100",
        "--interface",
        "eth0",
        "--etcd",
        "http://127.0.0.1:2379",
        "--node",
        "cp1",
        "--health-interval",
        "1ms",
    ]);
    assert_eq!(vip.code, Some(2), "{}", vip.stderr);
    assert!(vip.stderr.contains(want), "{}", vip.stderr);
    let lb = run(&[
        "lb",
        "--listen",
        "127.0.0.1:0",
        "--backend",
        "127.0.0.1:1",
        "--health-interval",
        "1ms",
    ]);
    assert_eq!(lb.code, Some(2), "{}", lb.stderr);
    assert!(lb.stderr.contains(want), "{}", lb.stderr);
}

/// A backend given twice is refused, like a machine listed twice in a file (maintenance
/// would reach only the first while traffic still went to the second).
#[test]
fn a_backend_given_twice_is_refused() {
    let r = run(&[
        "lb",
        "--listen",
        "127.0.0.1:0",
        "--backend",
        "10.0.0.11:6443",
        "--backend",
        "10.0.0.12:6443",
        "--backend",
        "10.0.0.11:6443",
    ]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert_eq!(
        r.stderr,
        "error: --backend = 10.0.0.11:6443: is already backend 1 (--backend 10.0.0.11:6443)\n  hint: give every backend once\n"
    );
}

/// `cpe lb -f` logs the definition's warnings at start (here: a listener on another port
/// than the endpoint's). The load balancer is stopped by the test's timeout.
#[test]
fn lb_with_a_file_logs_the_definitions_warnings() {
    let def = file_with(
        "endpoint:\n  host: lb.example.com\ncontrolPlane:\n  replicas: 3\n  machines:\n    - {name: cp1, address: 127.0.0.1}\n    - {name: cp2, address: 127.0.0.2}\n    - {name: cp3, address: 127.0.0.3}\nloadBalancer:\n  listen: 127.0.0.1:0\n  admin: 127.0.0.1:0\n",
    );
    let path = def.path().to_str().unwrap();
    let out = cpe()
        .args(["lb", "-f", path])
        .timeout(Duration::from_secs(2))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("loadBalancer.listen = 127.0.0.1:0: listens on port 0, but clients use the endpoint port 6443"),
        "{stderr}"
    );
}

/// `cpe plan -f /dev/zero` and an endless pipe end at once with "too large".
#[test]
fn plan_reads_streams_only_up_to_the_limit() {
    let r = run(&["plan", "-f", "/dev/zero"]);
    assert_eq!(r.code, Some(1), "{}{}", r.stdout, r.stderr);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(all.contains("is larger than the 1048576 bytes"), "{all}");
    // `yes | cpe plan -f /dev/stdin`.
    let out = cpe()
        .args(["plan", "-f", "/dev/stdin"])
        .write_stdin("y\n".repeat(600_000))
        .timeout(Duration::from_secs(20))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    // A reloadable definition must be a regular file: `cpe vip -f /dev/zero` refuses it.
    let r = run(&["vip", "-f", "/dev/zero", "--node", "cp1"]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("is a character device, not a regular file"),
        "{}",
        r.stderr
    );
}

/// A one-file pod (`cpe render --kind static-pod --inline`) carries the definition in
/// `CPE_DEFINITION`: `cpe vip` without `-f` reads it through the same loader and rules,
/// and its messages name the private file it was written to.
#[test]
fn vip_reads_an_inline_definition_from_the_environment() {
    let out = cpe()
        .args(["vip", "--node", "cp1"])
        .env("CPE_DEFINITION", format!("{VIP}  leaseTTL: 1s\n"))
        .timeout(Duration::from_secs(20))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            ".yaml:12:13: error: virtualIP.leaseTTL = 1s: {TTL_RULE}"
        )) && stderr.contains("cpe-definition-"),
        "{stderr}"
    );
    // Without the variable and without -f, the flags a definition would give are required.
    let bare = run(&["vip", "--node", "cp1"]);
    assert_eq!(bare.code, Some(2), "{}", bare.stderr);
}

/// `cpe vip --load-balance` takes `cpe lb`'s discovery flags under `cpe lb`'s rules: the
/// kubernetes source without a kubeconfig names `--kubeconfig` (exit 2), and `--discover`
/// without load balancing names what it needs.
#[test]
fn vip_discovery_flags_are_held_to_cpe_lbs_rules() {
    let base = [
        "vip",
        "--vip",
        "10.77.0.100/24",
        "--interface",
        "eth0",
        "--etcd",
        "http://127.0.0.1:2379",
        "--node",
        "cp1",
    ];
    let out = cpe()
        .args(base)
        .args(["--load-balance", "--discover", "kubernetes"])
        .env_remove("KUBECONFIG")
        .timeout(Duration::from_secs(20))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("error: --kubeconfig: is required with --discover kubernetes"),
        "{stderr}"
    );
    let mut args = base.to_vec();
    args.extend(["--discover", "etcd"]);
    let r = run(&args);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("error: --discover = etcd: needs --load-balance"),
        "{}",
        r.stderr
    );
}
