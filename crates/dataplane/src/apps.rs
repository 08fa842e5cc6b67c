//! Reference handlers: `l2fwd`-style reflect and port-to-port forward. They measure the
//! I/O path alone and check it end to end.

use crate::frames::FramePool;
use crate::port::Pkt;
use crate::stats::DropReason;
use crate::worker::{Handler, Verdict};

/// Swaps source and destination MAC and sends each packet back out of its port.
pub struct Reflect;

impl Handler for Reflect {
    fn process(&mut self, port: u16, pkts: &mut [Pkt], pool: &mut FramePool, verdicts: &mut [Verdict]) {
        for (p, v) in pkts.iter().zip(verdicts.iter_mut()) {
            if p.len < 14 {
                *v = Verdict::Drop(DropReason::Malformed);
                continue;
            }
            let eth = pool.bytes_mut(p.addr, 12);
            let (dst, src) = eth.split_at_mut(6);
            dst.swap_with_slice(src);
            *v = Verdict::Tx(port);
        }
    }
}

/// Sends everything received on port `i` out of port `peer[i]`, untouched.
pub struct Forward {
    /// Egress port per ingress port.
    pub peer: Vec<u16>,
}

impl Handler for Forward {
    fn process(&mut self, port: u16, pkts: &mut [Pkt], _pool: &mut FramePool, verdicts: &mut [Verdict]) {
        let out = self
            .peer
            .get(usize::from(port))
            .map_or(Verdict::Drop(DropReason::NoSuchPort), |&q| Verdict::Tx(q));
        for v in verdicts.iter_mut().take(pkts.len()) {
            *v = out;
        }
    }
}
