//! The integration tests that need a Docker daemon, one binary grouped by
//! area (uv's layout); built only with the `docker` feature
//! (`required-features` in xtask/Cargo.toml), which `.ci/run` turns on:
//! `cargo test -p xtask --features docker --test docker -- verify::`.
//!
//! When the areas were binaries of their own, cargo ran them one after
//! another, so each had the daemon to itself. They still do: every test
//! takes its area's turn first (`common::area`); tests of one area may run
//! together as they did before.

#[path = "../common/mod.rs"]
mod common;
mod frontend_stack;

mod browser;
mod cluster;
mod fidelity;
mod nginx_t;
mod realworld_corpus;
mod swarm;
mod verify;
