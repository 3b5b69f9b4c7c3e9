//! Integration tests for certgate-pki: one binary, one module per area.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod forward_oracle;
mod identity_prop;
mod openssl_interop;
mod revocation_oracle;
mod robustness;
mod verify;
