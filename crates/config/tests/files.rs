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
