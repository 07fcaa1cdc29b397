//! The connection to the Docker daemon, with a clear error when it is absent.

use std::path::Path;

use bollard::Docker;

use crate::diag::{Diagnostic, Error};

pub async fn connect() -> Result<Docker, Error> {
    let sock =
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    if let Some(path) = sock.strip_prefix("unix://") {
        if !Path::new(path).exists() {
            return Err(Diagnostic::error(format!(
                "the Docker daemon socket {path} does not exist"
            ))
            .fix("start the Docker daemon (e.g. `systemctl start docker`) or set DOCKER_HOST"));
        }
    }
    let d = Docker::connect_with_local_defaults().map_err(|e| {
        Diagnostic::error(format!("cannot connect to Docker: {e}")).fix(
            "set DOCKER_HOST to the daemon's socket, or start the daemon; `docker info` checks it",
        )
    })?;
    d.negotiate_version().await.map_err(|e| {
        Diagnostic::error(format!("the Docker daemon at {sock} does not answer: {e}"))
            .fix("start the daemon, or check that you may use its socket")
    })
}
