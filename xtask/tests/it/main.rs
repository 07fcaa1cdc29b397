//! The integration tests that need no Docker daemon, one binary grouped by
//! area (uv's layout: `tests/it/`, a module per area). `cargo test -p xtask
//! --test it -- crash::` runs one area. A few tests in `realworld_cfg` use
//! the daemon's tools (`nginx -t` in its image) and exist only with the
//! `docker` feature; the rest of the daemon-bound tests are `tests/docker/`.

#[path = "../common/mod.rs"]
mod common;
mod fsnap;

mod attacks;
mod crash;
mod export;
mod frontend;
mod hardening;
mod realworld;
mod realworld_cfg;
mod static_cmds;
mod tidy;
mod txn_safety;
