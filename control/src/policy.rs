//! Operator-written policy rules in the plan: parsing their protocol and port fields, and
//! turning a node's rules into data-plane rules for one gateway.

use hutong_config::{Action, PortRange, Rule};
use ipnet::IpNet;

use crate::{
    diagnostics::quote,
    model::{PolicyAction, PolicyRule, PortSpec},
};

/// The IP protocol number of `tcp`, `udp`, `icmp` or a number.
pub fn protocol(text: &str) -> Result<u8, String> {
    match text.to_ascii_lowercase().as_str() {
        "tcp" => Ok(6),
        "udp" => Ok(17),
        "icmp" => Ok(1),
        other => other
            .parse::<u8>()
            .map_err(|_| format!("{} is not tcp, udp, icmp or a protocol number 0-255", quote(text))),
    }
}

/// A port or an inclusive `first-last` range.
pub fn ports(spec: &PortSpec) -> Result<PortRange, String> {
    match spec {
        PortSpec::One(p) => Ok(PortRange { first: *p, last: *p }),
        PortSpec::Range(text) => {
            let bad = || format!("{} is not a port or a range like 1000-2000", quote(text));
            let (a, b) = text.split_once('-').ok_or_else(bad)?;
            let (first, last) =
                (a.trim().parse::<u16>().map_err(|_| bad())?, b.trim().parse::<u16>().map_err(|_| bad())?);
            if first > last {
                return Err(format!("port range {first}-{last} is empty"));
            }
            Ok(PortRange { first, last })
        }
    }
}

/// The data-plane rule for `r`, written at node `code`, in VRF `vrf`. The plan has been
/// validated, so the fields parse.
pub fn compile_rule(code: &str, r: &PolicyRule, vrf: u32) -> Rule {
    Rule {
        name: format!("{code}:{}", r.name),
        vrf,
        src: r.from.map(IpNet::V4),
        dst: r.to.map(IpNet::V4),
        proto: r.protocol.as_deref().and_then(|p| protocol(p).ok()),
        src_ports: r.source_ports.as_ref().and_then(|p| ports(p).ok()),
        dst_ports: r.ports.as_ref().and_then(|p| ports(p).ok()),
        action: match r.action {
            PolicyAction::Permit => Action::Permit,
            PolicyAction::Deny => Action::Deny,
            PolicyAction::Count => Action::Count,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_and_ports_parse_or_say_why_not() {
        assert_eq!(protocol("TCP"), Ok(6));
        assert_eq!(protocol("47"), Ok(47));
        assert!(protocol("gre").unwrap_err().contains("not tcp, udp, icmp"));
        assert_eq!(ports(&PortSpec::One(23)), Ok(PortRange { first: 23, last: 23 }));
        assert_eq!(ports(&PortSpec::Range("1000-2000".into())), Ok(PortRange { first: 1000, last: 2000 }));
        assert!(ports(&PortSpec::Range("2000-1000".into())).unwrap_err().contains("empty"));
        assert!(ports(&PortSpec::Range("http".into())).unwrap_err().contains("not a port"));
    }
}
