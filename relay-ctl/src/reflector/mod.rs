//! The controller's side of the stateless reflector (docs/reflector.md): configuration,
//! ticket keys and their rotation, the clock map, and ticket issuing. The daemon serves tickets
//! and the reflector's metrics through its API (`daemon/api.rs`).
pub mod config;
pub mod keys;
pub mod service;
pub mod tickets;

pub use service::ReflectorService;
pub use tickets::Refusal;

// The ticket request and answer are the HTTP API's JSON (api/types.rs).
pub use crate::api::{TicketRequest, TicketView};
