//! `aya::Pod` for the map types: sound because each is `repr(C)`, `Copy`, and has no padding
//! bytes (the size tests in each module pin the layouts).
use crate::{
    Endpoint, LegKey, LegStats, LegValue,
    nexthop::{NextHopKey, NextHopValue},
    reflector::DataPlaneConfig,
    siphash::SipKey,
    steer::{SteerKey, SteerValue},
    turn::{ChannelKey, TurnValue},
};

unsafe impl aya::Pod for Endpoint {}
unsafe impl aya::Pod for LegKey {}
unsafe impl aya::Pod for LegValue {}
unsafe impl aya::Pod for LegStats {}
unsafe impl aya::Pod for DataPlaneConfig {}
unsafe impl aya::Pod for SipKey {}
unsafe impl aya::Pod for SteerKey {}
unsafe impl aya::Pod for SteerValue {}
unsafe impl aya::Pod for NextHopKey {}
unsafe impl aya::Pod for NextHopValue {}
unsafe impl aya::Pod for ChannelKey {}
unsafe impl aya::Pod for TurnValue {}
