//! hutong's data plane.
//!
//! [`Config`] is the one contract between the control plane and the data plane: the control plane
//! compiles a gateway's part of the plan into it, and each engine turns it into its tables. Today
//! two engines implement it:
//! - the userspace engine ([`engine`]): the complete pipeline over batches ([`packet`] parsing and
//!   rewrites, [`fib`] routing, [`nat`] sessions, [`port`] I/O, [`trace`] for one packet);
//! - the XDP engine (`ebpf/xdp`): [`tables`] derives its map contents from a `Config`, [`xdp`]
//!   loads and attaches it and fills the maps, [`flows`] hands it the established NAT sessions
//!   the userspace engine decided, and [`neighbor`] keeps next-hop MACs resolved
//!   through the kernel's neighbor table.

pub mod bench;
pub mod buffer;
pub mod config;
pub mod counters;
pub mod engine;
pub mod fib;
pub mod flows;
pub mod host;
pub mod nat;
pub mod neighbor;
pub mod netlink;
pub mod packet;
pub mod port;
pub mod tables;
pub mod xdp;

pub use config::{
    Action, Config, ConfigError, Netmap, Nptv6, PortConfig, PortRange, Role, RouteConfig, Rule, Vrf,
};
pub use counters::Counters;
pub use engine::trace;
pub use hutong_common::{Drop, Stat};
