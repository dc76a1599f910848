//! The media relay controller as a library: the binary (`main.rs`), the tests and the demo all
//! drive the data plane through these modules.
pub mod daemon;
pub mod dataplane;
pub mod netns;
pub mod testbed;
