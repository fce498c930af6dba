//! Is a backend up?
//!
//! Two halves, kept apart: probes (I/O: an HTTPS/HTTP `GET` of the health path or a TCP
//! connect, each bounded by a timeout, each returning a typed observation) and the pure
//! state machine that turns observations into ordered backend states (rise/fall, passive
//! signals, operator maintenance). The state machine never probes and never reads the
//! clock: `now` is an input.
