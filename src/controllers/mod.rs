//! Work a replica does on its own, beside answering requests: the leader
//! election that decides which replica decides.

pub mod lease;
