//! A lab of real Linux hosts in network namespaces, built through netlink (never by running `ip`),
//! for the demo and the system tests.
//!
//! Everything a lab creates lives inside namespaces it owns and is named `ht<pid>x<n>-…`, so two
//! labs never collide and a stale one can be recognised by its dead pid. Dropping the lab removes
//! the namespaces, which removes their veths with them.

pub mod demo;
pub mod etcd;
pub mod fleet;
pub mod fleet_demo;
pub mod gateway;
pub mod http;
pub mod netns;
pub mod showcase;
pub mod topology;

pub use netns::Netns;
pub use topology::{DemoAddresses, DemoLab};
