//! The admission edge: the HTTP router and probes, the AdmissionReview wire
//! format, serving TLS, the bounds of a TLS listener, and forwarding to the
//! leader.

pub mod authorize;
pub mod conn;
pub mod forward;
pub mod http;
pub mod review;
pub mod tls;
