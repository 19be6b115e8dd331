//! The closed lists of drop reasons and statistics. Both engines, the metrics and the tools index
//! their counters by these, so a number means the same thing everywhere.

/// Why a packet was dropped. The discriminant is the index into the program's drop counters.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Drop {
    /// Truncated or inconsistent headers (bad IHL, total length beyond the frame, ...).
    Malformed = 0,
    /// Arrived on an interface the config does not describe.
    UnknownPort = 1,
    /// An EtherType the gateway does not forward (it is neither ARP nor IPv4).
    UnsupportedProtocol = 2,
    /// Nothing publishes this packet: no policy rule matched it (the default is deny), or the
    /// matching translate rule has no mapping for its address.
    NoTranslation = 3,
    /// No route for the (translated) destination in its VRF.
    NoRoute = 4,
    /// The next hop's MAC address is not resolved yet; resolution has been requested.
    NoNeighbor = 5,
    /// TTL would reach zero (answered with ICMP time-exceeded, rate-limited).
    TtlExpired = 6,
    /// An explicit deny rule matched.
    PolicyDeny = 7,
    /// Larger than the egress MTU with don't-fragment set (answered with ICMP
    /// fragmentation-needed / packet-too-big, rate-limited).
    TooBig = 8,
    /// A NAT host's port blocks, or the pool's free blocks, are used up (answered with ICMP
    /// administratively prohibited, rate-limited).
    PortsExhausted = 9,
    /// The session table is at its bound.
    SessionsFull = 10,
    /// Address-and-port-dependent filtering: this remote was never contacted by the mapping.
    Filtered = 11,
    /// A later fragment whose first fragment has not been seen (no reassembly here).
    FragmentUnknown = 12,
}

impl Drop {
    pub const COUNT: u32 = 13;
    pub const ALL: [Drop; Self::COUNT as usize] = [
        Drop::Malformed,
        Drop::UnknownPort,
        Drop::UnsupportedProtocol,
        Drop::NoTranslation,
        Drop::NoRoute,
        Drop::NoNeighbor,
        Drop::TtlExpired,
        Drop::PolicyDeny,
        Drop::TooBig,
        Drop::PortsExhausted,
        Drop::SessionsFull,
        Drop::Filtered,
        Drop::FragmentUnknown,
    ];

    /// The stable name used in metrics, logs and the CLI.
    pub const fn name(self) -> &'static str {
        match self {
            Drop::Malformed => "malformed",
            Drop::UnknownPort => "unknown_port",
            Drop::UnsupportedProtocol => "unsupported_protocol",
            Drop::NoTranslation => "no_translation",
            Drop::NoRoute => "no_route",
            Drop::NoNeighbor => "no_neighbor",
            Drop::TtlExpired => "ttl_expired",
            Drop::PolicyDeny => "policy_deny",
            Drop::TooBig => "too_big",
            Drop::PortsExhausted => "ports_exhausted",
            Drop::SessionsFull => "sessions_full",
            Drop::Filtered => "filtered",
            Drop::FragmentUnknown => "fragment_unknown",
        }
    }
}

/// What happened to packets that were not dropped.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stat {
    /// Every frame the program saw.
    Received = 0,
    /// Translated and redirected to the egress port.
    Forwarded = 1,
    /// Handed to the gateway's own host stack (ARP, traffic to the gateway's addresses).
    ToHost = 2,
    /// ICMP errors the gateway sent (time exceeded, fragmentation needed, packet too big).
    IcmpErrors = 3,
    /// ICMP errors not sent because of the rate limit.
    IcmpSuppressed = 4,
    /// Handed by the XDP program to the userspace slow path (AF_XDP): TTL expiry, ICMP
    /// errors, packets over the egress MTU.
    SlowPath = 5,
    /// Forwarded by the program through a flow the slow path handed it (an established NAT
    /// session); counted in `Forwarded` too.
    FlowHit = 6,
    /// Later fragments of a NAT'd datagram that arrived before its first fragment, held until
    /// it came (userspace engine; `engine::reorder`). One that waits in vain is dropped as
    /// `fragment_unknown`.
    FragmentsHeld = 7,
}

impl Stat {
    pub const COUNT: u32 = 8;
    pub const ALL: [Stat; Self::COUNT as usize] = [
        Stat::Received,
        Stat::Forwarded,
        Stat::ToHost,
        Stat::IcmpErrors,
        Stat::IcmpSuppressed,
        Stat::SlowPath,
        Stat::FlowHit,
        Stat::FragmentsHeld,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Stat::Received => "received",
            Stat::Forwarded => "forwarded",
            Stat::ToHost => "to_host",
            Stat::IcmpErrors => "icmp_errors",
            Stat::IcmpSuppressed => "icmp_suppressed",
            Stat::SlowPath => "slow_path",
            Stat::FlowHit => "flow_hit",
            Stat::FragmentsHeld => "fragments_held",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_match_their_discriminants() {
        for (i, d) in Drop::ALL.iter().enumerate() {
            assert_eq!(*d as usize, i, "{}", d.name());
        }
        for (i, s) in Stat::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i, "{}", s.name());
        }
    }
}
