//! The in-memory reference connector.
//!
//! It implements the whole contract over a map in memory, passes the whole
//! conformance suite over real gRPC, and serves as the target of coordinator
//! tests and benchmarks, with fault injection ([`target::Faults`]) for them.
//! It is never what a real connector's acceptance is measured against.

pub mod backdoor;
pub mod config;
pub mod connector;
pub mod target;

pub use backdoor::MemoryBackdoor;
pub use config::MemoryConfig;
pub use connector::MemoryConnector;
pub use target::{Faults, MemoryTarget, StoredAccount};
