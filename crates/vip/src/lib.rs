//! The VIP agent behind `cpe vip`: the holder's pure state machine (inputs: time,
//! health, lease events; outputs: actions) and the driver that feeds it and performs its
//! actions through `cpe-election` and `cpe-net`.
