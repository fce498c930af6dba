//! The `healthCheck` section: protocol, path, interval (at least 10 ms), timeout, rise/fall, TLS files.
//!
//! Pure: no host access. Problems are pushed on the shared [`super::Check`].

use super::*;

/// The `healthCheck` section; what it does not write is the default.
pub(crate) fn check_health(c: &mut Check, hc: Option<&input::HealthCheckIn>) -> HealthCheck {
    let d = HealthCheck::default();
    let Some(h) = hc else {
        return d;
    };
    c.pair("healthCheck", &h.cert_file, &h.key_file);
    HealthCheck {
        protocol: h
            .protocol
            .as_ref()
            .map_or(d.protocol, |s| protocol(c, "healthCheck.protocol", s)),
        path: h
            .path
            .as_ref()
            .map_or_else(|| d.path.clone(), |s| path(c, "healthCheck.path", s)),
        interval: interval(c, "healthCheck.interval", &h.interval, d.interval),
        timeout: timeout(c, "healthCheck.timeout", &h.timeout, d.timeout),
        rise: c.count("healthCheck.rise", &h.rise, d.rise),
        fall: c.count("healthCheck.fall", &h.fall, d.fall),
        ca_file: c.path("healthCheck.caFile", &h.ca_file),
        cert_file: c.path("healthCheck.certFile", &h.cert_file),
        key_file: c.path("healthCheck.keyFile", &h.key_file),
        unauthorized: h.unauthorized.as_ref().map_or(d.unauthorized, |s| {
            unauthorized(c, "healthCheck.unauthorized", s)
        }),
    }
}

/// `https`, `http` or `tcp` (on error: the default, the problem recorded).
pub(crate) fn protocol(c: &mut Check, field: &str, s: &S<String>) -> Protocol {
    match s.value.as_str() {
        "https" => Protocol::Https,
        "http" => Protocol::Http,
        "tcp" => Protocol::Tcp,
        _ => {
            c.error(field, s, "must be https, http or tcp");
            HealthCheck::default().protocol
        }
    }
}

/// An HTTP path: starts with `/`, no whitespace or controls.
pub(crate) fn path(c: &mut Check, field: &str, s: &S<String>) -> String {
    if s.value.starts_with('/') && !s.value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return s.value.clone();
    }
    c.push(
        Problem::error(
            field,
            short(&s.raw),
            "must start with / and contain no spaces",
        )
        .at(s.pos)
        .hint("e.g. /readyz (the API server's readiness)"),
    );
    HealthCheck::default().path
}

/// The time between checks: at least [`MIN_HEALTH_INTERVAL`].
pub(crate) fn interval(
    c: &mut Check,
    field: &str,
    v: &Option<S<String>>,
    default: Duration,
) -> Duration {
    c.duration(field, v, default, MIN_HEALTH_INTERVAL)
}

/// The time one check may take: more than zero.
pub(crate) fn timeout(
    c: &mut Check,
    field: &str,
    v: &Option<S<String>>,
    default: Duration,
) -> Duration {
    c.duration(field, v, default, Duration::from_millis(1))
}

/// `alive` or `down`.
pub(crate) fn unauthorized(c: &mut Check, field: &str, s: &S<String>) -> Unauthorized {
    match s.value.as_str() {
        "alive" => Unauthorized::Alive,
        "down" => Unauthorized::Down,
        _ => {
            c.error(field, s, "must be `alive` or `down`");
            HealthCheck::default().unauthorized
        }
    }
}
