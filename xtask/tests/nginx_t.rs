//! Needs the Docker daemon: the NGINX endpoints that add-service writes pass
//! `nginx -t` in the NGINX image. Kept out of `static_cmds` so the static
//! tests run without a daemon; `.ci/run` runs it with the rest.
#![cfg(feature = "docker")]

mod common;

use std::process::Command;

use common::*;

#[test]
fn nginx_config_passes_nginx_t_in_the_nginx_image() {
    assert!(
        docker_available(),
        "this test needs the Docker daemon (see README: setup)"
    );
    let c = copy("nginxt");
    ok(&xtask(
        &c.root,
        &["add-service", "billing", "--https", "--public", "/billing/"],
    ));
    ok(&xtask(
        &c.root,
        &["add-service", "events", "--grpc", "--public", "/events/"],
    ));
    let image = env_image("NGINX_IMAGE", "nginx");
    let vol = |p: &str, t: &str| format!("{}:{t}:ro", c.root.join(p).display());
    let o = Command::new("docker")
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            &vol("nginx/nginx.conf", "/etc/nginx/nginx.conf"),
            "-v",
            &vol("nginx/locations", "/etc/nginx/locations"),
            "-v",
            &vol("certs/server", "/etc/nginx/certs"),
            &image,
            "nginx",
            "-t",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "nginx -t failed:\n{}", text(&o));
    assert!(text(&o).contains("test is successful"), "{}", text(&o));
}
