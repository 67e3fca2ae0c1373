//! The overlay host daemon and CLI as a library: the binary `overlay` is a thin layer
//! over these modules, and the integration tests drive them directly.

pub mod datapath;
pub mod netns;
