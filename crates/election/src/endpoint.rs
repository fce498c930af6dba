//! etcd client URLs (`http://10.0.0.11:2379`, `https://[fd00::11]:2379`,
//! `https://etcd-1.example:2379`), parsed and checked without touching the network. Only
//! the scheme, host and port matter; a path is refused rather than silently ignored.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointUrl {
    pub tls: bool,
    /// Host as written, without brackets for IPv6.
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("etcd endpoint `{url}`: {rule}")]
pub struct UrlError {
    pub url: String,
    pub rule: &'static str,
}

impl EndpointUrl {
    pub fn parse(s: &str) -> Result<Self, UrlError> {
        let err = |rule| UrlError {
            url: s.to_string(),
            rule,
        };
        let (tls, rest) = if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(err("must start with http:// or https://"));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('?') {
            return Err(err("must be scheme://host:port with no path"));
        }
        let (host, port) = if let Some(r) = rest.strip_prefix('[') {
            let (h, after) = r
                .split_once(']')
                .ok_or_else(|| err("an IPv6 address needs a closing `]`"))?;
            if h.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(err("is not a valid IPv6 address in brackets"));
            }
            (h, after.strip_prefix(':'))
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') => (h, Some(p)),
                Some(_) => return Err(err("an IPv6 address must be written in brackets")),
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(err("has no host"));
        }
        let port = match port {
            None => 2379,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(err("port must be 1-65535")),
            },
        };
        Ok(EndpointUrl {
            tls,
            host: host.to_string(),
            port,
        })
    }

    /// `host:port` for connecting (brackets for IPv6) and for the Host header.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for EndpointUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}", self.authority())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_usual_forms() {
        let u = EndpointUrl::parse("http://127.0.0.1:2379").unwrap();
        assert_eq!((u.tls, u.host.as_str(), u.port), (false, "127.0.0.1", 2379));
        let u = EndpointUrl::parse("https://[fd00::11]:12379/").unwrap();
        assert_eq!((u.tls, u.host.as_str(), u.port), (true, "fd00::11", 12379));
        assert_eq!(u.to_string(), "https://[fd00::11]:12379");
        let u = EndpointUrl::parse("https://etcd-1.example").unwrap();
        assert_eq!(u.port, 2379);
        assert_eq!(u.authority(), "etcd-1.example:2379");
    }

    #[test]
    fn refuses_with_a_rule() {
        for (s, rule) in [
            ("127.0.0.1:2379", "must start with http:// or https://"),
            ("unix:///x", "must start with http:// or https://"),
            (
                "http://a:2379/v3",
                "must be scheme://host:port with no path",
            ),
            (
                "http://fd00::1:2379",
                "an IPv6 address must be written in brackets",
            ),
            (
                "http://[fd00::1:2379",
                "an IPv6 address needs a closing `]`",
            ),
            ("http://[zz]:1", "is not a valid IPv6 address in brackets"),
            ("http://a:0", "port must be 1-65535"),
            ("http://a:99999", "port must be 1-65535"),
            ("http://:1", "has no host"),
        ] {
            assert_eq!(EndpointUrl::parse(s).unwrap_err().rule, rule, "{s}");
        }
    }
}
