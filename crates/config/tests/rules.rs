//! Table tests: every rule of the definition, its boundary values, and the exact message
//! (`file:line:column: severity: field = value: rule` plus the hint) it produces.
//!
//! Each case edits one of three valid base definitions (external LB, virtual IP, single
//! node); an edit whose text is not found fails the test, so no case silently tests the
//! unedited base.

use cpe_config::{check_str, Mode};

const EXT3: &str = "\
cluster: prod
endpoint:
  host: lb.example.com
  port: 6443
controlPlane:
  replicas: 3
  machines:
    - name: cp1
      address: 10.0.0.11
    - name: cp2
      address: 10.0.0.12
    - name: cp3
      address: 10.0.0.13
";

const VIP3: &str = "\
cluster: prod
endpoint:
  host: 10.0.0.10
  port: 6443
controlPlane:
  replicas: 3
  machines:
    - name: cp1
      address: 10.0.0.11/24
    - name: cp2
      address: 10.0.0.12/24
    - name: cp3
      address: 10.0.0.13/24
virtualIP:
  interface: eth0
";

const ONE: &str = "\
endpoint:
  host: 10.0.0.11
controlPlane:
  replicas: 1
  machines:
    - name: cp1
      address: 10.0.0.11
";

fn edit(base: &str, edits: &[(&str, &str)]) -> String {
    let mut s = base.to_string();
    for (from, to) in edits {
        assert!(s.contains(from), "edit `{from}` not found in\n{s}");
        s = s.replacen(from, to, 1);
    }
    s
}

fn problems(yaml: &str) -> Vec<String> {
    check_str(yaml)
        .problems
        .iter()
        .map(|p| p.render(Some("f")))
        .collect()
}

/// (case name, definition, every problem it must produce, exactly)
fn cases() -> Vec<(&'static str, String, Vec<&'static str>)> {
    vec![
        // --- valid bases and boundaries that pass
        ("external lb, 3", EXT3.into(), vec![]),
        ("virtual ip, 3", VIP3.into(), vec![]),
        ("port 1", edit(EXT3, &[("port: 6443", "port: 1")]), vec![]),
        ("port 65535", edit(EXT3, &[("port: 6443", "port: 65535")]), vec![]),
        ("port left out: 6443", edit(EXT3, &[("  port: 6443\n", "")]), vec![]),
        ("host with a trailing dot", edit(EXT3, &[("lb.example.com", "lb.example.com.")]), vec![]),
        ("host an IPv6 literal", edit(EXT3, &[("lb.example.com", "fd00::10")]), vec![]),
        ("host label of 63", edit(EXT3, &[("lb.example.com", &format!("{}.example.com", "a".repeat(63)))]), vec![]),
        ("interface of 15 characters", edit(VIP3, &[("eth0", "abcdefghijklmno")]), vec![]),
        ("vip without prefixes: preflight checks", edit(VIP3, &[("/24", ""), ("/24", ""), ("/24", "")]), vec![]),
        ("even replicas with external etcd", edit(EXT3, &[("replicas: 3", "replicas: 2\n  etcd: external")]), vec![]),
        ("spares", edit(EXT3, &[("    - name: cp3", &machines(4, 5))]), vec![]),
        ("external lb in front of one machine", edit(EXT3, &[("replicas: 3", "replicas: 1"), ("cluster: prod", "cluster: prod\nmode: external-lb")]), vec![
            "f:7:13: warning: controlPlane.replicas = 1: a single-node control plane is not for production\n  hint: it tolerates no failure: when the machine is down, so is the cluster",
            "f:7:13: warning: controlPlane.replicas = 1: a single-node control plane cannot be upgraded in place\n  hint: machines are replaced, not upgraded, and there is no second machine to take over; use 3 replicas to be able to upgrade",
        ]),
        ("rise 1 and fall 1000", format!("{EXT3}healthCheck:\n  rise: 1\n  fall: 1000\n"), vec![]),
        ("interval 10ms", format!("{EXT3}healthCheck:\n  interval: 10ms\n"), vec![]),
        ("lease ttl 2s", format!("{VIP3}  leaseTTL: 2s\n"), vec![]),
        // --- port
        ("port 0", edit(EXT3, &[("port: 6443", "port: 0")]), vec![
        "f:4:9: error: endpoint.port = 0: must be between 1 and 65535",
        ]),
        ("port 65536", edit(EXT3, &[("port: 6443", "port: 65536")]), vec![
        "f:4:9: error: endpoint.port = 65536: must be between 1 and 65535",
        ]),
        ("port 70000", edit(EXT3, &[("port: 6443", "port: 70000")]), vec![
        "f:4:9: error: endpoint.port = 70000: must be between 1 and 65535",
        ]),
        ("port -1", edit(EXT3, &[("port: 6443", "port: -1")]), vec![
        "f:4:9: error: endpoint.port = -1: must be between 1 and 65535",
        ]),
        ("port abc", edit(EXT3, &[("port: 6443", "port: abc")]), vec![
        "f:4:9: error: endpoint.port = abc: must be a whole number, not text",
        ]),
        ("port quoted", edit(EXT3, &[("port: 6443", "port: \"6443\"")]), vec![
        "f:4:9: error: endpoint.port = 6443: must be a whole number, not text\n  hint: write the number without quotes",
        ]),
        ("port decimal", edit(EXT3, &[("port: 6443", "port: 6443.5")]), vec![
        "f:4:9: error: endpoint.port = 6443.5: must be a whole number, not a decimal number",
        ]),
        ("api server port 0", edit(EXT3, &[("10.0.0.12\n", "10.0.0.12\n      apiServerPort: 0\n")]), vec![
        "f:12:22: error: controlPlane.machines[1].apiServerPort = 0: must be between 1 and 65535",
        ]),
        // --- replicas
        ("replicas missing", edit(EXT3, &[("  replicas: 3\n", "")]), vec![
        "f:5:1: warning: controlPlane.replicas: is not given: 3 is assumed (Konvoy's --control-plane-replicas default)\n  hint: write the number of control-plane machines: 3, 5 or 7 (1 for a test cluster)",
        ]),
        ("replicas 0", edit(EXT3, &[("replicas: 3", "replicas: 0")]), vec![
        "f:6:13: error: controlPlane.replicas = 0: must be greater than 0\n  hint: 3, 5 or 7 machines tolerate 1, 2 or 3 failures",
        ]),
        ("replicas -1", edit(EXT3, &[("replicas: 3", "replicas: -1")]), vec![
        "f:6:13: error: controlPlane.replicas = -1: must be greater than 0\n  hint: 3, 5 or 7 machines tolerate 1, 2 or 3 failures",
        ]),
        ("replicas 2", edit(EXT3, &[("replicas: 3", "replicas: 2")]), vec![
        "f:6:13: error: controlPlane.replicas = 2: cannot be an even number when etcd is stacked\n  hint: 2 machines tolerate 0 failures like 1: use 1 or 3",
        ]),
        ("replicas 4", edit(EXT3, &[("replicas: 3", "replicas: 4"), ("    - name: cp3", "    - name: cp4\n      address: 10.0.0.14\n    - name: cp3")]), vec![
        "f:6:13: error: controlPlane.replicas = 4: cannot be an even number when etcd is stacked\n  hint: 4 machines tolerate 1 failure like 3: use 3 or 5",
        ]),
        ("replicas 1001", edit(EXT3, &[("replicas: 3", "replicas: 1001")]), vec![
        "f:6:13: error: controlPlane.replicas = 1001: must be at most 1000",
        ]),
        ("replicas 1: single node", ONE.into(), vec![
        "f:4:13: warning: controlPlane.replicas = 1: a single-node control plane is not for production\n  hint: it tolerates no failure: when the machine is down, so is the cluster",
            "f:4:13: warning: controlPlane.replicas = 1: a single-node control plane cannot be upgraded in place\n  hint: machines are replaced, not upgraded, and there is no second machine to take over; use 3 replicas to be able to upgrade",
        ]),
        ("replicas 7: no warning", edit(EXT3, &[("replicas: 3", "replicas: 7"), ("    - name: cp3", &machines(4, 7)), ("    - name: cp3", "    - name: cp3")]), vec![]),
        ("replicas 9: warning", edit(EXT3, &[("replicas: 3", "replicas: 9"), ("    - name: cp3", &machines(4, 9))]), vec![
        "f:6:13: warning: controlPlane.replicas = 9: more than 7 etcd members make every write slower\n  hint: every write waits for a quorum; 7 machines already tolerate 3 failures",
        ]),
        // --- machines
        ("fewer machines than replicas", edit(EXT3, &[("    - name: cp3\n      address: 10.0.0.13\n", "")]), vec![
        "f:8:5: error: controlPlane.machines = 2: lists 2 machines, fewer than the 3 replicas\n  hint: list every control-plane machine with its name and address; machines beyond the replicas are spares",
        ]),
        ("machines empty", edit(EXT3, &[("  machines:\n    - name: cp1\n      address: 10.0.0.11\n    - name: cp2\n      address: 10.0.0.12\n    - name: cp3\n      address: 10.0.0.13\n", "  machines: []\n")]), vec![
        "f:7:13: error: controlPlane.machines = 0: lists 0 machines, fewer than the 3 replicas\n  hint: list every control-plane machine with its name and address; machines beyond the replicas are spares",
        ]),
        ("machines missing", edit(EXT3, &[("  machines:\n    - name: cp1\n      address: 10.0.0.11\n    - name: cp2\n      address: 10.0.0.12\n    - name: cp3\n      address: 10.0.0.13\n", "")]), vec![
        "f:6:13: error: controlPlane.machines = 0: lists 0 machines, fewer than the 3 replicas\n  hint: list every control-plane machine with its name and address; machines beyond the replicas are spares",
        ]),
        ("duplicate name", edit(EXT3, &[("name: cp3", "name: cp1")]), vec![
        "f:12:13: error: controlPlane.machines[2].name = cp1: is already the name of controlPlane.machines[0] on line 8\n  hint: every machine needs its own name",
        ]),
        ("duplicate address", edit(EXT3, &[("10.0.0.13", "10.0.0.11")]), vec![
        "f:13:16: error: controlPlane.machines[2].address = 10.0.0.11: is already the address of controlPlane.machines[0] (`cp1`) on line 9\n  hint: every machine needs its own address",
        ]),
        ("name missing", edit(EXT3, &[("    - name: cp2\n      address", "    - address")]), vec![
        "f:10:7: error: controlPlane.machines[1].name: is required",
        ]),
        ("address missing", edit(EXT3, &[("    - name: cp2\n      address: 10.0.0.12\n", "    - name: cp2\n")]), vec![
        "f:10:7: error: controlPlane.machines[1].address: is required",
        ]),
        ("name with capitals", edit(EXT3, &[("name: cp2", "name: CP_2")]), vec![
        "f:10:13: error: controlPlane.machines[1].name = CP_2: must be a lowercase RFC 1123 name (a-z, 0-9, '-', '.')\n  hint: the machine's node name, e.g. cp1",
        ]),
        ("address a dns name", edit(EXT3, &[("10.0.0.12", "cp2.example.com")]), vec![
        "f:11:16: error: controlPlane.machines[1].address = cp2.example.com: must be an IP address, optionally with a prefix length (10.0.0.11 or 10.0.0.11/24)\n  hint: a DNS name is not accepted here: cpe matches machines, backends and the virtual IP's subnet by address",
        ]),
        ("address prefix /33", edit(EXT3, &[("10.0.0.12", "10.0.0.12/33")]), vec![
        "f:11:16: error: controlPlane.machines[1].address = 10.0.0.12/33: has prefix length /33, which must be 0 to 32",
        ]),
        ("address the network address", edit(EXT3, &[("10.0.0.12", "10.0.0.0/24")]), vec![
        "f:11:16: error: controlPlane.machines[1].address = 10.0.0.0/24: is the network address of 10.0.0.0/24, not a machine's",
        ]),
        ("address 0.0.0.0", edit(EXT3, &[("10.0.0.12", "0.0.0.0")]), vec![
        "f:11:16: error: controlPlane.machines[1].address = 0.0.0.0: must be a unicast address",
        ]),
        ("machine unknown field", edit(EXT3, &[("10.0.0.12\n", "10.0.0.12\n      port: 6443\n")]), vec![
        "f:12:7: error: controlPlane.machines[1].port: is not a field of `controlPlane.machines[1]`\n  hint: known fields: name, address, apiServerPort",
        ]),
        ("machines not a list", edit(EXT3, &[("  machines:\n    - name: cp1\n      address: 10.0.0.11\n    - name: cp2\n      address: 10.0.0.12\n    - name: cp3\n      address: 10.0.0.13\n", "  machines: cp1\n")]), vec![
        "f:7:13: error: controlPlane.machines = cp1: must be a list, not text",
        ]),
        // --- host
        ("host missing", edit(EXT3, &[("  host: lb.example.com\n", "")]), vec![
        "f:2:1: error: endpoint.host: is required\n  hint: the load balancer's address or DNS name, the virtual IP, or the single machine's address",
        ]),
        ("host underscore", edit(EXT3, &[("lb.example.com", "lb_1.example.com")]), vec![
        "f:3:9: error: endpoint.host = lb_1.example.com: must be an IP address or an RFC 1123 DNS name\n  hint: a DNS name has labels of a-z, 0-9 and '-' separated by dots, e.g. lb.example.com",
        ]),
        ("host with a space", edit(EXT3, &[("lb.example.com", "\"lb example.com\"")]), vec![
        "f:3:9: error: endpoint.host = lb example.com: must be an IP address or an RFC 1123 DNS name\n  hint: a DNS name has labels of a-z, 0-9 and '-' separated by dots, e.g. lb.example.com",
        ]),
        ("host in brackets", edit(EXT3, &[("lb.example.com", "\"[fd00::10]\"")]), vec![
        "f:3:9: error: endpoint.host = [fd00::10]: must be an IP address or an RFC 1123 DNS name\n  hint: write an IPv6 address without brackets",
        ]),
        ("host with a port", edit(EXT3, &[("lb.example.com", "lb.example.com:6443")]), vec![
        "f:3:9: error: endpoint.host = lb.example.com:6443: must be an IP address or an RFC 1123 DNS name\n  hint: write the port in endpoint.port, not in the host",
        ]),
        ("host a url", edit(EXT3, &[("lb.example.com", "https://lb.example.com")]), vec![
        "f:3:9: error: endpoint.host = https://lb.example.com: must be an IP address or an RFC 1123 DNS name\n  hint: write only the host, without a scheme or path",
        ]),
        ("host label of 64", edit(EXT3, &[("lb.example.com", &format!("{}.example.com", "a".repeat(64)))]), vec![
        "f:3:9: error: endpoint.host = aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa…: must be an IP address or an RFC 1123 DNS name\n  hint: a DNS name has labels of a-z, 0-9 and '-' separated by dots, e.g. lb.example.com",
        ]),
        ("host 10.0.0.300", edit(EXT3, &[("lb.example.com", "10.0.0.300")]), vec![
        "f:3:9: error: endpoint.host = 10.0.0.300: must be an IP address or an RFC 1123 DNS name\n  hint: a DNS name has labels of a-z, 0-9 and '-' separated by dots, e.g. lb.example.com",
        ]),
        ("host 0.0.0.0", edit(EXT3, &[("lb.example.com", "0.0.0.0")]), vec![
        "f:3:9: error: endpoint.host = 0.0.0.0: must be a unicast address\n  hint: not 0.0.0.0, ::, a multicast or the broadcast address: clients connect to it",
        ]),
        // --- mode
        ("mode unknown", edit(EXT3, &[("cluster: prod", "cluster: prod\nmode: vip")]), vec![
        "f:2:7: error: mode = vip: must be one of external-lb, virtual-ip, single-node\n  hint: or leave it out: a virtualIP.interface means virtual-ip, 1 replica means single-node, anything else external-lb",
        ]),
        ("mode single-node with 3", edit(EXT3, &[("cluster: prod", "cluster: prod\nmode: single-node")]), vec![
        "f:2:7: error: mode = single-node: needs exactly 1 replica, not 3\n  hint: set controlPlane.replicas to 1, or use external-lb or virtual-ip",
        ]),
        ("mode external-lb with an interface", edit(VIP3, &[("cluster: prod", "cluster: prod\nmode: external-lb")]), vec![
        "f:16:14: error: virtualIP.interface = eth0: is only used in virtual-ip mode, but mode is external-lb\n  hint: remove `mode` to let the interface select virtual-ip mode, or remove the interface",
        ]),
        ("mode virtual-ip without interface", edit(VIP3, &[("cluster: prod", "cluster: prod\nmode: virtual-ip"), ("  interface: eth0\n", "  leaseTTL: 2s\n")]), vec![
        "f:15:1: error: virtualIP.interface: is required in virtual-ip mode\n  hint: the interface that carries the machines' addresses, e.g. eth0 (`ip -br addr`)",
        ]),
        ("virtualIP ignored in external-lb", format!("{EXT3}virtualIP:\n  leaseTTL: 3s\n"), vec![
        "f:14:1: warning: virtualIP: is ignored in external-lb mode\n  hint: a virtualIP.interface selects virtual-ip mode",
        ]),
        ("loadBalancer ignored in virtual-ip", format!("{VIP3}loadBalancer:\n  listen: 0.0.0.0:6443\n"), vec![
        "f:16:1: warning: loadBalancer: is ignored in virtual-ip mode",
        ]),
        // --- virtual IP
        ("vip a dns name", edit(VIP3, &[("host: 10.0.0.10", "host: vip.example.com")]), vec![
        "f:3:9: error: endpoint.host = vip.example.com: must be an IP address (the virtual IP) in virtual-ip mode, not a DNS name\n  hint: a free address in the control-plane machines' subnet, e.g. 10.0.0.10",
        ]),
        ("vip is a machine's address", edit(VIP3, &[("host: 10.0.0.10", "host: 10.0.0.12")]), vec![
        "f:3:9: error: endpoint.host = 10.0.0.12: is the address of machine `cp2`: the virtual IP must be a free address\n  hint: pick an unused address in the machines' subnet; the VIP moves between machines, a machine's own address cannot",
        ]),
        ("vip outside one machine's subnet", edit(VIP3, &[("10.0.0.13/24", "10.0.1.13/24")]), vec![
        "f:3:9: error: endpoint.host = 10.0.0.10: is outside the subnet 10.0.1.0/24 of machine `cp3` (10.0.1.13/24)\n  hint: the virtual IP must be a free address in the layer-2 network of every control-plane machine",
        ]),
        ("vip the broadcast address", edit(VIP3, &[("host: 10.0.0.10", "host: 10.0.0.255")]), vec![
        "f:3:9: error: endpoint.host = 10.0.0.255: is the broadcast address of the subnet 10.0.0.0/24 of machines `cp1` (10.0.0.11/24), `cp2` (10.0.0.12/24), `cp3` (10.0.0.13/24)\n  hint: pick a free host address in the subnet",
        ]),
        ("vip ipv6, machines ipv4", edit(VIP3, &[("host: 10.0.0.10", "host: fd00::10")]), vec![
        "f:3:9: error: endpoint.host = fd00::10: is an IPv6 address, but machines `cp1` (10.0.0.11/24), `cp2` (10.0.0.12/24), `cp3` (10.0.0.13/24) have IPv4 addresses\n  hint: the virtual IP lives in the machines' own network: use the same address family",
        ]),
        ("interface of 16 characters", edit(VIP3, &[("eth0", "abcdefghijklmnop")]), vec![
        "f:15:14: error: virtualIP.interface = abcdefghijklmnop: must be an interface name: 1 to 15 characters, no '/', ':' or whitespace\n  hint: the interface that carries the machines' addresses, e.g. eth0 (`ip -br addr`)",
        ]),
        ("interface with a slash", edit(VIP3, &[("eth0", "eth/0")]), vec![
        "f:15:14: error: virtualIP.interface = eth/0: must be an interface name: 1 to 15 characters, no '/', ':' or whitespace\n  hint: the interface that carries the machines' addresses, e.g. eth0 (`ip -br addr`)",
        ]),
        ("interface true", edit(VIP3, &[("eth0", "true")]), vec![
        "f:15:14: error: virtualIP.interface = true: must be text, not true/false\n  hint: quote it: \"true\"",
        ]),
        ("vip api server port differs", edit(VIP3, &[("10.0.0.12/24\n", "10.0.0.12/24\n      apiServerPort: 6444\n")]), vec![
        "f:12:22: error: controlPlane.machines[1].apiServerPort = 6444: must equal the endpoint port 6443 in virtual-ip mode\n  hint: the endpoint port is also the API server port on each machine; only an external load balancer may listen on another port",
        ]),
        ("lease ttl 1500ms", format!("{VIP3}  leaseTTL: 1500ms\n"), vec![
        "f:16:13: error: virtualIP.leaseTTL = 1500ms: must be a whole number of seconds, at least 2s\n  hint: etcd lease TTLs are whole seconds and etcd grants no less than about 2s; the default is 2s",
        ]),
        ("lease ttl 1s", format!("{VIP3}  leaseTTL: 1s\n"), vec![
        "f:16:13: error: virtualIP.leaseTTL = 1s: must be a whole number of seconds, at least 2s\n  hint: etcd lease TTLs are whole seconds and etcd grants no less than about 2s; the default is 2s",
        ]),
        ("lease ttl 0s", format!("{VIP3}  leaseTTL: 0s\n"), vec![
        "f:16:13: error: virtualIP.leaseTTL = 0s: must be a whole number of seconds, at least 2s\n  hint: etcd lease TTLs are whole seconds and etcd grants no less than about 2s; the default is 2s",
        ]),
        ("vip prefix length 33", format!("{VIP3}  prefixLength: 33\n"), vec![
        "f:16:17: error: virtualIP.prefixLength = 33: must be 0 to 32 for an IPv4 virtual IP",
        ]),
        ("election without a slash", format!("{VIP3}  election: cpe\n"), vec![
        "f:16:13: error: virtualIP.election = cpe: must be an etcd key prefix starting with / and without spaces",
        ]),
        ("vip admin not an address", format!("{VIP3}  admin: localhost\n"), vec![
        "f:16:10: error: virtualIP.admin = localhost: must be an IP address and port, e.g. 127.0.0.1:9630 or [::1]:9630",
        ]),
        // --- single node
        ("single node host not the machine", edit(ONE, &[("host: 10.0.0.11", "host: 10.0.0.99")]), vec![
        "f:2:9: error: endpoint.host = 10.0.0.99: must be the address of machine `cp1` (10.0.0.11) in single-node mode\n  hint: a single-node control plane is its own endpoint: no load balancer, no virtual IP",
        "f:4:13: warning: controlPlane.replicas = 1: a single-node control plane is not for production\n  hint: it tolerates no failure: when the machine is down, so is the cluster",
            "f:4:13: warning: controlPlane.replicas = 1: a single-node control plane cannot be upgraded in place\n  hint: machines are replaced, not upgraded, and there is no second machine to take over; use 3 replicas to be able to upgrade",
        ]),
        ("single node api server port differs", format!("{ONE}      apiServerPort: 6444\n"), vec![
        "f:4:13: warning: controlPlane.replicas = 1: a single-node control plane is not for production\n  hint: it tolerates no failure: when the machine is down, so is the cluster",
            "f:4:13: warning: controlPlane.replicas = 1: a single-node control plane cannot be upgraded in place\n  hint: machines are replaced, not upgraded, and there is no second machine to take over; use 3 replicas to be able to upgrade",
        "f:8:22: error: controlPlane.machines[0].apiServerPort = 6444: must equal the endpoint port 6443 in single-node mode\n  hint: the endpoint port is also the API server port on each machine; only an external load balancer may listen on another port",
        ]),
        // --- health check
        ("health protocol", format!("{EXT3}healthCheck:\n  protocol: grpc\n"), vec![
        "f:15:13: error: healthCheck.protocol = grpc: must be https, http or tcp",
        ]),
        ("health path", format!("{EXT3}healthCheck:\n  path: readyz\n"), vec![
        "f:15:9: error: healthCheck.path = readyz: must start with / and contain no spaces\n  hint: e.g. /readyz (the API server's readiness)",
        ]),
        ("health interval 9ms", format!("{EXT3}healthCheck:\n  interval: 9ms\n"), vec![
        "f:15:13: error: healthCheck.interval = 9ms: must be at least 10ms",
        ]),
        ("health interval without unit", format!("{EXT3}healthCheck:\n  interval: 250\n"), vec![
        "f:15:13: error: healthCheck.interval = 250: `250` has no unit: write e.g. `250ms`, `2s` or `1m`",
        ]),
        ("health timeout 0s", format!("{EXT3}healthCheck:\n  timeout: 0s\n"), vec![
        "f:15:12: error: healthCheck.timeout = 0s: must be longer than zero",
        ]),
        ("health rise 0", format!("{EXT3}healthCheck:\n  rise: 0\n"), vec![
        "f:15:9: error: healthCheck.rise = 0: must be between 1 and 1000",
        ]),
        ("health fall 1001", format!("{EXT3}healthCheck:\n  fall: 1001\n"), vec![
        "f:15:9: error: healthCheck.fall = 1001: must be between 1 and 1000",
        ]),
        ("health cert without key", format!("{EXT3}healthCheck:\n  certFile: /etc/cpe/c.crt\n"), vec![
        "f:15:13: error: healthCheck.certFile = /etc/cpe/c.crt: needs healthCheck.keyFile too\n  hint: a client certificate is used with its private key",
        ]),
        ("health unauthorized", format!("{EXT3}healthCheck:\n  unauthorized: maybe\n"), vec![
        "f:15:17: error: healthCheck.unauthorized = maybe: must be `alive` or `down`",
        ]),
        ("health typo", format!("{EXT3}healthCheck:\n  intervall: 1s\n"), vec![
        "f:15:3: error: healthCheck.intervall: is not a field of `healthCheck`\n  hint: did you mean `interval`? Known fields: protocol, path, interval, timeout, rise, fall, caFile, certFile, keyFile, unauthorized",
        ]),
        // --- etcd
        ("etcd endpoints empty", format!("{VIP3}etcd:\n  endpoints: []\n"), vec![
        "f:17:14: error: etcd.endpoints: must list at least one etcd endpoint\n  hint: or leave it out: in virtual-ip mode every machine's https://ADDRESS:2379 is used",
        ]),
        ("etcd endpoint without scheme", format!("{VIP3}etcd:\n  endpoints: [10.0.0.11:2379]\n"), vec![
        "f:17:15: error: etcd.endpoints[0] = 10.0.0.11:2379: must be an http:// or https:// URL with a host and a port\n  hint: e.g. https://10.0.0.11:2379",
        ]),
        ("etcd key without cert", format!("{VIP3}etcd:\n  keyFile: /k.key\n"), vec![
        "f:17:12: error: etcd.keyFile = /k.key: needs etcd.certFile too\n  hint: a client certificate is used with its private key",
        ]),
        // --- load balancer
        ("lb listen not an address", format!("{EXT3}loadBalancer:\n  listen: \":6443\"\n"), vec![
        "f:15:11: error: loadBalancer.listen = :6443: must be an IP address and port, e.g. 127.0.0.1:9630 or [::1]:9630",
        ]),
        ("lb listen on another port", format!("{EXT3}loadBalancer:\n  listen: 0.0.0.0:7443\n"), vec![
        "f:15:11: warning: loadBalancer.listen = 0.0.0.0:7443: listens on port 7443, but clients use the endpoint port 6443\n  hint: fine when something in between forwards the endpoint port; otherwise listen on the endpoint port",
        ]),
        ("lb admin equals listen", format!("{EXT3}loadBalancer:\n  listen: 0.0.0.0:6443\n  admin: 0.0.0.0:6443\n"), vec![
        "f:16:10: error: loadBalancer.admin = 0.0.0.0:6443: must differ from loadBalancer.listen",
        ]),
        // Issue 14: an admin listener off loopback is reachable by others; without a
        // token the agents refuse to start (a warning here, an error in their plan).
        ("lb admin not loopback, no token", format!("{EXT3}loadBalancer:\n  admin: 0.0.0.0:9630\n"), vec![
        "f:15:10: warning: loadBalancer.admin = 0.0.0.0:9630: is not a loopback address and loadBalancer.adminTokenFile is not set: the agent will refuse to start (anyone who reaches it could change state)\n  hint: set loadBalancer.adminTokenFile to a file holding a secret of 16+ characters, or listen on 127.0.0.1",
        ]),
        ("lb admin not loopback, with a token", format!("{EXT3}loadBalancer:\n  admin: 10.0.0.1:9630\n  adminTokenFile: /etc/cpe/admin-token\n"), vec![
        "f:15:10: warning: loadBalancer.admin = 10.0.0.1:9630: is not a loopback address: whoever reaches it reads /status and /metrics (actions need the token)\n  hint: keep it on 127.0.0.1 unless a scraper elsewhere needs it, and firewall the port",
        ]),
        ("lb admin token file empty", format!("{EXT3}loadBalancer:\n  adminTokenFile: ''\n"), vec![
        "f:15:19: error: loadBalancer.adminTokenFile: must be a file path",
        ]),
        ("vip admin not loopback, no token", format!("{VIP3}  admin: '[fd00::11]:9631'\n"), vec![
        "f:16:10: warning: virtualIP.admin = [fd00::11]:9631: is not a loopback address and virtualIP.adminTokenFile is not set: the agent will refuse to start (anyone who reaches it could change state)\n  hint: set virtualIP.adminTokenFile to a file holding a secret of 16+ characters, or listen on 127.0.0.1",
        ]),
        ("vip admin loopback with a token", format!("{VIP3}  admin: 127.0.0.1:9631\n  adminTokenFile: /etc/cpe/admin-token\n"), vec![]),
        // An integer past 64 bits is too large, not "a decimal number".
        ("lb max connections overflow", format!("{EXT3}loadBalancer:\n  maxConnections: 99999999999999999999999\n"), vec![
        "f:15:19: error: loadBalancer.maxConnections = 99999999999999999999999: is too large\n  hint: see the field's range in docs/definition.md",
        ]),
        // `fd00::10:6443` is a valid IPv6 address: accepted, with how to write a port.
        ("ipv6 host with a port", edit(EXT3, &[("host: lb.example.com", "host: fd00::10:6443")]), vec![
        "f:3:9: warning: endpoint.host = fd00::10:6443: is taken as the IPv6 address fd00::10:6443; if `6443` is meant as a port, it does not belong here\n  hint: write the host without a port (host: fd00::10) and the port in endpoint.port (port: 6443); URLs write it [fd00::10]:6443",
        ]),
        // Invisible characters are shown escaped, never raw.
        ("zero-width space in a name", edit(EXT3, &[("name: cp2", "name: cp\u{200b}2")]), vec![
        "f:10:13: error: controlPlane.machines[1].name = cp\\u{200b}2: must be a lowercase RFC 1123 name (a-z, 0-9, '-', '.')\n  hint: the machine's node name, e.g. cp1",
        ]),
        ("rtl override in the host", edit(EXT3, &[("host: lb.example.com", "host: lb\u{202e}moc.example")]), vec![
        "f:3:9: error: endpoint.host = lb\\u{202e}moc.example: must be an IP address or an RFC 1123 DNS name\n  hint: a DNS name has labels of a-z, 0-9 and '-' separated by dots, e.g. lb.example.com",
        ]),
        ("binary tag", edit(EXT3, &[("cluster: prod", "cluster: !!binary //79")]), vec![
        "f:1:19: error: (file): is not valid YAML: !!binary scalar is not valid UTF-8 so cannot be stored into string. Write the value as plain text, without !!binary\n  hint: see examples/ for annotated definitions of every mode",
        ]),
        ("loopback vip", edit(VIP3, &[("host: 10.0.0.10", "host: 127.0.0.10")]), vec![
        "f:3:9: error: endpoint.host = 127.0.0.10: must not be a loopback address: the virtual IP is on the machines' network\n  hint: a free address in the control-plane machines' subnet, not 127.0.0.10",
        ]),
        ("lb max connections 0", format!("{EXT3}loadBalancer:\n  maxConnections: 0\n"), vec![
        "f:15:19: error: loadBalancer.maxConnections = 0: must be between 1 and 10000000",
        ]),
        // --- cluster, shape
        ("cluster with capitals", edit(EXT3, &[("cluster: prod", "cluster: Prod")]), vec![
        "f:1:10: error: cluster = Prod: must be a lowercase RFC 1123 name of at most 63 characters (a-z, 0-9, '-', '.')\n  hint: it names the Cluster object and the election key, e.g. prod-eu1",
        ]),
        ("unknown top-level field", format!("{EXT3}replicas: 3\n"), vec![
        "f:14:1: error: replicas: is not a field of the definition\n  hint: known fields: cluster, mode, endpoint, controlPlane, healthCheck, virtualIP, etcd, loadBalancer, nodeLocal",
        ]),
        ("endpoint a string", edit(EXT3, &[("endpoint:\n  host: lb.example.com\n  port: 6443\n", "endpoint: lb.example.com\n")]), vec![
        "f:2:11: error: endpoint = lb.example.com: must be a mapping with host, port, not text\n  hint: write the fields indented on the lines below",
        ]),
        ("yaml syntax", edit(EXT3, &[("port: 6443", "port: [6443")]), vec![
        "f:5:13: error: (file): is not valid YAML: illegal placement of ':' indicator\n  hint: see examples/ for annotated definitions of every mode",
        ]),
        ("duplicate key", edit(EXT3, &[("port: 6443", "port: 6443\n  port: 6444")]), vec![
        "f:5:3: error: (file): is not valid YAML: duplicate mapping key: port\n  hint: see examples/ for annotated definitions of every mode",
        ]),
        ("two documents", format!("{EXT3}---\n{EXT3}"), vec![
        "f:15:1: error: (file): is not valid YAML: multiple YAML documents detected: a definition is one document\n  hint: see examples/ for annotated definitions of every mode",
        ]),
        ("empty file", String::new(), vec![
        "f: error: (file): is empty\n  hint: a definition needs at least endpoint.host and controlPlane; see examples/",
        ]),
        ("a list", "- a\n- b\n".into(), vec![
        "f:1:1: error: (file): must be a mapping of fields (cluster, mode, endpoint, controlPlane, healthCheck, virtualIP, etcd, loadBalancer, nodeLocal), not a list\n  hint: see examples/ for annotated definitions of every mode",
        ]),
        ("replicas quoted", edit(EXT3, &[("replicas: 3", "replicas: \"3\"")]), vec![
        "f:6:13: error: controlPlane.replicas = 3: must be a whole number, not text\n  hint: write the number without quotes",
        ]),
        ("machine not a mapping", edit(EXT3, &[("    - name: cp3\n      address: 10.0.0.13\n", "    - cp3\n")]), vec![
        "f:12:7: error: controlPlane.machines[2] = cp3: must be a mapping with name, address, apiServerPort, not text\n  hint: write the fields indented on the lines below",
        ]),
        ("vip outside two machines' subnet", edit(VIP3, &[("10.0.0.12/24", "10.0.1.12/24"), ("10.0.0.13/24", "10.0.1.13/24")]), vec![
        "f:3:9: error: endpoint.host = 10.0.0.10: is outside the subnet 10.0.1.0/24 of machines `cp2` (10.0.1.12/24), `cp3` (10.0.1.13/24)\n  hint: the virtual IP must be a free address in the layer-2 network of every control-plane machine",
        ]),
        ("everything at once", edit(EXT3, &[("port: 6443", "port: 0"), ("replicas: 3", "replicas: 4"), ("10.0.0.13", "10.0.0.11"), ("lb.example.com", "lb!")]), vec![
        "f:3:9: error: endpoint.host = lb!: must be an IP address or an RFC 1123 DNS name\n  hint: a DNS name has labels of a-z, 0-9 and '-' separated by dots, e.g. lb.example.com",
        "f:4:9: error: endpoint.port = 0: must be between 1 and 65535",
        "f:6:13: error: controlPlane.replicas = 4: cannot be an even number when etcd is stacked\n  hint: 4 machines tolerate 1 failure like 3: use 3 or 5",
        "f:8:5: error: controlPlane.machines = 3: lists 3 machines, fewer than the 4 replicas\n  hint: list every control-plane machine with its name and address; machines beyond the replicas are spares",
        "f:13:16: error: controlPlane.machines[2].address = 10.0.0.11: is already the address of controlPlane.machines[0] (`cp1`) on line 9\n  hint: every machine needs its own address",
        ]),
    ]
}

/// Machine entries `from..=to`, each `cpN` at `10.0.0.1N`, then `cp3`'s line.
fn machines(from: u32, to: u32) -> String {
    let mut s = String::new();
    for i in from..=to {
        s.push_str(&format!(
            "    - name: cp{i}\n      address: 10.0.0.{}\n",
            10 + i
        ));
    }
    s.push_str("    - name: cp3");
    s
}

#[test]
fn every_rule_with_its_boundaries_and_exact_message() {
    let print = std::env::var_os("PRINT_CASES").is_some();
    let mut failures = Vec::new();
    for (name, yaml, want) in cases() {
        let got = problems(&yaml);
        if print {
            println!("CASE {name:?}\n{got:#?}");
        } else if got != want {
            failures.push(format!("case `{name}`:\n  want {want:#?}\n  got  {got:#?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn modes_are_inferred_as_konvoy_infers_them() {
    let mode = |y: &str| check_str(y).endpoint.expect("valid").mode;
    assert_eq!(mode(EXT3), Mode::ExternalLb);
    assert_eq!(mode(VIP3), Mode::VirtualIp);
    assert_eq!(mode(ONE), Mode::SingleNode);
}

#[test]
fn defaults_are_applied_and_documented_values_hold() {
    let e = check_str(EXT3).endpoint.unwrap();
    assert_eq!(e.health.interval, std::time::Duration::from_millis(250));
    assert_eq!(e.health.timeout, std::time::Duration::from_millis(500));
    assert_eq!((e.health.rise, e.health.fall), (2, 2));
    assert_eq!(e.health.path, "/readyz");
    let lb = e.load_balancer.unwrap();
    assert_eq!(lb.listen.to_string(), "0.0.0.0:6443");
    assert_eq!(lb.admin.to_string(), "127.0.0.1:9630");
    assert!(e.vip.is_none());
    assert_eq!(e.machines[1].api_server_port, 6443);

    let v = check_str(VIP3).endpoint.unwrap();
    let vip = v.vip.unwrap();
    assert_eq!(vip.lease_ttl, std::time::Duration::from_secs(2));
    assert_eq!(vip.admin.to_string(), "127.0.0.1:9631");
    assert_eq!(vip.election, "/cpe/vip/prod");
    assert_eq!(vip.prefix_len, 32);
    assert_eq!(vip.interface, "eth0");
    // The election runs on the stacked etcd, with kubeadm's health-check client cert.
    let etcd = v.etcd.unwrap();
    // No endpoints: every machine's https://ADDRESS:2379, chosen by `cpe vip`.
    assert!(etcd.endpoints.is_empty(), "{:?}", etcd.endpoints);
    assert_eq!(
        etcd.ca_file.unwrap().to_str(),
        Some("/etc/kubernetes/pki/etcd/ca.crt")
    );
    assert_eq!(
        etcd.cert_file.unwrap().to_str(),
        Some("/etc/kubernetes/pki/etcd/healthcheck-client.crt")
    );
    assert_eq!(
        etcd.key_file.unwrap().to_str(),
        Some("/etc/kubernetes/pki/etcd/healthcheck-client.key")
    );
    assert!(v.load_balancer.is_none());
}

#[test]
fn plain_http_etcd_gets_no_default_certificates() {
    let v = check_str(&format!(
        "{VIP3}etcd:\n  endpoints: [http://127.0.0.1:2379]\n"
    ))
    .endpoint
    .unwrap();
    let etcd = v.etcd.unwrap();
    assert_eq!(etcd.endpoints, ["http://127.0.0.1:2379"]);
    assert!(etcd.ca_file.is_none() && etcd.cert_file.is_none());
}

#[test]
fn tolerance_quorum_and_spares() {
    for (n, tolerated, quorum) in [(1, 0, 1), (3, 1, 2), (5, 2, 3), (7, 3, 4), (9, 4, 5)] {
        let y = edit(
            EXT3,
            &[
                ("replicas: 3", &format!("replicas: {n}")),
                ("    - name: cp3", &machines(4, 10)),
            ],
        );
        let e = check_str(&y).endpoint.unwrap_or_else(|| panic!("{n}: {y}"));
        assert_eq!(e.failures_tolerated(), tolerated, "{n}");
        assert_eq!(e.quorum(), quorum, "{n}");
        assert_eq!(e.spares(), 10 - n as usize, "{n}");
    }
}
