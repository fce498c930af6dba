//! The VIP agent behind `cpe vip`: the holder's pure state machine (inputs: time,
//! health, lease events; outputs: actions) and the driver that feeds it and performs its
//! actions through `cpe-election` and `cpe-net`.

pub mod machine;

pub mod status {
    //! The `/status` document and its table for `cpe status`.

    /// Renders the `/status` JSON as the table `cpe status` prints.
    pub fn table(status: &serde_json::Value) -> String {
        format!("{status:#}\n")
    }
}
