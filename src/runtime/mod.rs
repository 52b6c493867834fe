//! What the edges share at run time: the state decisions are made on (with
//! its lock, the overlay of admitted changes and readiness) and the metrics.

pub mod background;
pub mod metrics;
pub mod state;
pub mod usetime;
