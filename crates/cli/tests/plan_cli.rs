//! `cpe plan` and `cpe render` as users run them: the real binary, real files, exit codes,
//! stdout and stderr. No test here needs root or the network.

use assert_cmd::Command;
use std::io::Write;
use std::path::PathBuf;

fn cpe() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cpe"))
}

fn example(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
        .display()
        .to_string()
}

fn file_with(contents: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(contents).unwrap();
    f
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str]) -> Run {
    let out = cpe().args(args).output().unwrap();
    let r = Run {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    };
    // Never a panic or a backtrace, whatever the input.
    for s in [&r.stdout, &r.stderr] {
        assert!(!s.contains("panicked"), "{s}");
        assert!(!s.contains("RUST_BACKTRACE"), "{s}");
    }
    r
}

const BAD: &str = "\
cluster: prod
endpoint:
  host: lb_1.example.com
  port: 70000
controlPlane:
  replicas: 4
  machines:
    - {name: cp1, address: 10.0.0.1}
    - {name: cp1, address: 10.0.0.1}
";

#[test]
fn plan_summarises_a_valid_definition() {
    let r = run(&["plan", "-f", &example("external-lb-5.yaml")]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    for want in [
        "external-lb-5.yaml: valid\n",
        "  mode       external-lb: an L4 load balancer in front of every machine that answers\n             (inferred: no virtual IP interface and more than 1 replica)\n",
        "  endpoint   api.prod-eu1.example.com.:6443\n",
        "  replicas   5: tolerates 2 failures, quorum 3, 1 spare\n",
        "    cp6  10.1.0.16  API server :8443  (spare)\n",
        "\n0 errors, 0 warnings\n",
    ] {
        assert!(r.stdout.contains(want), "missing {want:?} in\n{}", r.stdout);
    }
}

#[test]
fn a_written_mode_is_not_called_inferred() {
    let r = run(&["plan", "-f", &example("external-lb-3.yaml")]);
    assert_eq!(r.code, 0);
    assert!(
        r.stdout.contains("  mode       external-lb: "),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("(inferred"), "{}", r.stdout);
}

#[test]
fn plan_warns_about_a_single_node_and_still_exits_0() {
    let r = run(&["plan", "-f", &example("single-node.yaml")]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stdout.contains(
            "single-node.yaml:15:13: warning: controlPlane.replicas = 1: a single-node control plane is not for production\n"
        ),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains(
        "warning: controlPlane.replicas = 1: a single-node control plane cannot be upgraded in place\n"
    ));
    assert!(r.stdout.ends_with("0 errors, 2 warnings\n"), "{}", r.stdout);
}

#[test]
fn plan_reports_every_problem_at_once_with_its_position_and_exits_1() {
    let f = file_with(BAD.as_bytes());
    let p = f.path().display().to_string();
    let r = run(&["plan", "-f", &p]);
    assert_eq!(r.code, 1);
    let want = format!(
        "{p}: invalid

{p}:3:9: error: endpoint.host = lb_1.example.com: must be an IP address or an RFC 1123 DNS name
  hint: a DNS name has labels of a-z, 0-9 and '-' separated by dots, e.g. lb.example.com
{p}:4:9: error: endpoint.port = 70000: must be between 1 and 65535
{p}:6:13: error: controlPlane.replicas = 4: cannot be an even number when etcd is stacked
  hint: 4 machines tolerate 1 failure like 3: use 3 or 5
{p}:8:5: error: controlPlane.machines = 2: lists 2 machines, fewer than the 4 replicas
  hint: list every control-plane machine with its name and address; machines beyond the replicas are spares
{p}:9:14: error: controlPlane.machines[1].name = cp1: is already the name of controlPlane.machines[0] on line 8
  hint: every machine needs its own name
{p}:9:28: error: controlPlane.machines[1].address = 10.0.0.1: is already the address of controlPlane.machines[0] (`cp1`) on line 8
  hint: every machine needs its own address

6 errors, 0 warnings
"
    );
    assert_eq!(r.stdout, want);
}

#[test]
fn plan_json_has_validity_problems_and_summary() {
    let r = run(&[
        "plan",
        "-f",
        &example("virtual-ip-3.yaml"),
        "--output",
        "json",
    ]);
    assert_eq!(r.code, 0);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["summary"]["mode"], "virtual-ip");
    assert_eq!(v["summary"]["modeInferred"], true);
    assert_eq!(v["summary"]["failuresTolerated"], 1);
    assert_eq!(v["summary"]["quorum"], 2);
    assert_eq!(v["summary"]["spares"], 0);
    assert_eq!(v["summary"]["machines"][2]["name"], "cp3");
    assert_eq!(v["definition"]["vip"]["interface"], "eth0");

    let f = file_with(BAD.as_bytes());
    let r = run(&["plan", "-f", &f.path().display().to_string(), "-o", "json"]);
    assert_eq!(r.code, 1);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"], 6);
    assert!(v["summary"].is_null());
    let p = &v["problems"][1];
    assert_eq!(
        (
            &p["line"],
            &p["column"],
            &p["field"],
            &p["value"],
            &p["rule"]
        ),
        (
            &serde_json::json!(4),
            &serde_json::json!(9),
            &serde_json::json!("endpoint.port"),
            &serde_json::json!("70000"),
            &serde_json::json!("must be between 1 and 65535")
        )
    );
}

#[test]
fn plan_accepts_konvoy_flags_instead_of_a_file() {
    let r = run(&[
        "plan",
        "--control-plane-endpoint-host",
        "10.0.0.10",
        "--virtual-ip-interface",
        "eth0",
        "--machine",
        "cp1=10.0.0.11/24",
        "--machine",
        "cp2=10.0.0.12/24",
        "--machine",
        "cp3=10.0.0.13/24",
    ]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(r.stdout.contains("  mode       virtual-ip: one healthy machine holds the virtual IP; not a load balancer\n             (inferred: a virtual IP interface is given)\n"), "{}", r.stdout);
    assert!(r.stdout.contains("  endpoint   10.0.0.10:6443\n"));

    // Problems name the flag.
    let r = run(&[
        "plan",
        "--control-plane-endpoint-host",
        "lb.example.com",
        "--control-plane-replicas",
        "2",
        "--control-plane-endpoint-port",
        "0",
    ]);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout
            .contains("error: --control-plane-endpoint-port = 0: must be between 1 and 65535\n"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains(
        "error: --control-plane-replicas = 2: cannot be an even number when etcd is stacked\n"
    ));
}

#[test]
fn usage_errors_exit_2() {
    // Konvoy flags together with -f.
    let r = run(&[
        "plan",
        "-f",
        &example("external-lb-3.yaml"),
        "--control-plane-replicas",
        "3",
    ]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("cannot be used with"), "{}", r.stderr);
    // Neither a file nor a host.
    assert_eq!(run(&["plan"]).code, 2);
    assert_eq!(
        run(&["plan", "-f", &example("external-lb-3.yaml"), "-o", "xml"]).code,
        2
    );
    assert_eq!(
        run(&["render", "-f", &example("external-lb-3.yaml")]).code,
        2
    );
    assert_eq!(
        run(&[
            "render",
            "-f",
            &example("external-lb-3.yaml"),
            "--kind",
            "helm"
        ])
        .code,
        2
    );
}

#[test]
fn unreadable_inputs_get_one_short_error() {
    let big = tempfile::NamedTempFile::new().unwrap();
    big.as_file().set_len(10 * 1024 * 1024).unwrap();
    let binary = file_with(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0xff, 0xfe]);
    let malformed = file_with(b"endpoint:\n  host: [lb\n");
    let wrong_types = file_with(
        b"endpoint:\n  host: lb.example.com\n  port: abc\ncontrolPlane:\n  replicas: three\n  machines: cp1\n",
    );
    let cases: Vec<(String, &str)> = vec![
        (
            "/nonexistent/endpoint.yaml".into(),
            "/nonexistent/endpoint.yaml: error: (file): cannot be read: No such file or directory (os error 2)\n",
        ),
        (
            big.path().display().to_string(),
            ": error: (file) = 10485760 bytes: is larger than the 1048576 bytes a definition may have\n",
        ),
        (
            binary.path().display().to_string(),
            ": error: (file): is not UTF-8 text (a binary file?)\n",
        ),
        (
            malformed.path().display().to_string(),
            ": error: (file): is not valid YAML: ",
        ),
        (
            wrong_types.path().display().to_string(),
            ":3:9: error: endpoint.port = abc: must be a whole number, not text\n",
        ),
    ];
    for (path, want) in cases {
        for sub in ["plan", "render"] {
            let mut args = vec![sub, "-f", &path];
            if sub == "render" {
                args.extend(["--kind", "kubeadm"]);
            }
            let r = run(&args);
            assert_eq!(r.code, 1, "{sub} {path}");
            let out = if sub == "plan" { &r.stdout } else { &r.stderr };
            assert!(out.contains(want), "{sub} {path}: want {want:?} in\n{out}");
            assert!(out.lines().count() <= 12, "{sub}: not one screen:\n{out}");
            if sub == "render" {
                assert!(r.stdout.is_empty(), "nothing rendered: {}", r.stdout);
            }
        }
    }
    // Wrong types are all collected, not just the first.
    let r = run(&["plan", "-f", &wrong_types.path().display().to_string()]);
    assert!(r.stdout.contains(
        ":5:13: error: controlPlane.replicas = three: must be a whole number, not text\n"
    ));
    assert!(r
        .stdout
        .contains(":6:13: error: controlPlane.machines = cp1: must be a list, not text\n"));
}

#[test]
fn render_writes_each_kind_to_stdout() {
    let r = run(&[
        "render",
        "-f",
        &example("virtual-ip-3.yaml"),
        "--kind",
        "static-pod",
        "--image",
        "registry.local/cpe:dev",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("\nkind: Pod\n"));
    assert!(r
        .stdout
        .contains("      image: \"registry.local/cpe:dev\"\n"));
    let r = run(&[
        "render",
        "-f",
        &example("external-lb-3.yaml"),
        "--kind",
        "systemd",
        "--binary",
        "/opt/cpe/bin/cpe",
    ]);
    assert_eq!(r.code, 0);
    assert!(r
        .stdout
        .contains("\nExecStart=/opt/cpe/bin/cpe lb -f /etc/cpe/endpoint.yaml\n"));
    let r = run(&[
        "render",
        "-f",
        &example("virtual-ip-7.yaml"),
        "--kind",
        "kubeadm",
    ]);
    assert_eq!(r.code, 0);
    assert!(r
        .stdout
        .contains("controlPlaneEndpoint: \"[fd00:10::100]:6443\"\n"));
    let r = run(&[
        "render",
        "-f",
        &example("external-lb-3.yaml"),
        "--kind",
        "capi",
        "--kubernetes-version",
        "v1.31.2",
    ]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("  version: \"v1.31.2\"\n"));
    // Konvoy flags work for render too.
    let r = run(&[
        "render",
        "--control-plane-endpoint-host",
        "lb.example.com",
        "--machine",
        "a=10.0.0.1",
        "--machine",
        "b=10.0.0.2",
        "--machine",
        "c=10.0.0.3",
        "--kind",
        "kubeadm",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r
        .stdout
        .contains("controlPlaneEndpoint: \"lb.example.com:6443\"\n"));
}

#[test]
fn render_refuses_a_kind_that_does_not_fit_the_mode() {
    let r = run(&[
        "render",
        "-f",
        &example("external-lb-3.yaml"),
        "--kind",
        "static-pod",
    ]);
    assert_eq!(r.code, 2);
    assert!(r.stdout.is_empty());
    assert_eq!(
        r.stderr,
        "error: --kind static-pod does not apply to external-lb mode: the static pod runs the VIP agent, which only runs in virtual-ip mode\n"
    );
    let r = run(&[
        "render",
        "-f",
        &example("single-node.yaml"),
        "--kind",
        "systemd",
    ]);
    assert_eq!(r.code, 2);
    // Warnings go to stderr, never into the artifact.
    let r = run(&[
        "render",
        "-f",
        &example("single-node.yaml"),
        "--kind",
        "kubeadm",
    ]);
    assert_eq!(r.code, 0);
    assert!(r.stderr.contains("warning: controlPlane.replicas = 1"));
    assert!(!r.stdout.contains("warning"));
}

#[test]
fn help_explains_every_flag_with_its_default() {
    let plan = run(&["plan", "--help"]).stdout;
    for want in [
        "--file <FILE>",
        "--output <OUTPUT>",
        "[default: text]",
        "--control-plane-endpoint-host <HOST>",
        "--control-plane-endpoint-port <PORT>",
        "[default: 6443]",
        "--control-plane-replicas <N>",
        "[default: 3]",
        "--virtual-ip-interface <IFACE>",
        "--machine <NAME=ADDRESS>",
        "[default: kubernetes]",
        "Exit status: 0 valid",
    ] {
        assert!(plan.contains(want), "plan --help lacks {want:?}:\n{plan}");
    }
    let render = run(&["render", "--help"]).stdout;
    for want in [
        "--kind <KIND>",
        "static-pod",
        "--image-registry <REGISTRY>",
        "[default: ghcr.io/cpe-dev]",
        "[default: /etc/cpe/endpoint.yaml]",
        "[default: /usr/local/bin/cpe]",
        "[default: %H]",
        "[default: v1.32.4]",
        "[default: default]",
        "[default: 6443]",
        "Exit status: 0 rendered",
    ] {
        assert!(
            render.contains(want),
            "render --help lacks {want:?}:\n{render}"
        );
    }
}

#[test]
fn virtual_ip_needs_no_machine_list_from_konvoy_flags_or_a_file() {
    let r = run(&[
        "plan",
        "--control-plane-endpoint-host",
        "10.0.0.10",
        "--virtual-ip-interface",
        "eth0",
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("  machines   none listed: any machine may run `cpe vip`"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("  etcd       this machine's own member (https://127.0.0.1:2379), then every member etcd lists\n"),
        "{}",
        r.stdout
    );
    // Outside virtual-ip mode the list is still required.
    let r = run(&["plan", "--control-plane-endpoint-host", "lb.example.com"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stdout
            .contains("lists 0 machines, fewer than the 3 replicas"),
        "{}",
        r.stdout
    );
}

#[test]
fn render_capi_flags_and_the_single_node_warning() {
    let dir = tempfile::tempdir().unwrap();
    let vip = dir.path().join("vip.yaml");
    std::fs::write(
        &vip,
        "cluster: prod\nendpoint:\n  host: 10.0.0.10\nvirtualIP:\n  interface: eth0\ncontrolPlane:\n  replicas: 3\n",
    )
    .unwrap();
    let f = vip.to_str().unwrap();
    let r = run(&[
        "render",
        "-f",
        f,
        "--kind",
        "capi",
        "--capi-version",
        "v1beta2",
        "--infrastructure-kind",
        "VSphereMachineTemplate",
        "--infrastructure-api-version",
        "infrastructure.cluster.x-k8s.io/v1beta1",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r
        .stdout
        .contains("apiVersion: controlplane.cluster.x-k8s.io/v1beta2\n"));
    assert!(r.stdout.contains("      infrastructureRef:\n        apiGroup: infrastructure.cluster.x-k8s.io\n        kind: VSphereMachineTemplate\n"), "{}", r.stdout);
    // A bad value is a usage error naming the flag; one flag without the other is clap's.
    let r = run(&[
        "render",
        "-f",
        f,
        "--kind",
        "capi",
        "--infrastructure-kind",
        "VSphereMachineTemplate",
        "--infrastructure-api-version",
        "v1beta1",
    ]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("error: --infrastructure-api-version = v1beta1: must be GROUP/VERSION"),
        "{}",
        r.stderr
    );
    assert!(r.stdout.is_empty());
    let r = run(&[
        "render",
        "-f",
        f,
        "--kind",
        "capi",
        "--infrastructure-kind",
        "X",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    // kubeadm in single-node mode with an IP endpoint: the warning on stderr.
    let single = dir.path().join("single.yaml");
    std::fs::write(
        &single,
        "endpoint:\n  host: 10.0.0.21\ncontrolPlane:\n  replicas: 1\n  machines:\n    - {name: cp1, address: 10.0.0.21}\n",
    )
    .unwrap();
    let r = run(&[
        "render",
        "-f",
        single.to_str().unwrap(),
        "--kind",
        "kubeadm",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("warning: the endpoint is the IP address 10.0.0.21: kubeadm cannot turn a single control-plane node into a highly available control plane"), "{}", r.stderr);
    assert!(r.stderr.contains("use a DNS name"), "{}", r.stderr);
}
