//! The XDP data plane: loading the embedded object, attaching it, pinning it, and typed access
//! to its maps (`maps`; the TURN channel maps in `turn`). Pins live under one directory per instance (`pins`), so a controller
//! restart or crash leaves forwarding untouched. `steer` hands relay ports to the controller's
//! receive sockets (sk_lookup), per running daemon.
mod attach;
pub mod links;
mod load;
mod maps;
mod nexthop;
mod pins;
mod reflector;
pub mod steer;
mod turn;

pub use attach::{AttachedMode, XdpModeChoice, attach_xdp};
pub use load::{RELAY_OBJECT, load, relay_program};
pub use maps::{DataPlane, EgressMap};
pub use nexthop::NextHops;
pub use pins::{DEFAULT_ROOT, Instance};
pub use reflector::Reflector;
pub use turn::TurnMaps;

/// Default bpffs root, for clap defaults.
pub const fn pins_root() -> &'static str {
    DEFAULT_ROOT
}
