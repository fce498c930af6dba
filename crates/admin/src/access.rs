//! Who may do what on the admin listener, decided per request from what the request
//! says ([`Seen`]) and the address it arrived on ([`access`]); the bearer [`Token`] and
//! the listener's limits ([`Options`]).
//!
//! The rules, in order:
//! 1. `Host` must name the address the connection arrived on (an IP literal, or
//!    `localhost` or `0.0.0.0` when that address is loopback), with its port when a port
//!    is written.
//!    A browser that a DNS-rebinding page points at the listener sends the page's name:
//!    refused (421), so no web page can read `/status` or send actions.
//! 2. A state-changing request (anything but `GET`/`HEAD`) must carry no `Origin`: only
//!    browsers send it, and a browser's cross-site `POST` (even `text/plain`, which needs
//!    no CORS preflight) is refused (403). `cpe status` sends none.
//! 3. When a token is set, a state-changing request must carry
//!    `Authorization: Bearer TOKEN` (compared in constant time); else 401.
//!
//! `GET` (`/metrics`, `/status`, `/healthz`...) needs no token: scrapers and probes read
//! it, and it changes nothing. Pure: no I/O except [`Token::read`].

use crate::Response;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The admin listener's guard and limits.
#[derive(Clone, Debug)]
pub struct Options {
    /// Every state-changing request must carry it. `None`: none is asked for, which the
    /// agents allow only on a loopback listener (see cpe-config's plan rules).
    pub token: Option<Token>,
    /// Connections at once; past it a new one is closed at once.
    pub max_connections: usize,
    /// How long a request head may take to arrive (the first one, and each one on a
    /// kept-alive connection): slowloris and idle connections are closed after it.
    pub header_timeout: Duration,
    /// How long one connection may last in all.
    pub max_lifetime: Duration,
}

/// Connections at once by default: far more than scrapers, probes and operators need,
/// far fewer than the descriptors an agent keeps for its own work.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;

impl Default for Options {
    fn default() -> Self {
        Options {
            token: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_timeout: Duration::from_secs(5),
            max_lifetime: Duration::from_secs(60),
        }
    }
}

impl Options {
    /// The defaults with this token.
    pub fn with_token(token: Option<Token>) -> Self {
        Options {
            token,
            ..Options::default()
        }
    }
}

/// A bearer token, as read from its file. Never printed (`Debug` hides it).
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<hidden>)")
    }
}

/// The largest token file read.
pub const MAX_TOKEN_FILE: u64 = 4096;

/// Why a token file gives no token.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("admin token file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("admin token file {path}: not a regular file")]
    NotAFile { path: PathBuf },
    #[error("admin token file {path}: larger than {MAX_TOKEN_FILE} bytes")]
    TooLarge { path: PathBuf },
    #[error("admin token file {path}: {problem}")]
    Invalid {
        path: PathBuf,
        problem: &'static str,
    },
}

impl Token {
    /// A token from text: surrounding whitespace (a trailing newline) is dropped; what is
    /// left must be 16 or more visible ASCII characters (it is sent in a header).
    pub fn new(text: &str) -> Result<Token, &'static str> {
        let t = text.trim();
        if t.is_empty() {
            return Err("is empty");
        }
        if !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("must be visible ASCII characters only (no spaces inside)");
        }
        if t.len() < 16 {
            return Err("is shorter than 16 characters");
        }
        Ok(Token(t.to_string()))
    }

    /// Reads a token file: a regular file of at most [`MAX_TOKEN_FILE`] bytes, read
    /// through a bounded reader (a FIFO or a device is refused before it is read).
    pub fn read(path: &Path) -> Result<Token, TokenError> {
        use std::io::Read;
        let err = |source| TokenError::Read {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(err)?;
        if !meta.is_file() {
            return Err(TokenError::NotAFile {
                path: path.to_path_buf(),
            });
        }
        let mut text = String::new();
        std::fs::File::open(path)
            .map_err(err)?
            .take(MAX_TOKEN_FILE + 1)
            .read_to_string(&mut text)
            .map_err(err)?;
        if text.len() as u64 > MAX_TOKEN_FILE {
            return Err(TokenError::TooLarge {
                path: path.to_path_buf(),
            });
        }
        Token::new(&text).map_err(|problem| TokenError::Invalid {
            path: path.to_path_buf(),
            problem,
        })
    }

    /// The `Authorization` header value that carries it.
    pub fn header(&self) -> String {
        format!("Bearer {}", self.0)
    }

    /// Whether `presented` (an `Authorization` header value) carries this token. The
    /// comparison takes the same time wherever the first difference is.
    fn presented_in(&self, presented: &str) -> bool {
        let Some(given) = presented.strip_prefix("Bearer ") else {
            return false;
        };
        let (a, b) = (given.trim().as_bytes(), self.0.as_bytes());
        let mut diff = u8::from(a.len() != b.len());
        for (i, x) in b.iter().enumerate() {
            diff |= a.get(i).copied().unwrap_or(0) ^ x;
        }
        diff == 0
    }
}

/// What a request says, as far as [`access`] cares.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    /// Anything but `GET` and `HEAD`.
    pub method_changes_state: bool,
    pub host: Option<String>,
    pub origin: Option<String>,
    pub authorization: Option<String>,
}

/// Why a request is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the Host header {0:?} does not name this listener ({1}): ask for it by address")]
    Host(Option<String>, SocketAddr),
    #[error("cross-site request refused (Origin {0})")]
    CrossSite(String),
    #[error("this action needs the admin token: Authorization: Bearer TOKEN (cpe status --admin-token-file FILE)")]
    Token,
}

impl Refusal {
    /// The HTTP answer: 421, 403 or 401.
    pub fn response(&self) -> Response {
        let status = match self {
            Refusal::Host(..) => 421,
            Refusal::CrossSite(_) => 403,
            Refusal::Token => 401,
        };
        Response {
            status,
            content_type: "text/plain",
            body: format!("{self}\n"),
        }
    }
}

/// Whether a request that arrived on `local` may be served (see the module's rules).
pub fn access(local: SocketAddr, seen: &Seen, token: Option<&Token>) -> Result<(), Refusal> {
    if !host_names(seen.host.as_deref(), local) {
        return Err(Refusal::Host(seen.host.clone(), local));
    }
    if !seen.method_changes_state {
        return Ok(());
    }
    if let Some(o) = &seen.origin {
        return Err(Refusal::CrossSite(o.clone()));
    }
    match token {
        Some(t)
            if !seen
                .authorization
                .as_deref()
                .is_some_and(|a| t.presented_in(a)) =>
        {
            Err(Refusal::Token)
        }
        _ => Ok(()),
    }
}

/// Whether `Host` names `local`: its IP (IPv6 in brackets) or, for a loopback address,
/// `localhost`; with `local`'s port when a port is written.
fn host_names(host: Option<&str>, local: SocketAddr) -> bool {
    let Some(host) = host.map(str::trim) else {
        return false;
    };
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return false;
        };
        match after {
            "" => (inside, None),
            p => match p.strip_prefix(':') {
                Some(p) => (inside, Some(p)),
                None => return false,
            },
        }
    } else if host.matches(':').count() > 1 {
        // An IPv6 address is written in brackets in a Host header.
        return false;
    } else {
        match host.rsplit_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (host, None),
        }
    };
    if let Some(p) = port {
        if p.parse::<u16>().ok() != Some(local.port()) {
            return false;
        }
    }
    let ip = local.ip().to_canonical();
    if name.eq_ignore_ascii_case("localhost") {
        return ip.is_loopback();
    }
    // `0.0.0.0` reaches this host's loopback: what a probe configured with a wildcard
    // admin address (`host: 0.0.0.0`) sends. A page can make a browser send it, but not
    // read the answer, and a state change is still refused on its `Origin`.
    name.parse::<IpAddr>()
        .is_ok_and(|n| n.to_canonical() == ip || (n.is_unspecified() && ip.is_loopback()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> SocketAddr {
        "127.0.0.1:9630".parse().unwrap()
    }

    fn get(host: &str) -> Seen {
        Seen {
            host: Some(host.into()),
            ..Seen::default()
        }
    }

    fn post(host: &str, origin: Option<&str>, auth: Option<&str>) -> Seen {
        Seen {
            method_changes_state: true,
            host: Some(host.into()),
            origin: origin.map(Into::into),
            authorization: auth.map(Into::into),
        }
    }

    #[test]
    fn host_must_name_the_listener() {
        for ok in [
            "127.0.0.1:9630",
            "127.0.0.1",
            "localhost:9630",
            "LOCALHOST",
            "0.0.0.0:9630",
        ] {
            assert_eq!(access(local(), &get(ok), None), Ok(()), "{ok}");
        }
        for bad in [
            "evil.example:9630",
            "127.0.0.1:80",
            "127.0.0.2:9630",
            "localhost:1",
            "[::1]:9630",
            "",
            "127.0.0.1:9630:1",
        ] {
            assert!(
                matches!(access(local(), &get(bad), None), Err(Refusal::Host(..))),
                "{bad}"
            );
        }
        assert!(matches!(
            access(local(), &Seen::default(), None),
            Err(Refusal::Host(None, _))
        ));
        let v6: SocketAddr = "[::1]:9631".parse().unwrap();
        for ok in ["[::1]:9631", "[::1]", "localhost:9631"] {
            assert_eq!(access(v6, &get(ok), None), Ok(()), "{ok}");
        }
        assert!(access(v6, &get("::1:9631"), None).is_err());
        // Not loopback: `localhost` does not name it.
        let lan: SocketAddr = "10.0.0.5:9630".parse().unwrap();
        assert_eq!(access(lan, &get("10.0.0.5:9630"), None), Ok(()));
        assert!(access(lan, &get("localhost:9630"), None).is_err());
        assert!(access(lan, &get("0.0.0.0:9630"), None).is_err());
    }

    #[test]
    fn state_changes_need_no_origin_and_the_token() {
        let token = Token::new("0123456789abcdef-secret\n").unwrap();
        let right = token.header();
        let h = "127.0.0.1:9630";
        assert_eq!(
            access(local(), &post(h, None, Some(&right)), Some(&token)),
            Ok(())
        );
        for wrong in [
            None,
            Some("Bearer 0123456789abcdef-secreT"),
            Some("Bearer 0123456789abcdef-secret-and-more"),
            Some("Bearer 0123456789abcdef"),
            Some("Basic 0123456789abcdef-secret"),
            Some(""),
        ] {
            assert_eq!(
                access(local(), &post(h, None, wrong), Some(&token)),
                Err(Refusal::Token),
                "{wrong:?}"
            );
        }
        // A browser's cross-site POST: refused even with no token set.
        assert!(matches!(
            access(local(), &post(h, Some("https://evil.example"), None), None),
            Err(Refusal::CrossSite(_))
        ));
        assert_eq!(access(local(), &post(h, None, None), None), Ok(()));
        // GET needs no token.
        assert_eq!(access(local(), &get(h), Some(&token)), Ok(()));
        assert_eq!(Refusal::Token.response().status, 401);
    }

    #[test]
    fn tokens_are_checked_and_hidden() {
        assert!(Token::new("  \n").is_err());
        assert!(Token::new("short").is_err());
        assert!(Token::new("has a space inside it").is_err());
        let t = Token::new("0123456789abcdef").unwrap();
        assert_eq!(format!("{t:?}"), "Token(<hidden>)");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        std::fs::write(&p, "0123456789abcdef\n").unwrap();
        assert_eq!(Token::read(&p).unwrap(), t);
        std::fs::write(&p, "x".repeat(MAX_TOKEN_FILE as usize + 1)).unwrap();
        assert!(matches!(Token::read(&p), Err(TokenError::TooLarge { .. })));
        assert!(matches!(
            Token::read(Path::new("/dev/zero")),
            Err(TokenError::NotAFile { .. })
        ));
        assert!(matches!(
            Token::read(&dir.path().join("missing")),
            Err(TokenError::Read { .. })
        ));
    }
}
