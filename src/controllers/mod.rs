//! Work a replica does on its own, beside answering requests: the leader
//! election that decides which replica decides, and the review-time audit
//! the leader runs.

pub mod audit;
pub mod grants;
pub mod lease;
