//! The `hutong` binary's library: the gateway daemon, the demo, and the namespace lab both the
//! demo and the system tests build on.

pub mod addresses;
pub mod api;
pub mod bench;
pub mod demo;
pub mod ethtool;
pub mod files;
pub mod gateway;
pub mod hex;
pub mod history;
pub mod lab;
pub mod pidfile;
pub mod pins;
pub mod rule_hits;
pub mod showcase;
pub mod slow_path;
pub mod vlan_host;
