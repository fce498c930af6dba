//! Test support shared by the end-to-end tests: hosts as network namespaces on a bridge,
//! a real etcd cluster, and child processes that are always cleaned up. Not linked into
//! the `cpe` binary.
