//! How a rewritten frame leaves, shared by every path: the types a path hands the dispatcher
//! (`Fwd`: the way out, the bytes forwarded, which path) and the choice between XDP_TX and a
//! redirect through the egress devmap.
use aya_ebpf::programs::XdpContext;
use relay_common::Counter;

use crate::fib::NextHop;

pub enum Out {
    Tx,
    Redirect(u32),
}

/// Why a rewritten frame cannot leave by the next hop's interface.
pub enum NoEgress {
    /// VLAN-tagged, but the route leaves by another interface (the tag belongs to ingress).
    VlanCrossIf,
    /// The interface is not in the egress devmap (the relay is not attached there).
    NotAttached,
}

impl NoEgress {
    /// The pass reason on a relay leg (the reflector drops instead, with its own reason).
    #[inline(always)]
    pub fn pass_reason(self) -> Counter {
        match self {
            NoEgress::VlanCrossIf => Counter::PassVlanCrossIf,
            NoEgress::NotAttached => Counter::PassEgressNotAttached,
        }
    }
}

/// How a frame for `hop` leaves: back out the ingress (XDP_TX) or redirected through the
/// devmap. Shared by the relay and reflector paths, which count the refusals differently.
#[inline(always)]
pub fn egress(ctx: &XdpContext, vlan_tagged: bool, hop: &NextHop) -> Result<Out, NoEgress> {
    if hop.ifindex == ctx.ingress_ifindex() as u32 {
        Ok(Out::Tx)
    } else if vlan_tagged {
        Err(NoEgress::VlanCrossIf)
    } else if !hop.attached {
        Err(NoEgress::NotAttached)
    } else {
        Ok(Out::Redirect(hop.ifindex))
    }
}

/// Which path produced a frame: decides the extra counter and what a failed redirect means.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Relay,
    Reflect,
    Stun,
    /// TURN ChannelData from a client to its peer (header stripped).
    TurnToPeer,
    /// UDP from a TURN peer to the client (header added).
    TurnToClient,
    /// ChannelData from a client to another allocation's client on this box.
    TurnLocal,
}

/// What a relay leg path found: a frame to send, or a TURN relayed port (`LEG_F_TURN`) whose
/// peer traffic the TURN path takes (the dispatcher hands it over: paths do not call paths).
pub enum Leg {
    Fwd(Fwd),
    Turn,
}

/// A rewritten frame and how it leaves; `payload_len` feeds `FwdBytes` once the verdict is
/// final (a failed redirect turns into a pass, or for the reflector a drop).
pub struct Fwd {
    pub out: Out,
    pub payload_len: u16,
    pub kind: Kind,
}
