//! The definition given inline, for one-file manifests (`cpe render --kind static-pod
//! --inline`): the pod carries the whole `endpoint.yaml` in the environment variable
//! [`ENV`], so the only files the host needs are the etcd certificates kubeadm already put
//! there. [`definition_file_from_env`] writes that text to a private file and returns its
//! path, for the commands that take `-f FILE` (and re-read it on SIGHUP).
//!
//! It does not parse or check the definition: the loader does, exactly as for any file,
//! and its messages name the file written here. It writes nothing when [`ENV`] is unset.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The environment variable holding the whole definition.
pub const ENV: &str = "CPE_DEFINITION";

#[derive(Debug, thiserror::Error)]
pub enum InlineError {
    #[error("{ENV} is set but empty: give the definition's text, or unset it and use -f FILE")]
    Empty,
    #[error("cannot write the definition from {ENV} to {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// When [`ENV`] is set: its text written to a private file (mode 0600, in the temporary
/// directory, which a `FROM scratch` container may first need created), and that file's
/// path. `None` when it is not set.
pub fn definition_file_from_env() -> Result<Option<PathBuf>, InlineError> {
    match std::env::var_os(ENV) {
        None => Ok(None),
        Some(text) => {
            let dir = std::env::temp_dir();
            let path = dir.join(format!("cpe-definition-{}.yaml", std::process::id()));
            write_private(&dir, &path, text.as_encoded_bytes()).map(Some)
        }
    }
}

/// Writes `text` to `path` (in `dir`), readable by the owner only. A file left at that
/// path by an earlier process with the same id is replaced; a symlink planted there is
/// removed, never followed (`create_new` is `O_EXCL`).
fn write_private(dir: &Path, path: &Path, text: &[u8]) -> Result<PathBuf, InlineError> {
    if text.iter().all(u8::is_ascii_whitespace) {
        return Err(InlineError::Empty);
    }
    let err = |source| InlineError::Write {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    f.write_all(text).map_err(err)?;
    Ok(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_a_private_file_and_replaces_a_stale_one() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("tmp");
        let path = sub.join("cpe-definition-1.yaml");
        write_private(&sub, &path, b"cluster: a\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "cluster: a\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        write_private(&sub, &path, b"cluster: b\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "cluster: b\n");
    }

    #[test]
    fn does_not_follow_a_planted_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, "keep").unwrap();
        let path = dir.path().join("cpe-definition-2.yaml");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        write_private(dir.path(), &path, b"cluster: a\n").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        assert!(!std::fs::symlink_metadata(&path).unwrap().is_symlink());
    }

    #[test]
    fn an_empty_definition_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_private(dir.path(), &dir.path().join("x"), b" \n").unwrap_err();
        assert!(matches!(err, InlineError::Empty), "{err}");
    }
}
