//! Lossless editors: each takes a file's text and returns the new text,
//! touching only the lines it must.

pub mod cargo_toml;
pub mod cnf;
pub mod compose;
pub mod nginx;
