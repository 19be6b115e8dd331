//! hutong's data plane.
//!
//! [`Config`] is the one contract between the control plane and the data plane: the control plane
//! compiles a gateway's part of the plan into it, and each engine turns it into its tables. Today
//! two engines implement it:
//! - the userspace engine ([`engine`]): the complete pipeline over batches ([`packet`] parsing and
//!   rewrites, [`fib`] routing, [`nat`] sessions, [`port`] I/O, [`trace`](mod@trace) for one packet);
//! - the XDP engine (`ebpf/xdp`), whose userspace side is [`xdp`]: its loader, its map contents
//!   derived from a `Config`, the established NAT sessions handed to it, and next-hop MACs
//!   borrowed from the kernel's neighbor tables.

pub mod buffer;
pub mod counters;
pub mod engine;
pub mod ethtool;
pub mod fib;
pub mod host;
pub mod nat;
pub mod netlink;
pub mod packet;
pub mod port;
pub mod xdp;

pub use config::{
    Action, Config, ConfigError, Netmap, Nptv6, PortConfig, PortRange, Role, RouteConfig, Rule, Vrf,
};
pub use counters::Counters;
pub use engine::trace;
pub use hutong_common::{Drop, Stat};
pub use hutong_config as config;
