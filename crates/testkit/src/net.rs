//! Hosts as network namespaces joined by a bridge, as in `docs/testkit.md`.
//!
//! A [`Net`] owns one namespace holding the bridge (the "switch") and every host namespace
//! it made; dropping it deletes them all, also while a test unwinds from a panic. Names
//! carry a prefix unique to the test run (`tag`, pid, a counter) and every `Net` gets its own
//! /24 under 10.0.0.0/8, so tests running at the same time never collide. Nothing here
//! touches the root namespace's interfaces or addresses, and no route leaves the bridge.
//!
//! What it does not do: start processes that outlive it (see [`crate::Child`]), or configure
//! anything beyond `lo`, one `eth0` per host and the bridge port.

use anyhow::{bail, Context, Result};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

static NEXT_NET: AtomicU32 = AtomicU32::new(0);

/// A bridge in its own namespace and the hosts plugged into it.
#[derive(Debug)]
pub struct Net {
    prefix: String,
    subnet: [u8; 3],
    switch: String,
    /// Every namespace this `Net` created and has not deleted yet, the switch first; Drop
    /// deletes them in reverse order. A mutex because hosts come and go during a test
    /// (rolling replacement) through `&self`.
    namespaces: Mutex<Vec<String>>,
}

/// One host: a network namespace with `lo` and `eth0` (a veth whose peer is a bridge port).
#[derive(Debug, Clone)]
pub struct Host {
    /// Short name given by the test, e.g. `cp1`.
    pub name: String,
    /// The namespace name (`ip netns exec <ns> ...`).
    pub ns: String,
    /// The address of `eth0`, in the net's /24.
    pub addr: Ipv4Addr,
    /// The switch namespace and the bridge port of this host, for link cuts.
    switch: String,
    port: String,
}

impl Net {
    /// Creates the switch namespace with bridge `br0`. `tag` names the test (a few letters);
    /// the subnet is 10.X.Y.0/24 with X from the pid and Y from a per-process counter.
    pub fn new(tag: &str) -> Result<Net> {
        let n = NEXT_NET.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let prefix = format!("{tag}-{pid}-{n}");
        // 10.100.0.0 - 10.199.255.0: away from the 10.77/16 of the docs' examples.
        let subnet = [10, 100 + (pid % 100) as u8, (n % 256) as u8];
        sweep_stale(tag);
        let switch = format!("{prefix}-sw");
        let net = Net {
            prefix,
            subnet,
            switch: switch.clone(),
            namespaces: Mutex::new(Vec::new()),
        };
        net.add_namespace(&switch)?;
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"])?;
        // No STP, no forwarding delay: ports forward as soon as they are up, like an access
        // switch with portfast. Otherwise a port brought back up listens for 15 s.
        ip(&[
            "-n",
            &switch,
            "link",
            "set",
            "br0",
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        ])?;
        ip(&["-n", &switch, "link", "set", "br0", "up"])?;
        Ok(net)
    }

    /// The unique prefix of every namespace of this net.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The address `10.X.Y.last`.
    pub fn addr(&self, last: u8) -> Ipv4Addr {
        Ipv4Addr::new(self.subnet[0], self.subnet[1], self.subnet[2], last)
    }

    /// The prefix length of the subnet (always 24).
    pub fn prefix_len(&self) -> u8 {
        24
    }

    /// Adds a host `name` with address `10.X.Y.last/24` on `eth0`, plugged into the bridge.
    pub fn add_host(&self, name: &str, last: u8) -> Result<Host> {
        let ns = format!("{}-{name}", self.prefix);
        let port = format!("p-{name}");
        if port.len() > 15 {
            bail!("host name {name:?} too long: the bridge port name {port:?} exceeds 15 bytes");
        }
        self.add_namespace(&ns)?;
        // Both ends are created directly in their namespaces, so the names only need to be
        // unique there, and nothing ever appears in the root namespace.
        ip(&[
            "link",
            "add",
            "eth0",
            "netns",
            &ns,
            "type",
            "veth",
            "peer",
            "name",
            &port,
            "netns",
            &self.switch,
        ])?;
        let addr = self.addr(last);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &self.switch, "link", "set", &port, "master", "br0"])?;
        ip(&["-n", &self.switch, "link", "set", &port, "up"])?;
        Ok(Host {
            name: name.to_string(),
            ns,
            addr,
            switch: self.switch.clone(),
            port,
        })
    }

    /// Deletes a host's namespace (its veth goes with it). Processes still running in it are
    /// the caller's: stop them first.
    pub fn remove_host(&self, host: &Host) -> Result<()> {
        // Unplug first: if anything still holds the namespace open (a socket), it stays
        // alive after `netns delete`, and must not stay on the bridge.
        let _ = ip(&["-n", &host.ns, "link", "del", "eth0"]);
        ip(&["netns", "delete", &host.ns])?;
        self.namespaces.lock().unwrap().retain(|n| n != &host.ns);
        Ok(())
    }

    fn add_namespace(&self, ns: &str) -> Result<()> {
        ip(&["netns", "add", ns])?;
        self.namespaces.lock().unwrap().push(ns.to_string());
        Ok(())
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let namespaces =
            std::mem::take(&mut *self.namespaces.lock().unwrap_or_else(|e| e.into_inner()));
        for ns in namespaces.iter().rev() {
            if let Err(e) = ip(&["netns", "delete", ns]) {
                eprintln!("testkit: could not delete namespace {ns}: {e:#}");
            }
        }
    }
}

impl Host {
    /// A command that runs `program args...` inside this host (`ip netns exec`). `ip netns
    /// exec` execs the program, so the child's pid is the program's.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns]).arg(program);
        c
    }

    /// Runs a program inside this host to completion and returns its stdout; an error
    /// carries the exit status and stderr.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<String> {
        let mut c = self.command(program);
        c.args(args);
        run(c).with_context(|| format!("on host {}", self.name))
    }

    /// Starts a program inside this host; its stdout and stderr go to `log`.
    pub fn spawn(
        &self,
        label: &str,
        log: &Path,
        program: impl AsRef<std::ffi::OsStr>,
        args: &[String],
    ) -> Result<crate::Child> {
        let mut c = self.command(program);
        c.args(args);
        crate::Child::spawn(label, c, log)
    }

    /// Cuts the host off the switch (bridge port down), as a pulled cable or a dead switch
    /// port would: the host keeps running and keeps its own link state up.
    pub fn link_down(&self) -> Result<()> {
        ip(&["-n", &self.switch, "link", "set", &self.port, "down"])
    }

    /// Plugs the host back in.
    pub fn link_up(&self) -> Result<()> {
        ip(&["-n", &self.switch, "link", "set", &self.port, "up"])
    }

    /// Drops every IP packet between this host and `peers` (nftables, in this host's
    /// namespace), both ways. ARP still passes, as in a real IP-layer partition; other
    /// hosts (the client) still reach it. [`Host::heal`] undoes it.
    pub fn partition_from(&self, peers: &[Ipv4Addr]) -> Result<()> {
        let set = peers
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let rules = format!(
            "table inet cpe_partition {{\n\
               chain input {{ type filter hook input priority -300; policy accept; ip saddr {{ {set} }} drop; }}\n\
               chain output {{ type filter hook output priority -300; policy accept; ip daddr {{ {set} }} drop; }}\n\
             }}\n"
        );
        let mut c = self.command("nft");
        c.args(["-f", "-"]);
        run_with_stdin(c, &rules)
            .map(|_| ())
            .with_context(|| format!("partitioning {} from {set}", self.name))
    }

    /// Removes the partition made by [`Host::partition_from`] (no error if there is none).
    pub fn heal(&self) -> Result<()> {
        let _ = self.exec("nft", &["delete", "table", "inet", "cpe_partition"]);
        Ok(())
    }

    /// The MAC address of `eth0`, lower case.
    pub fn mac(&self) -> Result<String> {
        let text = run({
            let mut c = Command::new("ip");
            c.args(["-n", &self.ns, "-j", "link", "show", "eth0"]);
            c
        })?;
        let v: serde_json::Value = serde_json::from_str(&text)?;
        v[0]["address"]
            .as_str()
            .map(|s| s.to_lowercase())
            .context("no address in `ip -j link show eth0`")
    }

    /// Whether `addr` is on one of this host's interfaces.
    pub fn has_addr(&self, addr: Ipv4Addr) -> Result<bool> {
        let text = run({
            let mut c = Command::new("ip");
            c.args(["-n", &self.ns, "-j", "-4", "addr", "show"]);
            c
        })?;
        let v: serde_json::Value = serde_json::from_str(&text)?;
        let want = addr.to_string();
        Ok(v.as_array().into_iter().flatten().any(|link| {
            link["addr_info"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|a| a["local"].as_str() == Some(want.as_str()))
        }))
    }

    /// This host's neighbour entry for `addr`: (MAC, state), if any.
    pub fn neighbour(&self, addr: Ipv4Addr) -> Result<Option<(String, String)>> {
        let text = run({
            let mut c = Command::new("ip");
            c.args(["-n", &self.ns, "-j", "neigh", "show", &addr.to_string()]);
            c
        })?;
        let v: serde_json::Value = serde_json::from_str(&text)?;
        Ok(v.as_array().and_then(|a| a.first()).and_then(|e| {
            let mac = e["lladdr"].as_str()?.to_lowercase();
            let state = e["state"]
                .as_array()
                .map(|s| {
                    s.iter()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            Some((mac, state))
        }))
    }

    /// The path of this host's namespace file, for `setns(2)`.
    pub fn ns_path(&self) -> std::path::PathBuf {
        Path::new("/run/netns").join(&self.ns)
    }
}

/// Deletes what an earlier run with the same `tag` left behind when it was killed before
/// its Drop guards ran (SIGKILL, SIGTERM, a CI timeout): namespaces named `<tag>-<pid>-*`
/// whose creating process `pid` no longer exists. Processes still running inside them are
/// SIGKILLed first (`ip netns pids`). Namespaces of live processes are never touched.
pub fn sweep_stale(tag: &str) {
    let Ok(list) = run({
        let mut c = Command::new("ip");
        c.args(["netns", "list"]);
        c
    }) else {
        return;
    };
    for ns in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(rest) = ns.strip_prefix(&format!("{tag}-")) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if let Ok(pids) = run({
            let mut c = Command::new("ip");
            c.args(["netns", "pids", ns]);
            c
        }) {
            for p in pids
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        let _ = ip(&["netns", "delete", ns]);
        eprintln!("testkit: deleted {ns}, left by an earlier run (pid {pid}) that is gone");
    }
}

/// Runs `ip ARGS` in the root namespace (always with `-n` or `netns` to act elsewhere).
pub fn ip(args: &[&str]) -> Result<()> {
    let mut c = Command::new("ip");
    c.args(args);
    run(c).map(|_| ())
}

/// Runs a command to completion; stdout on success, an error with status and stderr if not.
pub fn run(mut c: Command) -> Result<String> {
    let out = c
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not start {c:?}"))?;
    if !out.status.success() {
        bail!(
            "{c:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Like [`run`], with `input` written to the command's stdin.
pub fn run_with_stdin(mut c: Command, input: &str) -> Result<String> {
    use std::io::Write;
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start {c:?}"))?;
    child.stdin.take().unwrap().write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{c:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
