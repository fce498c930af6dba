//! The metrics every cpe process exposes whatever it does: `cpe_build_info{version,revision}`
//! and the process's own resources as Prometheus names them (`process_resident_memory_bytes`,
//! `process_open_fds`, `process_cpu_seconds_total`, ...), read from `/proc/self` at scrape
//! time. The admin listener appends them to every `/metrics` answer, so `cpe lb` and
//! `cpe vip` both have them without registering anything.
//!
//! Parsing is pure (text in, numbers out) and tested on fixed text; only [`sample`] reads
//! `/proc`. A value it cannot read is left out, never reported as 0. It does not know the
//! agents' own metrics.

use std::fmt::Write;
use std::sync::OnceLock;

/// The kernel's `USER_HZ`: the unit of the CPU times in `/proc/<pid>/stat`. It is 100 on
/// every Linux architecture's user-space interface, whatever the kernel's own HZ.
const USER_HZ: f64 = 100.0;

static BUILD: OnceLock<(String, String)> = OnceLock::new();

/// Sets what `cpe_build_info` reports; the first call wins. The binary calls it at start
/// with its version and git revision (known only to the binary's build script). Unset,
/// the metric says this crate's version and revision "unknown".
pub fn set_build_info(version: &str, revision: &str) {
    let _ = BUILD.set((version.to_string(), revision.to_string()));
}

fn build_info() -> (String, String) {
    BUILD
        .get()
        .cloned()
        .unwrap_or_else(|| (env!("CARGO_PKG_VERSION").to_string(), "unknown".into()))
}

/// One reading of the process's resources; `None` where `/proc` did not say.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub threads: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub cpu_seconds: Option<f64>,
    pub start_time_seconds: Option<f64>,
}

/// Reads `/proc/self` now.
pub fn sample() -> Sample {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let mut s = Sample::default();
    if let Some(status) = read("/proc/self/status") {
        s.resident_bytes = status_kb(&status, "VmRSS:").map(|k| k * 1024);
        s.virtual_bytes = status_kb(&status, "VmSize:").map(|k| k * 1024);
        s.threads = status_kb(&status, "Threads:");
    }
    if let Some(stat) = read("/proc/self/stat") {
        if let Some((cpu_ticks, start_ticks)) = stat_times(&stat) {
            s.cpu_seconds = Some(cpu_ticks as f64 / USER_HZ);
            s.start_time_seconds = read("/proc/stat")
                .and_then(|t| boot_time(&t))
                .map(|btime| btime as f64 + start_ticks as f64 / USER_HZ);
        }
    }
    // The directory handle read_dir holds is one of the entries: count it out.
    s.open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| (d.count() as u64).saturating_sub(1));
    s.max_fds = read("/proc/self/limits").and_then(|l| max_open_files(&l));
    s
}

/// A `Key:   123 kB` (or plain count) line of `/proc/<pid>/status`.
fn status_kb(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// (utime + stime, starttime) in clock ticks from `/proc/<pid>/stat`. The command name
/// (field 2) may hold spaces and parentheses, so fields are counted after its last `)`.
fn stat_times(stat: &str) -> Option<(u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ")": field 3 (state) is index 0, so field N is index N - 3.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
    Some((num(14)? + num(15)?, num(22)?))
}

/// `btime` of `/proc/stat`: the boot time in seconds since the epoch.
fn boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// The soft limit of `Max open files` in `/proc/<pid>/limits` (absent when unlimited).
fn max_open_files(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A label value escaped for the text format.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The OpenMetrics text of `cpe_build_info` and `s` (without the closing `# EOF`).
pub fn encode(s: &Sample) -> String {
    let (version, revision) = build_info();
    let mut t = String::new();
    let _ = write!(
        t,
        "# HELP cpe_build Version and git revision of the running cpe binary.\n# TYPE cpe_build info\ncpe_build_info{{version=\"{}\",revision=\"{}\"}} 1\n",
        label(&version),
        label(&revision)
    );
    let mut gauge = |name: &str, help: &str, v: Option<String>| {
        if let Some(v) = v {
            let _ = write!(t, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n");
        }
    };
    let int = |v: Option<u64>| v.map(|v| v.to_string());
    let float = |v: Option<f64>| v.map(|v| format!("{v:.2}"));
    gauge(
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        int(s.resident_bytes),
    );
    gauge(
        "process_virtual_memory_bytes",
        "Virtual memory size in bytes.",
        int(s.virtual_bytes),
    );
    gauge("process_threads", "OS threads.", int(s.threads));
    gauge(
        "process_open_fds",
        "Open file descriptors.",
        int(s.open_fds),
    );
    gauge(
        "process_max_fds",
        "Maximum number of open file descriptors.",
        int(s.max_fds),
    );
    gauge(
        "process_start_time_seconds",
        "Start time of the process since the Unix epoch in seconds.",
        float(s.start_time_seconds),
    );
    if let Some(cpu) = s.cpu_seconds {
        let _ = write!(
            t,
            "# HELP process_cpu_seconds Total user and system CPU time spent in seconds.\n# TYPE process_cpu_seconds counter\nprocess_cpu_seconds_total {cpu:.2}\n"
        );
    }
    t
}

/// `body` (an OpenMetrics text from an agent's registry) with [`encode`]`(&`[`sample`]`())`
/// inserted before its closing `# EOF`.
pub fn append_to(body: &str) -> String {
    let extra = encode(&sample());
    match body.rfind("# EOF") {
        Some(i) => format!("{}{extra}{}", &body[..i], &body[i..]),
        None => format!("{body}{extra}# EOF\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (cpe (lb) x) S 1 4242 4242 0 -1 4194560 2500 0 0 0 123 77 0 0 20 0 9 0 5000 1000000 700 18446744073709551615";

    #[test]
    fn parses_proc_text() {
        assert_eq!(stat_times(STAT), Some((200, 5000)));
        let status = "Name:\tcpe\nVmSize:\t  123456 kB\nVmRSS:\t    2048 kB\nThreads:\t9\n";
        assert_eq!(status_kb(status, "VmRSS:"), Some(2048));
        assert_eq!(status_kb(status, "Threads:"), Some(9));
        assert_eq!(status_kb(status, "VmSwap:"), None);
        assert_eq!(
            boot_time("cpu 1 2\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024));
        assert_eq!(
            max_open_files("Max open files  unlimited unlimited files\n"),
            None
        );
    }

    #[test]
    fn reads_this_process() {
        let s = sample();
        assert!(s.resident_bytes.unwrap() > 0, "{s:?}");
        assert!(s.open_fds.unwrap() >= 3, "{s:?}");
        assert!(
            s.cpu_seconds.is_some() && s.start_time_seconds.is_some(),
            "{s:?}"
        );
    }

    #[test]
    fn encodes_before_eof_and_leaves_out_what_is_unknown() {
        let t = encode(&Sample {
            resident_bytes: Some(4096),
            cpu_seconds: Some(1.5),
            ..Sample::default()
        });
        assert!(t.contains("cpe_build_info{version=\""), "{t}");
        assert!(t.contains("process_resident_memory_bytes 4096\n"), "{t}");
        assert!(t.contains("process_cpu_seconds_total 1.50\n"), "{t}");
        assert!(!t.contains("process_open_fds"), "{t}");
        let body = append_to("# TYPE a gauge\na 1\n# EOF\n");
        assert!(
            body.starts_with("# TYPE a gauge\na 1\n# HELP cpe_build"),
            "{body}"
        );
        assert!(
            body.ends_with("process_cpu_seconds_total") || body.ends_with("# EOF\n"),
            "{body}"
        );
        assert_eq!(body.matches("# EOF").count(), 1, "{body}");
        assert!(append_to("a 1\n").ends_with("# EOF\n"));
    }

    #[test]
    fn escapes_label_values() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
