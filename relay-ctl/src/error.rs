//! The controller's one error type, in domain words. Front ends map the kind to their own
//! protocol: HTTP to a status (`api/router.rs`), ng to an `error-reason` and counter
//! (`ng/commands.rs`), the SIP relay interface to a response code (`sip/setup.rs`); no layer
//! below them knows about any of those.
use std::fmt;

/// What went wrong, as the caller should understand it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or asks for something this relay cannot be (bad call id,
    /// an address that is not the relay's, too many streams, ...). Retrying will not help.
    Invalid,
    /// No such session (or other named object).
    NotFound,
    /// The request contradicts existing state (a session of that id exists, a feature is
    /// off on this daemon).
    Conflict,
    /// Out of a resource (ports, stats slots, leg table, keys): the caller may retry later.
    Exhausted,
    /// A fault inside the daemon (a kernel map, a socket, a poisoned lock).
    Internal,
}

/// A controller error: its kind and a message for the operator or the remote party.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
        }
    }
    pub fn invalid(m: impl Into<String>) -> Error {
        Error::new(ErrorKind::Invalid, m)
    }
    pub fn not_found(m: impl Into<String>) -> Error {
        Error::new(ErrorKind::NotFound, m)
    }
    pub fn conflict(m: impl Into<String>) -> Error {
        Error::new(ErrorKind::Conflict, m)
    }
    pub fn exhausted(m: impl Into<String>) -> Error {
        Error::new(ErrorKind::Exhausted, m)
    }
    pub fn internal(m: impl Into<String>) -> Error {
        Error::new(ErrorKind::Internal, m)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
