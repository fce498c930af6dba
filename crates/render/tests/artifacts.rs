//! The rendered artifacts read back: valid YAML with the fields the issue asks for, and
//! the built-in kinds (Pod) accepted by the real `kubectl create --dry-run=client`.
//!
//! kubectl needs a server for REST mapping even in client dry-run, so the test serves
//! the three discovery documents it asks for (`/api`, `/apis`, `/api/v1`) on
//! 127.0.0.1; nothing else is faked. kubectl must be installed: when it is not, the test
//! fails and says so.

mod common;

use common::kubectl::{discovery_server, kubectl_dry_run};

use cpe_config::Mode;
use cpe_render::{render, Kind, Options};
use serde_json::Value;

fn yaml_docs(text: &str) -> Vec<Value> {
    serde_saphyr::from_str_multiple::<Value, Vec<Value>>(text)
        .unwrap_or_else(|e| panic!("not YAML: {e}\n{text}"))
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

fn at<'v>(v: &'v Value, path: &str) -> &'v Value {
    path.split('.').fold(v, |v, k| match k.parse::<usize>() {
        Ok(i) => &v[i],
        Err(_) => &v[k],
    })
}

#[test]
fn kubeadm_names_the_endpoint_and_puts_the_host_in_the_certificate() {
    for (name, e) in common::examples() {
        let docs = yaml_docs(&render(&e, Kind::Kubeadm, &Options::default()).unwrap());
        assert_eq!(docs.len(), 1, "{name}");
        let d = &docs[0];
        assert_eq!(d["kind"], "ClusterConfiguration");
        let host = e.host.to_string();
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.');
        // No brackets in the SAN, brackets around IPv6 in the endpoint, no trailing dot.
        let want = if host.contains(':') {
            format!("[{host}]:{}", e.port)
        } else {
            format!("{host}:{}", e.port)
        };
        assert_eq!(d["controlPlaneEndpoint"], want.as_str(), "{name}");
        assert_eq!(at(d, "apiServer.certSANs.0"), host, "{name}");
    }
}

#[test]
fn capi_sets_the_endpoint_and_replicas_and_ships_the_agent_in_vip_mode() {
    for (name, e) in common::examples() {
        let docs = yaml_docs(&render(&e, Kind::Capi, &Options::default()).unwrap());
        // A third document, the workers' template, when node-local is enabled.
        assert_eq!(
            docs.len(),
            2 + usize::from(e.node_local.is_some()),
            "{name}"
        );
        let (cluster, kcp) = (&docs[0], &docs[1]);
        assert_eq!(cluster["kind"], "Cluster");
        assert_eq!(
            at(cluster, "spec.controlPlaneEndpoint.port"),
            e.port,
            "{name}"
        );
        assert_eq!(kcp["kind"], "KubeadmControlPlane");
        assert_eq!(at(kcp, "spec.replicas"), e.replicas, "{name}");
        assert_eq!(
            at(cluster, "spec.controlPlaneRef.name"),
            at(kcp, "metadata.name"),
            "{name}"
        );
        let files = at(kcp, "spec.kubeadmConfigSpec.files");
        if e.mode == Mode::VirtualIp {
            assert_eq!(
                at(files, "0.path"),
                "/etc/kubernetes/manifests/cpe-vip.yaml"
            );
            let pod = yaml_docs(at(files, "0.content").as_str().unwrap());
            assert_eq!(pod[0]["kind"], "Pod", "{name}");
            // The definition travels with it, lists no machines (Cluster API generates
            // their names and addresses), and reads back as this endpoint otherwise.
            assert_eq!(at(files, "1.path"), "/etc/cpe/endpoint.yaml");
            let def = at(files, "1.content").as_str().unwrap();
            assert!(!def.contains("machines"), "{name}: {def}");
            let back = cpe_config::load_str(def).unwrap().endpoint;
            assert!(back.machines.is_empty());
            let mut want = e.clone();
            want.machines.clear();
            assert_eq!(back, want, "{name}");
        } else {
            assert!(files.is_null(), "{name}: {files}");
        }
    }
}

#[test]
fn the_static_pod_has_host_network_two_capabilities_and_read_only_etcd_certificates() {
    let mut vip_examples = 0;
    for (name, e) in common::examples() {
        let out = render(&e, Kind::StaticPod, &Options::default());
        if e.mode != Mode::VirtualIp {
            let err = out.unwrap_err().to_string();
            assert!(
                err.contains("only runs in virtual-ip mode"),
                "{name}: {err}"
            );
            continue;
        }
        vip_examples += 1;
        let pod = &yaml_docs(&out.unwrap())[0];
        assert_eq!(pod["kind"], "Pod");
        assert_eq!(at(pod, "spec.hostNetwork"), true, "{name}");
        let c = at(pod, "spec.containers.0");
        assert_eq!(
            at(c, "securityContext.capabilities.add"),
            &serde_json::json!(["NET_ADMIN", "NET_RAW"]),
            "{name}"
        );
        assert_eq!(
            at(c, "securityContext.capabilities.drop"),
            &serde_json::json!(["ALL"])
        );
        assert_eq!(c["image"], cpe_render::DEFAULT_IMAGE);
        assert_eq!(
            c["image"].as_str().unwrap(),
            format!("ghcr.io/cpe-dev/cpe:{}", env!("CARGO_PKG_VERSION"))
        );
        // The image's entrypoint is /cpe: the pod gives the arguments only.
        assert!(c["command"].is_null(), "{name}");
        assert_eq!(
            strings(&c["args"]),
            [
                "vip",
                "-f",
                "/etc/cpe/endpoint.yaml",
                "--node",
                "$(NODE_NAME)"
            ]
        );
        let admin = e.vip.as_ref().unwrap().admin;
        assert_eq!(at(c, "ports.0.containerPort"), admin.port(), "{name}");
        assert_eq!(at(c, "ports.0.name"), "admin", "{name}");
        assert_eq!(at(c, "livenessProbe.httpGet.path"), "/livez", "{name}");
        assert!(at(c, "resources.requests.cpu").is_string(), "{name}");
        assert!(at(c, "resources.requests.memory").is_string(), "{name}");
        assert!(
            at(c, "resources.limits").is_null(),
            "{name}: a limit could kill the VIP holder"
        );
        let mounts = c["volumeMounts"].as_array().unwrap();
        assert!(mounts.iter().all(|m| m["readOnly"] == true), "{name}");
        let etcd = e.etcd.as_ref().unwrap();
        for f in [&etcd.ca_file, &etcd.cert_file, &etcd.key_file] {
            let f = f.as_ref().unwrap().to_str().unwrap();
            assert!(
                mounts.iter().any(|m| m["mountPath"] == f),
                "{name}: {f} not mounted"
            );
            let vols = at(pod, "spec.volumes").as_array().unwrap();
            assert!(
                vols.iter().any(|v| at(v, "hostPath.path") == f),
                "{name}: {f}"
            );
        }
    }
    assert!(vip_examples >= 2);
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

#[test]
fn the_inline_static_pod_carries_the_definition_and_mounts_only_the_etcd_certificates() {
    let o = Options {
        inline: true,
        ..Options::default()
    };
    let mut checked = 0;
    for (name, e) in common::examples() {
        if e.mode != Mode::VirtualIp {
            continue;
        }
        let pod = &yaml_docs(&render(&e, Kind::StaticPod, &o).unwrap())[0];
        let c = at(pod, "spec.containers.0");
        assert_eq!(
            strings(&c["args"]),
            ["vip", "--node", "$(NODE_NAME)"],
            "{name}"
        );
        let env = c["env"].as_array().unwrap();
        let def = env
            .iter()
            .find(|v| v["name"] == cpe_render::DEFINITION_ENV)
            .unwrap_or_else(|| panic!("{name}: no {}", cpe_render::DEFINITION_ENV));
        let text = def["value"].as_str().unwrap();
        assert_eq!(cpe_config::load_str(text).unwrap().endpoint, e, "{name}");
        let etcd = e.etcd.as_ref().unwrap();
        let want: Vec<&str> = [&etcd.ca_file, &etcd.cert_file, &etcd.key_file]
            .into_iter()
            .map(|f| f.as_ref().unwrap().to_str().unwrap())
            .collect();
        let mounted: Vec<&str> = c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["mountPath"].as_str().unwrap())
            .collect();
        assert_eq!(
            mounted, want,
            "{name}: the host needs only the etcd certificates"
        );
        // Cluster API: no definition file beside the pod either.
        let capi = yaml_docs(&render(&e, Kind::Capi, &o).unwrap());
        let files = at(&capi[1], "spec.kubeadmConfigSpec.files")
            .as_array()
            .unwrap();
        assert_eq!(files.len(), 1, "{name}");
        checked += 1;
    }
    assert!(checked >= 2);
}

#[test]
fn the_image_is_the_one_the_release_tags() {
    let v = env!("CARGO_PKG_VERSION");
    assert_eq!(cpe_render::image(""), format!("cpe:{v}"));
    assert_eq!(
        cpe_render::image("registry.example:5000/"),
        format!("registry.example:5000/cpe:{v}")
    );
    assert_eq!(
        cpe_render::image(cpe_render::DEFAULT_REGISTRY),
        cpe_render::DEFAULT_IMAGE
    );
}

#[test]
fn systemd_runs_lb_or_vip_with_the_right_capabilities() {
    for (name, e) in common::examples() {
        let out = render(&e, Kind::Systemd, &Options::default());
        let unit = match e.mode {
            Mode::SingleNode => {
                assert!(out.unwrap_err().to_string().contains("nothing else runs"));
                continue;
            }
            _ => out.unwrap(),
        };
        assert!(unit.contains("\nRestart=always\n"), "{name}");
        assert!(unit.contains("\nKillSignal=SIGTERM\n"), "{name}");
        if e.mode == Mode::VirtualIp {
            assert!(unit.contains(
                "\nExecStart=/usr/local/bin/cpe vip -f /etc/cpe/endpoint.yaml --node %H\n"
            ));
            assert!(unit.contains("\nAmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW\n"));
        } else {
            assert!(unit.contains("\nExecStart=/usr/local/bin/cpe lb -f /etc/cpe/endpoint.yaml\n"));
            assert!(!unit.contains("CAP_NET_ADMIN"), "{name}");
        }
        // systemd unit syntax: sections, then `Key=Value` or comments.
        for line in unit.lines() {
            assert!(
                line.is_empty()
                    || line.starts_with('#')
                    || (line.starts_with('[') && line.ends_with(']'))
                    || line
                        .split_once('=')
                        .is_some_and(|(k, _)| !k.is_empty() && !k.contains(' ')),
                "{name}: bad unit line {line:?}"
            );
        }
    }
}

#[test]
fn kubectl_accepts_the_static_pod_and_reads_what_was_written() {
    let server = discovery_server();
    let mut checked = 0;
    for (name, e) in common::examples() {
        if e.mode != Mode::VirtualIp {
            continue;
        }
        let inline = Options {
            inline: true,
            ..Options::default()
        };
        let mut sources = vec![
            render(&e, Kind::StaticPod, &Options::default()).unwrap(),
            render(&e, Kind::StaticPod, &inline).unwrap(),
        ];
        // The copy inside the KubeadmControlPlane's files too.
        let capi = yaml_docs(&render(&e, Kind::Capi, &Options::default()).unwrap());
        sources.push(
            at(&capi[1], "spec.kubeadmConfigSpec.files.0.content")
                .as_str()
                .unwrap()
                .to_string(),
        );
        for yaml in sources {
            let got = kubectl_dry_run(&server, &yaml);
            let want = &yaml_docs(&yaml)[0];
            assert_eq!(got["kind"], "Pod", "{name}");
            assert_eq!(
                got["spec"], want["spec"],
                "{name}: kubectl read another spec"
            );
            assert_eq!(got["metadata"]["namespace"], "kube-system");
            checked += 1;
        }
    }
    assert!(checked >= 6, "{checked}");
}

#[test]
fn capi_names_no_placeholder_kind_and_writes_v1beta2_as_cluster_api_1_11_reads_it() {
    for (name, e) in common::examples() {
        // Without the flags: no infrastructureRef at all, a comment says what to fill in.
        let text = render(&e, Kind::Capi, &Options::default()).unwrap();
        assert!(!text.contains("kind: MachineTemplate"), "{name}");
        assert!(
            text.contains("# FILL IN machineTemplate.infrastructureRef")
                && text.contains(
                    "--infrastructure-kind KIND --infrastructure-api-version GROUP/VERSION"
                ),
            "{name}"
        );
        let kcp = &yaml_docs(&text)[1];
        assert!(at(kcp, "spec.machineTemplate").is_null(), "{name}");
        assert_eq!(at(kcp, "spec.rolloutStrategy.rollingUpdate.maxSurge"), 1);

        let infra = cpe_render::InfrastructureRef::new(
            "DockerMachineTemplate",
            "infrastructure.cluster.x-k8s.io/v1beta1",
        )
        .unwrap();
        let v1 = yaml_docs(
            &render(
                &e,
                Kind::Capi,
                &Options {
                    infrastructure: Some(infra.clone()),
                    ..Options::default()
                },
            )
            .unwrap(),
        );
        let r = at(&v1[1], "spec.machineTemplate.infrastructureRef");
        assert_eq!(r["apiVersion"], "infrastructure.cluster.x-k8s.io/v1beta1");
        assert_eq!(r["kind"], "DockerMachineTemplate");
        assert_eq!(v1[0]["apiVersion"], "cluster.x-k8s.io/v1beta1");

        let v2 = yaml_docs(
            &render(
                &e,
                Kind::Capi,
                &Options {
                    infrastructure: Some(infra),
                    capi_version: cpe_render::CapiVersion::V1beta2,
                    ..Options::default()
                },
            )
            .unwrap(),
        );
        let (cluster, kcp) = (&v2[0], &v2[1]);
        assert_eq!(cluster["apiVersion"], "cluster.x-k8s.io/v1beta2");
        assert_eq!(kcp["apiVersion"], "controlplane.cluster.x-k8s.io/v1beta2");
        // v1beta2 references: apiGroup, kind, name; no apiVersion.
        let cp = at(cluster, "spec.controlPlaneRef");
        assert_eq!(cp["apiGroup"], "controlplane.cluster.x-k8s.io", "{name}");
        assert_eq!(cp["kind"], "KubeadmControlPlane");
        assert!(cp["apiVersion"].is_null());
        let r = at(kcp, "spec.machineTemplate.spec.infrastructureRef");
        assert_eq!(r["apiGroup"], "infrastructure.cluster.x-k8s.io", "{name}");
        assert_eq!(r["kind"], "DockerMachineTemplate");
        assert!(r["apiVersion"].is_null());
        assert!(at(kcp, "spec.machineTemplate.infrastructureRef").is_null());
        assert_eq!(at(kcp, "spec.rollout.strategy.type"), "RollingUpdate");
        assert_eq!(at(kcp, "spec.rollout.strategy.rollingUpdate.maxSurge"), 1);
        assert!(at(kcp, "spec.rolloutStrategy").is_null());
        assert_eq!(at(kcp, "spec.replicas"), e.replicas);
    }
}

#[test]
fn kubeadm_warns_that_a_single_node_ip_endpoint_cannot_become_ha() {
    for (name, e) in common::examples() {
        let w = cpe_render::warnings(&e, Kind::Kubeadm);
        let text = render(&e, Kind::Kubeadm, &Options::default()).unwrap();
        let ip_single = e.mode == Mode::SingleNode && matches!(e.host, cpe_config::Host::Ip(_));
        assert_eq!(w.len(), usize::from(ip_single), "{name}: {w:?}");
        if ip_single {
            assert!(
                w[0].contains(
                    "cannot turn a single control-plane node into a highly available control plane"
                ),
                "{w:?}"
            );
            assert!(w[0].contains("use a DNS name"), "{w:?}");
            assert!(
                text.contains("# WARNING: the endpoint is the IP address"),
                "{text}"
            );
        } else {
            assert!(!text.contains("WARNING"), "{name}");
        }
        assert!(cpe_render::warnings(&e, Kind::Capi).is_empty());
    }
}

/// Issue 13, item 3: with `virtualIP.metrics` the static pod declares the metrics port
/// beside the admin port (what a PodMonitor or a scrape config names), and the written
/// definition keeps the field.
#[test]
fn the_static_pod_declares_the_metrics_port_when_there_is_one() {
    let (name, mut e) = common::examples()
        .into_iter()
        .find(|(_, e)| e.mode == Mode::VirtualIp)
        .expect("a virtual-ip example");
    e.vip.as_mut().unwrap().metrics = Some("0.0.0.0:9632".parse().unwrap());
    let pod = &yaml_docs(&render(&e, Kind::StaticPod, &Options::default()).unwrap())[0];
    let ports = at(pod, "spec.containers.0.ports");
    assert_eq!(at(ports, "1.name"), "metrics", "{name}: {ports}");
    assert_eq!(at(ports, "1.containerPort"), 9632, "{name}: {ports}");
    assert_eq!(at(ports, "0.name"), "admin", "{name}: {ports}");
    let written = cpe_render::definition(&e);
    assert!(
        written.contains("  metrics: \"0.0.0.0:9632\"\n"),
        "{written}"
    );
    let back = cpe_config::load_str(&written).unwrap().endpoint;
    assert_eq!(back.vip.unwrap().metrics, e.vip.unwrap().metrics);
}

/// The load-balancing VIP's static pod: the inline definition keeps `loadBalance`,
/// `lbPort` and `loadBalancer.discovery` (read back to the same endpoint), the kubeconfig
/// of a `kubernetes` source is mounted read-only and the discovery cache directory
/// writable (`DirectoryOrCreate`), so the last good set survives a restart.
#[test]
fn the_load_balancing_vips_static_pod_keeps_discovery_and_its_cache() {
    let text = "cluster: prod\nendpoint:\n  host: 10.0.0.10\ncontrolPlane:\n  replicas: 3\nvirtualIP:\n  interface: eth0\n  loadBalance: true\n  lbPort: 7444\nloadBalancer:\n  discovery:\n    sources: [kubernetes]\n    kubeconfig: /etc/cpe/vip.kubeconfig\n    cacheDir: /var/lib/cpe-vip\n";
    let e = cpe_config::load_str(text).unwrap().endpoint;
    for inline in [true, false] {
        let o = Options {
            inline,
            ..Options::default()
        };
        let pod = &yaml_docs(&render(&e, Kind::StaticPod, &o).unwrap())[0];
        let c = at(pod, "spec.containers.0");
        if inline {
            let def = c["env"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["name"] == cpe_render::DEFINITION_ENV)
                .unwrap();
            let back = cpe_config::load_str(def["value"].as_str().unwrap()).unwrap();
            assert_eq!(back.endpoint, e);
        }
        let mounts = c["volumeMounts"].as_array().unwrap();
        let mount = |path: &str| {
            mounts
                .iter()
                .find(|m| m["mountPath"] == path)
                .unwrap_or_else(|| panic!("{path} not mounted: {mounts:?}"))
        };
        assert_eq!(mount("/etc/cpe/vip.kubeconfig")["readOnly"], true);
        assert!(mount("/var/lib/cpe-vip")["readOnly"].is_null());
        let vols = at(pod, "spec.volumes").as_array().unwrap();
        let cache = vols
            .iter()
            .find(|v| v["hostPath"]["path"] == "/var/lib/cpe-vip")
            .unwrap();
        assert_eq!(cache["hostPath"]["type"], "DirectoryOrCreate");
    }
}
