//! Needs the Docker daemon: the NGINX endpoints that add-service writes pass
//! `nginx -t` in the NGINX image. Kept out of `static_cmds` so the static
//! tests run without a daemon; `.ci/run` runs it with the rest.

use std::process::Command;

use crate::common::*;

#[test]
fn nginx_config_passes_nginx_t_in_the_nginx_image() {
    let _area = area("nginx_t");
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
    ok(&xtask(
        &c.root,
        &[
            "add-service",
            "shop-web",
            "--frontend",
            "--public",
            "/shop-web/",
        ],
    ));
    ok(&xtask(
        &c.root,
        &[
            "add-service",
            "secure-web",
            "--frontend",
            "--https",
            "--public",
            "/a/secure-web/",
        ],
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

/// A frontend service's routes through a real NGINX and its real API (the
/// generated `Backend/server.py`): the page, deep links, assets and their
/// caching, a missing asset, the redirect, the API with its prefix
/// stripped, and an unknown API route answered by the API, not the page.
#[test]
fn frontend_routes_answer_through_nginx() {
    let _area = area("nginx_t");
    assert!(
        docker_available(),
        "this test needs the Docker daemon (see README: setup)"
    );
    let c = copy("fe-routes");
    ok(&xtask(&c.root, &["certs"]));
    ok(&xtask(
        &c.root,
        &[
            "add-service",
            "shop-web",
            "--frontend",
            "--public",
            "/shop-web/",
        ],
    ));
    // A link in the page's folder is not followed (it would resolve in
    // NGINX's own filesystem).
    std::os::unix::fs::symlink(
        "/etc/passwd",
        c.root
            .join("src/backend_services/shop-web/Frontend/passwd.txt"),
    )
    .unwrap();
    let s = crate::frontend_stack::Stack::start(&c.root, "shop-web", "routes");
    let r = s.get("/shop-web/passwd.txt");
    assert!(r.status == 403 || r.status == 404, "{r:?}");
    assert!(!r.body.contains("root:"), "{r:?}");
    let html = |r: &crate::frontend_stack::Response, what: &str| {
        assert_eq!(r.status, 200, "{what}: {r:?}");
        assert_eq!(r.header("content-type"), Some("text/html"), "{what}: {r:?}");
        assert_eq!(r.header("cache-control"), Some("no-cache"), "{what}: {r:?}");
        assert!(
            r.body.contains("<script type=\"module\" src=\"app.js\">"),
            "{what}: {r:?}"
        );
    };
    html(&s.get("/shop-web/"), "the page");
    html(&s.get("/shop-web/index.html"), "index.html");
    html(&s.get("/shop-web/items/42"), "a deep link");
    html(&s.get("/shop-web/a/b/c"), "a deeper link");
    let js = s.get("/shop-web/app.js");
    assert_eq!(js.status, 200, "{js:?}");
    assert_eq!(js.header("content-type"), Some("text/javascript"));
    assert_eq!(js.header("cache-control"), Some("max-age=300"));
    let css = s.get("/shop-web/style.css");
    assert_eq!(css.header("content-type"), Some("text/css"), "{css:?}");
    for missing in [
        "/shop-web/missing.js",
        "/shop-web/img/logo.png",
        "/shop-web/a/b.css",
    ] {
        let r = s.get(missing);
        assert_eq!(r.status, 404, "{missing}: {r:?}");
        assert!(
            !r.body.contains("app.js"),
            "{missing}: the page instead of a 404"
        );
    }
    let r = s.get("/shop-web");
    assert_eq!(r.status, 301, "{r:?}");
    assert_eq!(
        r.header("location"),
        Some("/shop-web/"),
        "a relative redirect keeps the host's port"
    );
    let r = s.get("/shop-web/api/healthz");
    assert_eq!(r.status, 200, "{r:?}");
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        (v["service"].as_str(), v["status"].as_str()),
        (Some("shop-web"), Some("SERVING"))
    );
    let r = s.get("/shop-web/api/no/such/route.js");
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
    assert!(
        r.body.contains("\"path\": \"/no/such/route.js\""),
        "the prefix is stripped: {r:?}"
    );
    let r = s.request("POST", "/shop-web/api/items", Some(r#"{"name": "first"}"#));
    assert_eq!(r.status, 201, "{r:?}");
    let r = s.get("/shop-web/api/items?x=1");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("\"name\": \"first\""), "{r:?}");
    let r = s.request("POST", "/shop-web/api/items", Some("{}"));
    assert_eq!(r.status, 400, "{r:?}");
    let logs = s.logs();
    assert!(
        logs.contains("\"GET /shop-web/api/items?x=1 HTTP/1.1\" 200"),
        "{logs}"
    );
}
