//! A definition from Konvoy-style flags instead of a file: `--control-plane-endpoint-host`,
//! `--control-plane-endpoint-port`, `--control-plane-replicas`, `--virtual-ip-interface`,
//! plus `--machine NAME=ADDRESS` (repeatable) and `--cluster`.
//!
//! The flags are turned into the same [`crate::input::File`] a file gives, so exactly the
//! same rules apply; problems then name the flag instead of the field path. It does not
//! parse the command line (that is clap's job in the CLI).

use crate::input::{self, S};
use crate::model::{DEFAULT_PORT, DEFAULT_REPLICAS};
use crate::problem::Problem;
use crate::validate::{self, Checked};

/// The flags as typed. Numbers are `i64` so that `--control-plane-endpoint-port 70000` is
/// reported by the port rule, like `port: 70000` in a file.
#[derive(Clone, Debug, PartialEq)]
pub struct KonvoyFlags {
    pub cluster: Option<String>,
    pub host: Option<String>,
    pub port: i64,
    pub replicas: i64,
    /// Non-empty means built-in virtual IP mode (an empty string does not).
    pub interface: Option<String>,
    /// `NAME=ADDRESS`, e.g. `cp1=10.0.0.11/24`.
    pub machines: Vec<String>,
}

impl Default for KonvoyFlags {
    fn default() -> Self {
        KonvoyFlags {
            cluster: None,
            host: None,
            port: DEFAULT_PORT.into(),
            replicas: DEFAULT_REPLICAS.into(),
            interface: None,
            machines: Vec::new(),
        }
    }
}

/// The flag each field comes from.
pub fn flag_of(field: &str) -> Option<&'static str> {
    Some(match field {
        "cluster" => "--cluster",
        "endpoint.host" => "--control-plane-endpoint-host",
        "endpoint.port" => "--control-plane-endpoint-port",
        "controlPlane.replicas" => "--control-plane-replicas",
        "virtualIP.interface" => "--virtual-ip-interface",
        f if f.starts_with("controlPlane.machines") => "--machine",
        _ => return None,
    })
}

impl KonvoyFlags {
    /// The definition these flags describe, and the problems of the `--machine` values
    /// that are not `NAME=ADDRESS`.
    pub fn to_file(&self) -> (input::File, Vec<Problem>) {
        let mut problems = Vec::new();
        let mut machines = Vec::new();
        for m in &self.machines {
            match m.split_once('=') {
                Some((name, address)) => machines.push(input::MachineIn {
                    pos: None,
                    name: Some(S::new(name.to_string())),
                    address: Some(S::new(address.to_string())),
                    api_server_port: None,
                }),
                None => problems.push(
                    Problem::error("--machine", m, "must be NAME=ADDRESS")
                        .hint("e.g. --machine cp1=10.0.0.11/24, once per control-plane machine"),
                ),
            }
        }
        let file = input::File {
            cluster: self.cluster.clone().map(S::new),
            endpoint: Some(input::EndpointIn {
                pos: None,
                host: self.host.clone().map(S::new),
                port: Some(S::new(self.port)),
            }),
            control_plane: Some(input::ControlPlaneIn {
                pos: None,
                replicas: Some(S::new(self.replicas)),
                machines_listed: machines.len(),
                etcd: None,
                // No `--machine`: no list (virtual-ip mode needs none; the other modes
                // say the list is short, as before).
                machines: (!machines.is_empty()).then(|| S {
                    raw: String::new(),
                    pos: None,
                    value: machines,
                }),
            }),
            virtual_ip: self.interface.clone().filter(|i| !i.is_empty()).map(|i| {
                input::VirtualIpIn {
                    interface: Some(S::new(i)),
                    interface_written: true,
                    ..Default::default()
                }
            }),
            ..Default::default()
        };
        (file, problems)
    }

    /// Checks the definition these flags describe; problems name the flags.
    pub fn check(&self) -> Checked {
        let (file, mut bad) = self.to_file();
        let mut checked = validate::check(&file);
        for p in &mut checked.problems {
            if let Some(flag) = flag_of(&p.field) {
                if p.field.starts_with("controlPlane.machines[") {
                    // `controlPlane.machines[1].address` -> `--machine (2nd)`: say which.
                    let idx = p.field["controlPlane.machines[".len()..]
                        .split(']')
                        .next()
                        .and_then(|i| i.parse::<usize>().ok());
                    if let Some(i) = idx {
                        // Index among the well-formed `--machine` values, as `to_file` built them.
                        let typed = self.machines.iter().filter(|m| m.contains('=')).nth(i);
                        if let Some(m) = typed {
                            p.rule = format!("(in --machine {m}) {}", p.rule);
                        }
                    }
                }
                p.field = flag.to_string();
            }
            p.rule = p
                .rule
                .replace("controlPlane.replicas", "--control-plane-replicas");
        }
        if !bad.is_empty() {
            checked.endpoint = None;
            bad.append(&mut checked.problems);
            checked.problems = bad;
        }
        checked
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Mode;

    fn flags(host: &str, replicas: i64, machines: &[&str]) -> KonvoyFlags {
        KonvoyFlags {
            host: Some(host.into()),
            replicas,
            machines: machines.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn flags_build_the_same_definition_as_a_file() {
        let c = flags(
            "lb.example.com",
            3,
            &["cp1=10.0.0.11", "cp2=10.0.0.12", "cp3=10.0.0.13"],
        )
        .check();
        let e = c.endpoint.expect("valid");
        assert_eq!(e.mode, Mode::ExternalLb);
        assert_eq!(e.port, 6443);
        assert_eq!(e.machines.len(), 3);
    }

    #[test]
    fn an_interface_selects_virtual_ip_and_an_empty_one_does_not() {
        let mut f = flags(
            "10.0.0.10",
            3,
            &["cp1=10.0.0.11/24", "cp2=10.0.0.12/24", "cp3=10.0.0.13/24"],
        );
        f.interface = Some("eth0".into());
        assert_eq!(f.check().endpoint.unwrap().mode, Mode::VirtualIp);
        f.interface = Some(String::new());
        assert_eq!(f.check().endpoint.unwrap().mode, Mode::ExternalLb);
    }

    #[test]
    fn machine_problems_quote_the_flag_they_came_from() {
        let f = flags("lb.example.com", 1, &["oops", "CP1=10.0.0.11"]);
        let got: Vec<String> = f.check().problems.iter().map(|p| p.render(None)).collect();
        assert!(
            got.contains(&"error: --machine = CP1: (in --machine CP1=10.0.0.11) must be a lowercase RFC 1123 name (a-z, 0-9, '-', '.')\n  hint: the machine's node name, e.g. cp1".to_string()),
            "{got:#?}"
        );
    }

    #[test]
    fn problems_name_the_flags() {
        let mut f = flags("lb_example", 4, &["cp1=10.0.0.11", "cp2"]);
        f.port = 0;
        let got: Vec<String> = f.check().problems.iter().map(|p| p.render(None)).collect();
        assert_eq!(
            got,
            vec![
                "error: --machine = cp2: must be NAME=ADDRESS\n  hint: e.g. --machine cp1=10.0.0.11/24, once per control-plane machine",
                "error: --control-plane-endpoint-host = lb_example: must be an IP address or an RFC 1123 DNS name\n  hint: a DNS name has labels of a-z, 0-9 and '-' separated by dots, e.g. lb.example.com",
                "error: --control-plane-endpoint-port = 0: must be between 1 and 65535",
                "error: --control-plane-replicas = 4: cannot be an even number when etcd is stacked\n  hint: 4 machines tolerate 1 failure like 3: use 3 or 5",
                "error: --machine = 1: lists 1 machine, fewer than the 4 replicas\n  hint: list every control-plane machine with its name and address; machines beyond the replicas are spares",
            ]
        );
    }
}
