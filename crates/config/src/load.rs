//! Loading a definition: reading the file (bounded, refusing what cannot be one) and
//! handing the text to the parser and the rules. The result types ([`Loaded`],
//! [`Checked`], [`LoadError`]) are here.
//!
//! It does not know any rule: those are in [`crate::rules`].

use crate::input;
use crate::model::Endpoint;
use crate::problem::{Problem, Severity};
use crate::rules;
use crate::tree;
use std::path::Path;

/// Files larger than this are refused before parsing (a definition is a few KiB).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// A valid definition and the warnings it carries.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub endpoint: Endpoint,
    pub warnings: Vec<Problem>,
}

/// Everything found in a definition, valid or not: what `cpe plan` prints.
#[derive(Debug, Clone, Default)]
pub struct Checked {
    /// The resolved definition when there is no error.
    pub endpoint: Option<Endpoint>,
    /// Errors and warnings, in file order (problems without a position last).
    pub problems: Vec<Problem>,
    /// `mode` was not written: it was inferred as Konvoy infers it.
    pub mode_inferred: bool,
}

impl Checked {
    pub fn errors(&self) -> usize {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .count()
    }

    pub fn warnings(&self) -> usize {
        self.problems.len() - self.errors()
    }

    pub fn into_result(self) -> Result<Loaded, LoadError> {
        match self.endpoint {
            Some(endpoint) if self.problems.iter().all(|p| p.severity != Severity::Error) => {
                Ok(Loaded {
                    endpoint,
                    warnings: self.problems,
                })
            }
            _ => Err(LoadError::Invalid(self.problems)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {size} bytes is larger than the {max} bytes a definition may have")]
    TooLarge { path: String, size: u64, max: u64 },
    /// A FIFO, a device or a socket where a definition file is expected.
    #[error("{path}: is {kind}, not a regular file: a definition is read from a regular file")]
    NotRegular { path: String, kind: &'static str },
    #[error("{path}: is not UTF-8 text (a binary file?)")]
    NotText { path: String },
    /// The YAML could not be parsed at all (syntax).
    #[error("{}", .0.render(None))]
    Parse(Problem),
    /// The definition was read; it breaks one or more rules (wrong types and unknown
    /// fields included).
    #[error("{} problem(s) in the definition:\n{}", .0.len(), render_all(.0))]
    Invalid(Vec<Problem>),
}

fn render_all(ps: &[Problem]) -> String {
    ps.iter()
        .map(|p| p.render(None))
        .collect::<Vec<_>>()
        .join("\n")
}

impl LoadError {
    /// Every problem, for printing (I/O errors become one problem without a position).
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            LoadError::Parse(p) => vec![p.clone()],
            LoadError::Invalid(ps) => ps.clone(),
            LoadError::Io { source, .. } => {
                vec![Problem::error(
                    "(file)",
                    "",
                    format!("cannot be read: {source}"),
                )]
            }
            LoadError::TooLarge { size, max, .. } => vec![Problem::error(
                "(file)",
                format!("{size} bytes"),
                format!("is larger than the {max} bytes a definition may have"),
            )
            .hint("a definition is a few KiB of YAML: is this the right file?")],
            LoadError::NotRegular { kind, .. } => vec![Problem::error(
                "(file)",
                "",
                format!("is {kind}, not a regular file: a definition is read from a regular file"),
            )
            .hint("point -f at the YAML file itself (a symlink to one is fine)")],
            LoadError::NotText { .. } => {
                vec![
                    Problem::error("(file)", "", "is not UTF-8 text (a binary file?)")
                        .hint("a definition is a YAML text file: is this the right file?"),
                ]
            }
        }
    }
}

/// Reads and validates a definition file.
pub fn load_file(path: &Path) -> Result<Loaded, LoadError> {
    let text = read_file(path)?;
    load_str(&text)
}

/// Reads a definition file as text, refusing what cannot be one: too large, binary, a
/// directory, and anything that is not a regular file after symlinks are followed (a
/// FIFO, a device, a socket). This is the read of every command that loads or reloads a
/// definition (`cpe lb` on SIGHUP, `cpe vip`, `cpe preflight`, `cpe check`): a FIFO
/// would block it until fed and `/dev/zero` never ends. The file is opened with
/// `O_NONBLOCK` so that opening a FIFO does not wait for a writer either; what was opened
/// is what is checked (no window between a check and the open).
pub fn read_file(path: &Path) -> Result<String, LoadError> {
    read(path, Streams::Refuse)
}

/// Like [`read_file`], but a FIFO or a character device (`cpe plan -f /dev/stdin`, a
/// process substitution) is read too, through the same bound: at most
/// [`MAX_FILE_BYTES`] + 1 bytes are ever read, so `/dev/zero` or an endless pipe ends
/// with [`LoadError::TooLarge`] at once. For one-shot commands only (`cpe plan`), where a
/// pipe is a reasonable thing to hand over; never for a reload.
pub fn read_file_or_stream(path: &Path) -> Result<String, LoadError> {
    read(path, Streams::Allow)
}

#[derive(Clone, Copy, PartialEq)]
enum Streams {
    Refuse,
    Allow,
}

/// What a non-regular file is, for the message.
fn kind_of(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

fn read(path: &Path, streams: Streams) -> Result<String, LoadError> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let name = path.display().to_string();
    let io = |source| LoadError::Io {
        path: name.clone(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    if streams == Streams::Refuse {
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    let t = meta.file_type();
    if t.is_dir() {
        return Err(io(std::io::Error::other("is a directory")));
    }
    let stream_ok = streams == Streams::Allow && (t.is_fifo() || t.is_char_device());
    if !t.is_file() && !stream_ok {
        return Err(LoadError::NotRegular {
            path: name,
            kind: kind_of(t),
        });
    }
    if t.is_file() && meta.len() > MAX_FILE_BYTES {
        return Err(LoadError::TooLarge {
            path: name,
            size: meta.len(),
            max: MAX_FILE_BYTES,
        });
    }
    // Bounded whatever the file says its length is: a file that grows while read, a
    // device or a pipe stops one byte past the limit.
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(LoadError::TooLarge {
            path: name,
            size: bytes.len() as u64,
            max: MAX_FILE_BYTES,
        });
    }
    let text = String::from_utf8(bytes).map_err(|_| LoadError::NotText { path: name.clone() })?;
    if text.contains('\0') {
        return Err(LoadError::NotText { path: name });
    }
    Ok(text)
}

/// Parses and validates a definition given as text.
pub fn load_str(text: &str) -> Result<Loaded, LoadError> {
    match tree::parse(text) {
        Err(p) => Err(LoadError::Parse(p)),
        Ok(t) => check_tree(&t).into_result(),
    }
}

/// Parses and checks a definition, returning every problem (a syntax error is the only
/// one reported alone, since nothing after it can be read).
pub fn check_str(text: &str) -> Checked {
    match tree::parse(text) {
        Err(p) => Checked {
            problems: vec![p],
            ..Default::default()
        },
        Ok(t) => check_tree(&t),
    }
}

fn check_tree(t: &tree::At) -> Checked {
    let mut problems = Vec::new();
    let file = input::read(t, &mut problems);
    let mut checked = rules::check(&file);
    problems.append(&mut checked.problems);
    checked.problems = problems;
    if checked.errors() > 0 {
        checked.endpoint = None;
    }
    rules::sort(&mut checked.problems);
    checked
}
