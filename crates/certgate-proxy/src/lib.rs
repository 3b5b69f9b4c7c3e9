//! certgate's ingress: a TLS-terminating reverse proxy that derives the client identity once per
//! connection, applies per-route identity policy, removes every identity header a client sends,
//! and forwards the verified identity in the formats each route asks for.
//!
//! Policy is a pure function (`policy`), PROXY headers are pure bytes (`proxy_protocol`); sockets
//! live in `ingress` (HTTP), `tunnel` (TCP) and `gemini`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod accept;
pub mod admin;
mod closing;
mod conn;
pub mod egress;
pub mod front;
pub mod gemini;
mod idle;
pub mod ingress;
pub mod local;
pub mod message;
mod metrics;
pub mod normal;
pub mod policy;
pub mod proxy_protocol;
mod recheck;
pub mod route;
pub mod tunnel;
pub mod upstream;

pub use gemini::{GeminiConfig, GeminiRoute, GeminiUpstream, LiveGemini};
pub use ingress::{IngressConfig, LiveConfig, serve, strip_identity_headers};
pub use message::Limits;
pub use policy::{Access, Condition, Decision, Glob, Rule};
pub use route::{Route, Upstream};
pub use tunnel::{LiveTunnel, TunnelConfig};
pub use upstream::{Pools, UpstreamClient, UpstreamKey};
