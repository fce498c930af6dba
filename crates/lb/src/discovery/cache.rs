//! The last good backend set on disk: `DIR/lb-PORT.json` (PORT: the listening port, so
//! two load balancers on one machine keep apart; `vip-lb-PORT.json` for the one inside
//! `cpe vip --load-balance`, so it never shares a file with a `cpe lb`), written atomically (a temporary file in
//! the same directory, fsync, rename, fsync of the directory) after every discovered
//! change, and read at start so the load balancer reaches the machines it last knew
//! before any API answers.
//!
//! The parse is strict ([`parse`]): an unknown field, another version, an empty list, a
//! backend that breaks the `--backend` rule or is listed twice makes the whole file
//! unusable. A bad or unreadable file is reported (in `/status` and the log), never fatal:
//! the load balancer starts from its seeds. It does not decide what to cache: the runner
//! hands over the set.

use crate::BackendSpec;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The file's format version.
pub const VERSION: u32 = 1;
/// A cache file larger than this is refused unread.
const MAX_BYTES: u64 = 1 << 20;

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: u32,
    /// Seconds since the epoch when it was written (informational).
    written_unix: u64,
    backends: Vec<String>,
}

/// Why a cache file was not used or not written.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cannot read {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot write {path}: {error}")]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: {rule}")]
    Invalid { path: PathBuf, rule: String },
}

/// Where the cache of the load balancer listening on `port` lives in `dir` (`prefix`:
/// `lb` for `cpe lb`, `vip-lb` for the load balancer inside `cpe vip`).
pub fn path(dir: &Path, prefix: &str, port: u16) -> PathBuf {
    dir.join(format!("{prefix}-{port}.json"))
}

/// Parses a cache file's text: the backends, or the rule it breaks.
pub fn parse(text: &str) -> Result<Vec<BackendSpec>, String> {
    let f: File = serde_json::from_str(text).map_err(|e| format!("not a cache file: {e}"))?;
    if f.version != VERSION {
        return Err(format!("version {} is not {VERSION}", f.version));
    }
    if f.backends.is_empty() {
        return Err("lists no backend".into());
    }
    let mut out: Vec<BackendSpec> = Vec::new();
    for (i, b) in f.backends.iter().enumerate() {
        let spec = BackendSpec::parse(b).map_err(|e| format!("backends[{i}]: {e}"))?;
        if out.contains(&spec) {
            return Err(format!("backends[{i}]: `{b}` is listed twice"));
        }
        out.push(spec);
    }
    Ok(out)
}

/// The text written for `backends`.
pub fn render(backends: &[BackendSpec], written_unix: u64) -> String {
    let f = File {
        version: VERSION,
        written_unix,
        backends: backends.iter().map(|b| b.to_string()).collect(),
    };
    let mut s = serde_json::to_string_pretty(&f).expect("plain data");
    s.push('\n');
    s
}

/// Reads the cache: `Ok(None)` when there is none.
pub fn read(path: &Path) -> Result<Option<Vec<BackendSpec>>, CacheError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(CacheError::Read {
                path: path.into(),
                error,
            })
        }
    };
    let meta = file.metadata().map_err(|error| CacheError::Read {
        path: path.into(),
        error,
    })?;
    if !meta.is_file() {
        return Err(CacheError::Invalid {
            path: path.into(),
            rule: "is not a regular file".into(),
        });
    }
    let mut text = String::new();
    file.take(MAX_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|error| CacheError::Read {
            path: path.into(),
            error,
        })?;
    if text.len() as u64 > MAX_BYTES {
        return Err(CacheError::Invalid {
            path: path.into(),
            rule: format!("is larger than {MAX_BYTES} bytes"),
        });
    }
    parse(&text).map(Some).map_err(|rule| CacheError::Invalid {
        path: path.into(),
        rule,
    })
}

/// Writes the cache atomically (the directory is created when missing).
pub fn write(path: &Path, backends: &[BackendSpec], written_unix: u64) -> Result<(), CacheError> {
    let err = |error| CacheError::Write {
        path: path.into(),
        error,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("lb.json"),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(render(backends, written_unix).as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(list: &[&str]) -> Vec<BackendSpec> {
        list.iter()
            .map(|s| BackendSpec::parse(s).unwrap())
            .collect()
    }

    #[test]
    fn what_is_written_reads_back() {
        let b = specs(&["10.0.0.1:6443", "[fd00::2]:6443", "cp3.example:6443"]);
        assert_eq!(parse(&render(&b, 7)).unwrap(), b);
    }

    #[test]
    fn the_parse_is_strict() {
        for (text, want) in [
            ("", "not a cache file"),
            ("garbage", "not a cache file"),
            (
                r#"{"version":1,"written_unix":1,"backends":[],"x":1}"#,
                "unknown field",
            ),
            (
                r#"{"version":2,"written_unix":1,"backends":["10.0.0.1:6443"]}"#,
                "version 2",
            ),
            (
                r#"{"version":1,"written_unix":1,"backends":[]}"#,
                "no backend",
            ),
            (
                r#"{"version":1,"written_unix":1,"backends":["10.0.0.1"]}"#,
                "backends[0]",
            ),
            (
                r#"{"version":1,"written_unix":1,"backends":["10.0.0.1:1","10.0.0.1:1"]}"#,
                "twice",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn files_are_written_atomically_and_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(&dir.path().join("sub"), "lb", 6443);
        assert!(p.ends_with("lb-6443.json"));
        assert!(path(dir.path(), "vip-lb", 6443).ends_with("vip-lb-6443.json"));
        assert!(read(&p).unwrap().is_none(), "no cache yet");
        let b = specs(&["10.0.0.1:6443"]);
        write(&p, &b, 1).unwrap();
        assert_eq!(read(&p).unwrap().unwrap(), b);
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left");
        std::fs::write(&p, "{").unwrap();
        assert!(matches!(read(&p), Err(CacheError::Invalid { .. })));
    }
}
