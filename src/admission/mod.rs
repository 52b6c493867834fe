//! The admission edge: the HTTP router and probes, the AdmissionReview wire
//! format, serving TLS, and forwarding to the leader.

pub mod authorize;
pub mod forward;
pub mod http;
pub mod review;
pub mod tls;
