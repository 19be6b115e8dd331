//! In-memory ports: frames are injected into an interface's receive queue, the engine runs over
//! them in batches, and what it sends is collected per interface.

use std::collections::VecDeque;

use crate::{
    buffer::{Packet, Verdict},
    engine::Engine,
};

/// Packets per batch, as a NIC ring would hand them over.
pub const BATCH: usize = 64;

#[derive(Debug, Default)]
pub struct MemoryPorts {
    rx: Vec<VecDeque<Vec<u8>>>,
    tx: Vec<Vec<Vec<u8>>>,
    host: Vec<(usize, Vec<u8>)>,
}

impl MemoryPorts {
    /// Ports for `ifaces` interfaces (the engine's interface indices).
    pub fn new(ifaces: usize) -> MemoryPorts {
        MemoryPorts { rx: vec![VecDeque::new(); ifaces], tx: vec![Vec::new(); ifaces], host: Vec::new() }
    }

    /// Queues a frame as received on `iface`; frames for an unknown interface are ignored.
    pub fn inject(&mut self, iface: usize, frame: &[u8]) {
        if let Some(q) = self.rx.get_mut(iface) {
            q.push_back(frame.to_vec());
        }
    }

    /// Runs the engine until every receive queue is empty; returns how many packets it processed.
    pub fn run(&mut self, engine: &mut Engine, now_ns: u64) -> usize {
        let mut done = 0;
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            for (iface, q) in self.rx.iter_mut().enumerate() {
                while batch.len() < BATCH {
                    match q.pop_front() {
                        Some(f) => batch.push(Packet::new(iface, &f)),
                        None => break,
                    }
                }
            }
            if batch.is_empty() {
                return done;
            }
            engine.process(&mut batch, now_ns);
            done += batch.len();
            for p in batch.drain(..) {
                match p.verdict {
                    Verdict::Forward { iface } | Verdict::Reply { iface, .. } => {
                        if let Some(q) = self.tx.get_mut(iface) {
                            q.push(p.frame().to_vec());
                        }
                    }
                    Verdict::ToHost => self.host.push((p.iface, p.frame().to_vec())),
                    Verdict::Drop(_) | Verdict::Pending => {}
                }
            }
        }
    }

    /// Frames sent out of `iface` since the last call.
    pub fn sent(&mut self, iface: usize) -> Vec<Vec<u8>> {
        self.tx.get_mut(iface).map(std::mem::take).unwrap_or_default()
    }

    /// Frames handed to the host stack since the last call, with their interface.
    pub fn to_host(&mut self) -> Vec<(usize, Vec<u8>)> {
        std::mem::take(&mut self.host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::examples::demo, engine::Iface};

    #[test]
    fn frames_flow_between_ports_in_batches() {
        let ifaces = vec![
            Iface { name: "legacy0".into(), mac: [2; 6] },
            Iface { name: "uplink0".into(), mac: [4; 6] },
        ];
        let mut e = Engine::new(demo(), ifaces).unwrap();
        e.set_neighbor(1, None, "198.19.0.2".parse().unwrap(), [6; 6]);
        let mut ports = MemoryPorts::new(2);
        let b = etherparse::PacketBuilder::ethernet2([8; 6], [2; 6])
            .ipv4([10, 20, 0, 10], [198, 19, 0, 2], 64)
            .udp(1, 2);
        let mut f = Vec::new();
        b.write(&mut f, &[0; 18]).unwrap();
        for _ in 0..(BATCH * 2 + 5) {
            ports.inject(0, &f);
        }
        ports.inject(7, &f); // no such interface: ignored
        assert_eq!(ports.run(&mut e, 0), BATCH * 2 + 5);
        let sent = ports.sent(1);
        assert_eq!(sent.len(), BATCH * 2 + 5);
        assert_eq!(&sent[0][26..30], &[198, 18, 20, 10]);
        assert!(ports.sent(1).is_empty());
    }
}
