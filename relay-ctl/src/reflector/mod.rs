//! The controller's side of the stateless reflector (docs/reflector.md): configuration,
//! ticket keys and their rotation, the clock map, ticket issuing, and the API/metrics glue.
pub mod config;
pub mod control;
pub mod keys;
pub mod service;
pub mod tickets;

pub use service::ReflectorService;
pub use tickets::{Refusal, TicketRequest, TicketView};
