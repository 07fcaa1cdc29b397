//! `cargo xtask`: the monorepo's build automation. See ARCHITECTURE.md.
//! The library holds everything; `main.rs` only parses and dispatches, so
//! `cargo test --lib` runs the unit tests without a Docker daemon.

pub mod check;
pub mod cli;
pub mod cmd;
pub mod diag;
pub mod docker;
pub mod edit;
pub mod model;
pub mod plan;
#[cfg(test)]
mod proptests;
pub mod verify;

pub use diag::{Diagnostic, Error};
