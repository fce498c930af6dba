//! Reading definition files: what cannot be a definition is refused with one clear
//! problem, before any YAML parsing (missing, too large, binary, a directory).

use cpe_config::{load_file, LoadError};
use std::io::Write;

fn only_problem(e: &LoadError) -> String {
    let ps = e.problems();
    assert_eq!(ps.len(), 1, "{ps:?}");
    ps[0].render(Some("f"))
}

#[test]
fn a_missing_file_names_the_path_and_the_cause() {
    let e = load_file(std::path::Path::new("/nonexistent/endpoint.yaml")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "/nonexistent/endpoint.yaml: cannot read: No such file or directory (os error 2)"
    );
    assert_eq!(
        only_problem(&e),
        "f: error: (file): cannot be read: No such file or directory (os error 2)"
    );
}

#[test]
fn a_ten_megabyte_file_is_refused_without_reading_it() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.as_file().set_len(10 * 1024 * 1024).unwrap();
    let e = load_file(f.path()).unwrap_err();
    assert!(
        matches!(e, LoadError::TooLarge { size: 10485760, .. }),
        "{e:?}"
    );
    assert_eq!(
        only_problem(&e),
        "f: error: (file) = 10485760 bytes: is larger than the 1048576 bytes a definition may have\n  hint: a definition is a few KiB of YAML: is this the right file?"
    );
    f.flush().unwrap();
}

#[test]
fn a_binary_file_is_refused() {
    for bytes in [
        &[0x7f, b'E', b'L', b'F', 0xff, 0xfe, 0][..],
        b"endpoint:\0\n",
    ] {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        let e = load_file(f.path()).unwrap_err();
        assert!(matches!(e, LoadError::NotText { .. }), "{e:?}");
        assert_eq!(
            only_problem(&e),
            "f: error: (file): is not UTF-8 text (a binary file?)\n  hint: a definition is a YAML text file: is this the right file?"
        );
    }
}

#[test]
fn a_directory_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let e = load_file(d.path()).unwrap_err();
    assert!(
        e.to_string().ends_with("cannot read: is a directory"),
        "{e}"
    );
}

/// What is not a regular file is refused at once, before reading a byte: a FIFO would
/// block a reload until fed, `/dev/zero` would never end.
#[test]
fn a_fifo_a_device_and_a_symlink_to_one_are_refused_at_once() {
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("ep.yaml");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let link = d.path().join("zero.yaml");
    std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
    let start = std::time::Instant::now();
    for (path, kind) in [
        (fifo.as_path(), "a FIFO (named pipe)"),
        (std::path::Path::new("/dev/zero"), "a character device"),
        (link.as_path(), "a character device"),
    ] {
        let e = load_file(path).unwrap_err();
        assert!(matches!(e, LoadError::NotRegular { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            format!(
                "{}: is {kind}, not a regular file: a definition is read from a regular file",
                path.display()
            )
        );
        assert_eq!(
            only_problem(&e),
            format!("f: error: (file): is {kind}, not a regular file: a definition is read from a regular file\n  hint: point -f at the YAML file itself (a symlink to one is fine)")
        );
    }
    assert!(start.elapsed() < std::time::Duration::from_secs(2));
}

/// `cpe plan -f /dev/stdin` reads a pipe or a device, but never more than the limit:
/// `/dev/zero` and an endless pipe end with "too large".
#[test]
fn a_stream_is_read_up_to_the_limit_only() {
    let e = cpe_config::read_file_or_stream(std::path::Path::new("/dev/zero")).unwrap_err();
    assert!(
        matches!(
            e,
            LoadError::TooLarge {
                size: 1048577,
                max: 1048576,
                ..
            }
        ),
        "{e:?}"
    );
    // An endless writer into a FIFO: the read stops one byte past the limit.
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("in.yaml");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
            let line = b"y\n".repeat(4096);
            while f.write_all(&line).is_ok() {}
        })
    };
    let e = cpe_config::read_file_or_stream(&fifo).unwrap_err();
    assert!(matches!(e, LoadError::TooLarge { .. }), "{e:?}");
    drop(e);
    writer.join().unwrap(); // the reader closed: the writer's next write fails (EPIPE)
                            // A regular file through the same path reads as usual.
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(b"cluster: a\n").unwrap();
    assert_eq!(
        cpe_config::read_file_or_stream(f.path()).unwrap(),
        "cluster: a\n"
    );
}
