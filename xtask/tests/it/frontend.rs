//! `add-service --frontend` as the real binary on a copy of this
//! repository: the files, the compose entries (with `docker compose config`
//! as the oracle), the rules, the listing, bad input, and the way back.
//! None needs the Docker daemon (`nginx -t` and the live routes are in
//! `docker/nginx_t.rs`, the browser in `docker/browser.rs`).

use std::process::Command;

use crate::common::*;

fn ok(o: &std::process::Output) {
    assert!(
        o.status.success(),
        "exit {:?}:\n{}",
        o.status.code(),
        text(o)
    );
}

fn compose_config(root: &std::path::Path) -> serde_json::Value {
    let o = Command::new("docker")
        .current_dir(root)
        .args(["compose", "config", "--format", "json"])
        .output()
        .expect("docker compose (v2)");
    assert!(o.status.success(), "docker compose config:\n{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

const ADD: &[&str] = &[
    "add-service",
    "shop-web",
    "--frontend",
    "--public",
    "/shop-web/",
    "--port",
    "8090",
];

#[test]
fn frontend_add_passes_the_oracles_and_remove_gives_back_every_byte() {
    let c = copy("fe-roundtrip");
    set_up(&c.root);
    let before = snapshot(&c.root);
    let o = xtask(&c.root, ADD);
    ok(&o);
    let dir = c.root.join("src/backend_services/shop-web");
    for f in [
        "Dockerfile",
        "requirements.txt",
        "service.env",
        "Backend/server.py",
        "Frontend/index.html",
        "Frontend/app.js",
        "Frontend/style.css",
    ] {
        assert!(dir.join(f).is_file(), "{f}");
        assert!(
            text(&o).contains(&format!("src/backend_services/shop-web/{f}")),
            "{f}: {}",
            text(&o)
        );
    }
    assert!(!dir.join("server.py").exists());
    // The page calls its API with a relative URL under its own path.
    let js = std::fs::read_to_string(dir.join("Frontend/app.js")).unwrap();
    assert!(js.contains("new URL(\"api/\", document.baseURI)"), "{js}");

    // Compose's own reading of the result.
    let cfg = compose_config(&c.root);
    let svc = &cfg["services"]["shop-web"];
    assert_eq!(svc["container_name"], "shop-web");
    assert_eq!(svc["ports"][0]["host_ip"], "127.0.0.1");
    assert_eq!(svc["ports"][0]["published"], "8090");
    assert_eq!(svc["labels"]["monorepo.protocol"], "http");
    assert_eq!(svc["labels"]["monorepo.public-path"], "/shop-web/");
    assert_eq!(svc["labels"]["monorepo.frontend"], "Frontend");
    assert!(svc["networks"].get("web-network").is_some(), "{svc}");
    let mounts = cfg["services"]["nginx"]["volumes"].as_array().unwrap();
    let page = mounts
        .iter()
        .find(|m| m["target"] == "/usr/share/nginx/frontends/shop-web")
        .unwrap_or_else(|| panic!("no mount of the page in {mounts:?}"));
    assert_eq!(page["type"], "bind");
    assert_eq!(page["read_only"], true);
    assert_eq!(
        page["source"].as_str().unwrap(),
        dir.join("Frontend").to_str().unwrap()
    );
    // No new port on NGINX: the files come by the mount.
    assert_eq!(
        cfg["services"]["nginx"]["ports"].as_array().unwrap().len(),
        1
    );

    ok(&xtask(&c.root, &["check"]));
    ok(&xtask(&c.root, &["sync", "--check"]));
    let list = xtask(&c.root, &["list"]);
    ok(&list);
    assert!(
        text(&list).lines().any(|l| l.starts_with("shop-web")
            && l.contains("127.0.0.1:8090:8090")
            && l.contains("/shop-web/+page")),
        "{}",
        text(&list)
    );
    let json = xtask(&c.root, &["list", "--format", "json"]);
    let rows: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "shop-web")
        .unwrap();
    assert_eq!(row["frontend"], "src/backend_services/shop-web/Frontend/");

    // sync writes the endpoint again from the compose entry alone.
    let conf = c.root.join("nginx/locations/shop-web.conf");
    let written = std::fs::read(&conf).unwrap();
    std::fs::remove_file(&conf).unwrap();
    let o = xtask(&c.root, &["check"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("MR022 docker-compose.yml:"),
        "{}",
        text(&o)
    );
    ok(&xtask(&c.root, &["sync"]));
    assert_eq!(std::fs::read(&conf).unwrap(), written);

    ok(&xtask(&c.root, &["remove-service", "shop-web"]));
    assert_same(&before, &snapshot(&c.root), "add --frontend then remove");
    ok(&xtask(&c.root, &["check"]));
}

#[test]
fn check_names_a_missing_page_and_a_missing_mount() {
    let c = copy("fe-check");
    set_up(&c.root);
    ok(&xtask(&c.root, ADD));
    let index = c
        .root
        .join("src/backend_services/shop-web/Frontend/index.html");
    std::fs::remove_file(&index).unwrap();
    let compose = std::fs::read_to_string(c.root.join("docker-compose.yml")).unwrap();
    let mount =
        "      - ./src/backend_services/shop-web/Frontend:/usr/share/nginx/frontends/shop-web:ro\n";
    assert!(compose.contains(mount));
    std::fs::write(
        c.root.join("docker-compose.yml"),
        compose.replace(mount, ""),
    )
    .unwrap();
    let o = xtask(&c.root, &["check", "--format", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let found: Vec<(String, String, u64, String)> = v
        .as_array()
        .or_else(|| v["findings"].as_array())
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap_or("").to_string(),
                f["file"].as_str().unwrap_or("").to_string(),
                f["line"].as_u64().unwrap_or(0),
                f["fix"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let ids: Vec<&str> = found.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(ids, ["MR021", "MR022"], "{found:?}");
    for (_, file, line, fix) in &found {
        assert_eq!(file, "docker-compose.yml");
        assert!(*line > 0 && !fix.is_empty(), "{found:?}");
    }
    assert!(
        found[1]
            .3
            .contains("/usr/share/nginx/frontends/shop-web:ro"),
        "{found:?}"
    );
}

/// The compose file, and the same with NGINX's `volumes:` written as one
/// flow sequence.
fn nginx_volumes_inline(root: &std::path::Path) -> (String, String) {
    let compose = std::fs::read_to_string(root.join("docker-compose.yml")).unwrap();
    let head = "    volumes:\n      - ./certs/server:/etc/nginx/certs:ro\n";
    let at = compose.find(head).unwrap() + "    volumes:\n".len();
    let items: Vec<&str> = compose[at..]
        .lines()
        .take_while(|l| l.starts_with("      - "))
        .collect();
    let block: String = items.iter().map(|l| format!("{l}\n")).collect();
    let flow = items
        .iter()
        .map(|l| l.trim_start_matches("      - "))
        .collect::<Vec<_>>()
        .join(", ");
    let inline = compose.replacen(
        &format!("    volumes:\n{block}"),
        &format!("    volumes: [{flow}]\n"),
        1,
    );
    (compose, inline)
}

/// Requests add-service must refuse once `shop-web` (a page at
/// /shop-web/) exists: no --public, `/`, a path inside another's or
/// containing one, bad paths and names, an entry a page cannot have.
fn bad_requests() -> Vec<Vec<&'static str>> {
    vec![
        vec!["add-service", "web2", "--frontend"],
        vec!["add-service", "web2", "--frontend", "--public", "/"],
        vec!["add-service", "web2", "--frontend", "--public", "/api/"],
        vec![
            "add-service",
            "web2",
            "--frontend",
            "--public",
            "/api/web2/",
        ],
        vec![
            "add-service",
            "web2",
            "--frontend",
            "--public",
            "/shop-web/",
        ],
        vec![
            "add-service",
            "web2",
            "--frontend",
            "--public",
            "/shop-web/x/",
        ],
        vec!["add-service", "web2", "--frontend", "--public", "/../x/"],
        vec!["add-service", "web2", "--frontend", "--public", "web2"],
        vec!["add-service", "Web2", "--frontend", "--public", "/web2/"],
        vec![
            "add-service",
            "web2",
            "--frontend",
            "--public",
            "/web2/",
            "--entry",
            "app.py",
        ],
    ]
}

#[test]
fn frontend_bad_input_exits_2_and_writes_nothing() {
    let c = copy("fe-bad");
    set_up(&c.root);
    ok(&xtask(&c.root, ADD));
    let cases = bad_requests();
    let before = snapshot(&c.root);
    for args in &cases {
        let o = xtask(&c.root, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}:\n{}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).starts_with("error: "),
            "{args:?}"
        );
        assert_same(&before, &snapshot(&c.root), &format!("{args:?}"));
    }
    let o = xtask(&c.root, &cases[0]);
    assert!(
        text(&o).contains("--frontend needs --public"),
        "{}",
        text(&o)
    );
    let o = xtask(&c.root, &cases[5]);
    assert!(
        text(&o).contains("docker-compose.yml:") && text(&o).contains("`shop-web`"),
        "{}",
        text(&o)
    );

    // NGINX's volumes written inline: the mount cannot be added line by line.
    let (compose, inline) = nginx_volumes_inline(&c.root);
    assert_ne!(inline, compose);
    std::fs::write(c.root.join("docker-compose.yml"), &inline).unwrap();
    let before = snapshot(&c.root);
    let o = xtask(
        &c.root,
        &["add-service", "web2", "--frontend", "--public", "/web2/"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("inline"), "{}", text(&o));
    assert_same(&before, &snapshot(&c.root), "inline volumes");
    std::fs::write(c.root.join("docker-compose.yml"), &compose).unwrap();

    // A page folder that is a link out of the repository: every writer refuses.
    let page = c.root.join("src/backend_services/shop-web/Frontend");
    let outside = std::env::temp_dir().join(format!("xtask-fe-outside-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&outside);
    std::fs::rename(&page, &outside).unwrap();
    std::os::unix::fs::symlink(&outside, &page).unwrap();
    let before = snapshot(&c.root);
    for args in [
        vec!["add-service", "web2", "--frontend", "--public", "/web2/"],
        vec!["sync"],
        vec!["remove-service", "shop-web"],
    ] {
        let o = xtask(&c.root, &args);
        assert_eq!(o.status.code(), Some(2), "{args:?}:\n{}", text(&o));
        assert!(
            text(&o).contains("symlink that leaves the repository"),
            "{}",
            text(&o)
        );
        assert_same(
            &before,
            &snapshot(&c.root),
            &format!("{args:?} with a linked page"),
        );
    }
    let o = xtask(&c.root, &["check"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("MR016"), "{}", text(&o));
    let _ = std::fs::remove_dir_all(&outside);
}

#[test]
fn main_py_in_backend_and_a_hand_edited_mount() {
    let c = copy("fe-entry");
    set_up(&c.root);
    let before = snapshot(&c.root);
    ok(&xtask(
        &c.root,
        &[
            "add-service",
            "w",
            "--frontend",
            "--public",
            "/w/",
            "--entry",
            "main.py",
        ],
    ));
    assert!(c
        .root
        .join("src/backend_services/w/Backend/main.py")
        .is_file());
    let df = std::fs::read_to_string(c.root.join("src/backend_services/w/Dockerfile")).unwrap();
    assert!(
        df.contains("COPY backend_services/w/Backend /app") && df.contains("\"/app/main.py\""),
        "{df}"
    );
    ok(&xtask(&c.root, &["check"]));
    // The mount's line edited by hand: remove-service will not leave it
    // pointing at a deleted folder.
    let compose = std::fs::read_to_string(c.root.join("docker-compose.yml")).unwrap();
    let edited = compose.replace(
        "Frontend:/usr/share/nginx/frontends/w:ro",
        "Frontend:/usr/share/nginx/frontends/w",
    );
    std::fs::write(c.root.join("docker-compose.yml"), &edited).unwrap();
    let mid = snapshot(&c.root);
    let o = xtask(&c.root, &["remove-service", "w"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("`nginx` still mounts"), "{}", text(&o));
    assert_same(&mid, &snapshot(&c.root), "refused remove");
    std::fs::write(c.root.join("docker-compose.yml"), &compose).unwrap();
    ok(&xtask(&c.root, &["remove-service", "w"]));
    assert_same(
        &before,
        &snapshot(&c.root),
        "add --entry main.py then remove",
    );
}

/// The committed exports carry the example's page to NGINX: a ConfigMap
/// mounted at the bind mount's path, swarm configs per file.
#[test]
fn exports_carry_the_example_page() {
    let root = workspace();
    let cm = std::fs::read_to_string(root.join("deploy/k8s/frontend-accounts-web.configmap.yaml"))
        .unwrap();
    for f in ["index.html", "app.js", "style.css"] {
        assert!(
            cm.contains(&format!("  {f}: ")) || cm.contains(&format!("  \"{f}\": ")),
            "{f}:\n{cm}"
        );
    }
    let dep = std::fs::read_to_string(root.join("deploy/k8s/nginx.deployment.yaml")).unwrap();
    assert!(
        dep.contains("mountPath: \"/usr/share/nginx/frontends/accounts-web\""),
        "{dep}"
    );
    assert!(dep.contains("name: \"frontend-accounts-web\""), "{dep}");
    let loc =
        std::fs::read_to_string(root.join("deploy/k8s/nginx-locations.configmap.yaml")).unwrap();
    assert!(loc.contains("location ^~ /accounts-web/api/"), "{loc}");
    let stack = std::fs::read_to_string(root.join("deploy/swarm/stack.yml")).unwrap();
    for f in ["index.html", "app.js", "style.css"] {
        assert!(
            stack.contains(&format!(
                "target: \"/usr/share/nginx/frontends/accounts-web/{f}\""
            )),
            "{f}"
        );
    }
}
