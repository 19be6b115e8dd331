//! hutong's fleet: a province's gateways driven by one plan in etcd.
//!
//! - [`keys`]: the layout, one prefix per jurisdiction;
//! - [`fragments`]: the plan as one fragment per node, and back;
//! - [`store`]: the connection (TLS with client certificates) and a consistent snapshot;
//! - [`follow`]: that snapshot kept current by a watch, for those who wait on it;
//! - [`push`]: read, replace a subtree, validate whole, compile, diff, one guarded transaction;
//! - [`waves`] and [`rollout`]: canaries first, gated on ACKs and drop counters;
//! - [`rollback`]: an earlier push's plan, pushed again;
//! - [`agent`]: the gateway side: watch, apply, ACK/NACK under a lease, static stability;
//! - [`status`]: one row per gateway.
//!
//! The single gateway (plan files, loopback API) needs none of this.

#![forbid(unsafe_code)]

pub mod agent;
pub mod follow;
pub mod fragments;
pub mod keys;
pub mod push;
pub mod records;
pub mod rollback;
pub mod rollout;
pub mod status;
pub mod store;
pub mod waves;

pub use etcd_client::Client;
pub use store::{Endpoints, TlsFiles, connect};
