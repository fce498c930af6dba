//! The VIP testbed (placeholder while the scenarios are written).
