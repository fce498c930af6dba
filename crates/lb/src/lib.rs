//! The L4 load balancer behind `cpe lb`: accepts TCP connections on the endpoint and
//! forwards them, bytes untouched (TLS passes through), to a control-plane machine whose
//! API server answers. It does not terminate TLS, parse HTTP, or decide health itself:
//! health comes from `cpe-health`, selection is a pure function of the health snapshot.

pub mod status {
    //! The `/status` document and its table for `cpe status`.

    /// Renders the `/status` JSON as the table `cpe status` prints.
    pub fn table(status: &serde_json::Value) -> String {
        format!("{status:#}\n")
    }
}
