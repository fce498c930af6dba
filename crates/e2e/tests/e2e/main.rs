//! cpe's root-only end-to-end tests on one host, as one test binary: the `cpe vip` agent
//! in network namespaces with a real etcd ([`vip_agent`]), and `cpe preflight` / `cpe check`
//! against real conditions ([`preflight`]), and the release image run from its own root
//! filesystem and with podman ([`release`]). Each test builds its own namespaces (a distinct
//! subnet each), so they run side by side; the three-machine failover scenarios, which
//! measure outages, are a binary of their own (`tests/vip_e2e.rs`) and never share the
//! machine with these.
//!
//! Every test needs root and fails (never skips) without it. They run the `cpe` binary
//! found or built by [`cpe_e2e::cpe_bin`].
//!
//!     cargo test -p cpe-e2e --test e2e                 # all of them
//!     cargo test -p cpe-e2e --test e2e vip_agent       # the agent only
//!     cargo test -p cpe-e2e --test e2e preflight       # preflight and check only
//!     cargo test -p cpe-e2e --test e2e release         # the release image only

mod preflight;
mod release;
mod vip_agent;
