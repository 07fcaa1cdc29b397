//! Read-only views of the repository's files, with the lines they came from.

pub mod cargo_toml;
pub mod cnf;
pub mod compose;
pub mod der;
pub mod names;
pub mod nginx;
pub mod reach;
pub mod repo;
pub mod stack;
pub mod yaml;
