//! A stand-in Kubernetes API server for tests and `cpe demo`, and the test PKI that
//! gives it certificates. Serves `/readyz`, `/livez`, `/healthz`, `/version` and a
//! long-lived watch-like stream over TLS, and follows the real shutdown sequence. It is
//! not a Kubernetes API server: no objects, no auth.
