//! The static commands, run as the real binary on a temporary copy of this
//! repository and held against the real oracles: docker compose (v2) and
//! openssl. None needs the Docker daemon (`nginx -t` is in `docker/nginx_t.rs`).

use std::process::Command;

use crate::common::*;

fn compose_config_ok(root: &std::path::Path) {
    let o = Command::new("docker")
        .current_dir(root)
        .args(["compose", "config", "-q"])
        .output()
        .expect("docker compose (v2)");
    assert!(
        o.status.success(),
        "docker compose config -q failed:\n{}",
        text(&o)
    );
}

fn openssl(args: &[&str], root: &std::path::Path) -> String {
    let o = Command::new("openssl")
        .current_dir(root)
        .args(args)
        .output()
        .expect("openssl");
    assert!(o.status.success(), "openssl {args:?}:\n{}", text(&o));
    text(&o)
}

/// The certificate oracles after adding the https service `billing`:
/// chain, SANs, key modes, the CA reused.
fn certificate_oracles(root: &std::path::Path, ca_before: &[u8]) {
    openssl(
        &[
            "verify",
            "-CAfile",
            "certs/ca/ca.pem",
            "certs/server/cert.pem",
            "certs/services/billing/cert.pem",
        ],
        root,
    );
    let sans = openssl(
        &[
            "x509",
            "-in",
            "certs/server/cert.pem",
            "-noout",
            "-ext",
            "subjectAltName",
        ],
        root,
    );
    assert!(
        sans.contains("DNS:localhost, DNS:nginx, DNS:accounts, DNS:billing, IP Address:127.0.0.1"),
        "{sans}"
    );
    let leaf = openssl(
        &[
            "x509",
            "-in",
            "certs/services/billing/cert.pem",
            "-noout",
            "-ext",
            "subjectAltName",
        ],
        root,
    );
    assert!(
        leaf.contains("DNS:billing") && !leaf.contains("DNS:accounts"),
        "{leaf}"
    );
    assert_eq!(
        std::fs::read(root.join("certs/ca/ca.pem")).unwrap(),
        ca_before,
        "the CA must be reused"
    );
    use std::os::unix::fs::PermissionsExt;
    for k in [
        "certs/ca/ca.key",
        "certs/server/key.pem",
        "certs/services/billing/key.pem",
    ] {
        let mode = std::fs::metadata(root.join(k))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{k}");
    }
}

#[test]
fn add_passes_every_oracle_and_remove_gives_back_every_byte() {
    let c = copy("roundtrip");
    ok(&xtask(&c.root, &["certs"]));
    let before = snapshot(&c.root);
    let ca_before = std::fs::read(c.root.join("certs/ca/ca.pem")).unwrap();

    let o = xtask(
        &c.root,
        &[
            "add-service",
            "billing",
            "--grpc",
            "--pg",
            "--https",
            "--public",
            "/billing/",
            "--volume",
            "billing-data:/var/lib/billing",
            "--depends-on",
            "accounts",
        ],
    );
    ok(&o);
    let out = text(&o);
    assert!(
        out.contains("added service `billing` on port 50052"),
        "{out}"
    );

    // The compose oracle, our own rules, and the listing.
    compose_config_ok(&c.root);
    ok(&xtask(&c.root, &["check"]));
    let compose = std::fs::read_to_string(c.root.join("docker-compose.yml")).unwrap();
    for want in [
        "  billing:\n",
        "    container_name: billing\n",
        "      - pg-network\n",
        "      - billing-data:/var/lib/billing\n",
        "      - postgres\n      - accounts\n",
        "  billing-data:\n",
    ] {
        assert!(compose.contains(want), "missing {want:?} in\n{compose}");
    }
    // Comments, anchors and flow sequences of the original are untouched.
    let orig = String::from_utf8(before["docker-compose.yml"].clone()).unwrap();
    for line in orig.lines() {
        assert!(compose.contains(line), "line lost: {line:?}");
    }
    let cnf = std::fs::read_to_string(c.root.join("openssl.cnf")).unwrap();
    assert!(cnf.contains("DNS.3 = accounts\nDNS.4 = billing\n"), "{cnf}");
    let loc = std::fs::read_to_string(c.root.join("nginx/locations/billing.conf")).unwrap();
    assert!(
        loc.contains("location /billing/ {")
            && loc.contains("set $billing_upstream billing:50052;")
            && loc.contains("proxy_pass https://$billing_upstream;"),
        "{loc}"
    );
    for f in ["server.py", "Dockerfile", "requirements.txt", "service.env"] {
        assert!(
            c.root
                .join("src/backend_services/billing")
                .join(f)
                .is_file(),
            "{f}"
        );
    }

    certificate_oracles(&c.root, &ca_before);

    // Adding the same service again is refused and changes nothing.
    let mid = snapshot(&c.root);
    let again = xtask(&c.root, &["add-service", "billing", "--grpc"]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert_same(&mid, &snapshot(&c.root), "second add");

    ok(&xtask(&c.root, &["remove-service", "billing"]));
    assert_same(&before, &snapshot(&c.root), "add then remove");
    assert!(!c.root.join("certs/services/billing").exists());
    let sans = openssl(
        &[
            "x509",
            "-in",
            "certs/server/cert.pem",
            "-noout",
            "-ext",
            "subjectAltName",
        ],
        &c.root,
    );
    assert!(!sans.contains("billing"), "{sans}");
    ok(&xtask(&c.root, &["check"]));
}

#[test]
fn dry_run_prints_a_diff_and_writes_nothing() {
    let c = copy("dryrun");
    let before = snapshot(&c.root);
    let o = xtask(
        &c.root,
        &[
            "add-service",
            "search",
            "--grpc",
            "--redis",
            "--public",
            "/search/",
            "--dry-run",
        ],
    );
    ok(&o);
    snap::assert_cli(
        "add_dry_run",
        &snap::hide_hashes(&snap::render(&c.root, &o)),
    );
    assert_same(&before, &snapshot(&c.root), "dry run");
    let o = xtask(&c.root, &["remove-service", "gateway", "--dry-run"]);
    ok(&o);
    snap::assert_cli(
        "remove_dry_run",
        &snap::hide_hashes(&snap::render(&c.root, &o)),
    );
    assert_same(&before, &snapshot(&c.root), "remove dry run");
}

#[test]
fn bad_input_exits_2_and_leaves_every_file_alone() {
    let c = copy("badinput");
    ok(&xtask(&c.root, &["certs"]));
    let long = "a".repeat(64);
    let cases: Vec<Vec<&str>> = vec![
        vec!["add-service", "Billing"],
        vec!["add-service", "bill ing"],
        vec!["add-service", "../x"],
        vec!["add-service", "a/b"],
        vec!["add-service", &long],
        vec!["add-service", "1billing"],
        vec!["add-service", "billing-"],
        vec!["add-service", "common"],
        vec!["add-service", "proto"],
        vec!["add-service", "postgres"],
        vec!["add-service", "redis"],
        vec!["add-service", "nginx"],
        vec!["add-service", "grpc-network"],
        vec!["add-service", "accounts"],
        vec!["add-service", "billing", "--port", "50051"],
        vec!["add-service", "billing", "--port", "8443"],
        vec!["add-service", "billing", "--port", "0"],
        vec!["add-service", "billing", "--port", "70000"],
        vec!["add-service", "billing", "--port", "http"],
        vec!["add-service", "billing", "--depends-on", "ghost"],
        vec!["add-service", "billing", "--public", "/api/"],
        vec!["add-service", "billing", "--public", "no-slash"],
        vec!["add-service", "billing", "--volume", "nopath"],
        vec!["add-service", "billing", "--entry", "app.py"],
        vec!["add-service", "billing", "--unknown-flag"],
        vec!["add-service"],
        vec!["remove-service", "ghost"],
        vec!["remove-service", "accounts"],
        vec!["frobnicate"],
    ];
    let before = snapshot(&c.root);
    let mut all = String::new();
    for args in &cases {
        let o = xtask(&c.root, args);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{args:?} should exit 2:\n{}",
            text(&o)
        );
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.starts_with("error: ") && err.len() > 20,
            "{args:?}: unclear message: {err}"
        );
        assert_same(&before, &snapshot(&c.root), &format!("{args:?}"));
        all += &format!("=== {}\n{}\n", args.join(" "), snap::render(&c.root, &o));
    }
    // The messages say what is wrong and where (a port's owner, with
    // docker-compose.yml:line; the services that still depend on one).
    snap::assert_cli("bad_input", &all);
    println!(
        "bad input: {} cases, each exit 2 with files unchanged",
        cases.len()
    );
}

#[test]
fn a_failure_halfway_leaves_the_repository_as_it_was() {
    let c = copy("rollback");
    ok(&xtask(&c.root, &["certs"]));
    let before = snapshot(&c.root);
    // Injected: the NGINX endpoint cannot be renamed into place, after the
    // service folder and the compose file were already written.
    let o = xtask_env(
        &c.root,
        &["add-service", "billing", "--https", "--public", "/billing/"],
        &[("XTASK_FAIL_AT", "rename:nginx/locations/billing.conf")],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("every file was put back"), "{}", text(&o));
    assert_same(&before, &snapshot(&c.root), "after injected failure");
    assert!(!c.root.join("src/backend_services/billing").exists());
    // Real: the endpoint's path is taken by a folder, so it cannot be written.
    std::fs::create_dir_all(c.root.join("nginx/locations/billing.conf/x")).unwrap();
    let before = snapshot(&c.root);
    let o = xtask(
        &c.root,
        &["add-service", "billing", "--public", "/billing/"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_same(&before, &snapshot(&c.root), "after real failure");
}

#[test]
fn sync_renumbers_merged_alt_names_and_check_finds_it() {
    let c = copy("sync");
    ok(&xtask(&c.root, &["certs"]));
    ok(&xtask(&c.root, &["sync", "--check"]));
    // Two branches both added DNS.4; one of them lost its endpoint file.
    let cnf = std::fs::read_to_string(c.root.join("openssl.cnf")).unwrap();
    std::fs::write(
        c.root.join("openssl.cnf"),
        cnf.replace(
            "DNS.3 = accounts\n",
            "DNS.3 = accounts\nDNS.4 = a\nDNS.4 = b\n",
        ),
    )
    .unwrap();
    std::fs::remove_file(c.root.join("nginx/locations/gateway.conf")).unwrap();
    let o = xtask(&c.root, &["check", "--format", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let ids: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"MR012") && ids.contains(&"MR014") && ids.contains(&"MR015"),
        "{ids:?}"
    );
    let dup = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "MR012")
        .unwrap();
    assert_eq!(dup["file"], "openssl.cnf");
    assert!(dup["line"].as_u64().unwrap() > 0);

    let o = xtask(&c.root, &["sync", "--check"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("-DNS.4 = b\n+DNS.5 = b"), "{}", text(&o));
    assert!(
        text(&o).contains("+++ b/nginx/locations/gateway.conf"),
        "{}",
        text(&o)
    );
    ok(&xtask(&c.root, &["sync"]));
    ok(&xtask(&c.root, &["sync", "--check"]));
    ok(&xtask(&c.root, &["certs"]));
    ok(&xtask(&c.root, &["check"]));
}

#[test]
fn check_reports_rule_file_line_and_fix() {
    let c = copy("check");
    ok(&xtask(&c.root, &["certs"]));
    let compose = std::fs::read_to_string(c.root.join("docker-compose.yml")).unwrap();
    let broken = compose
        .replace("    container_name: gateway\n", "    container_name: gw\n")
        .replace(
            "      - \"127.0.0.1:8080:8080\"\n",
            "      - \"127.0.0.1:5432:8080\"\n",
        )
        .replace(
            "      - pg-network\n      - redis-network\n",
            "      - redis-network\n",
        );
    std::fs::write(c.root.join("docker-compose.yml"), broken).unwrap();
    // MR004 (container_name `gw`), MR005 (host port 5432), MR010 (not on
    // pg-network), each with its file:line and its fix.
    let o = xtask(&c.root, &["check"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    snap::assert_cli("check_findings", &snap::render(&c.root, &o));
    // Unreadable input is exit 2, not a finding.
    std::fs::write(c.root.join("docker-compose.yml"), "services: [\n").unwrap();
    let o = xtask(&c.root, &["check"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    snap::assert_cli("check_unreadable", &snap::render(&c.root, &o));
}

#[test]
fn certs_regenerate_only_what_is_stale() {
    let c = copy("certs");
    let o = xtask(&c.root, &["certs"]);
    ok(&o);
    assert!(text(&o).contains("new local CA"), "{}", text(&o));
    let o = xtask(&c.root, &["certs"]);
    ok(&o);
    assert!(
        text(&o).contains("all certificates are current"),
        "{}",
        text(&o)
    );
    let ca = std::fs::read(c.root.join("certs/ca/ca.pem")).unwrap();
    let server = std::fs::read(c.root.join("certs/server/cert.pem")).unwrap();
    let o = xtask(&c.root, &["certs", "--force"]);
    ok(&o);
    assert_eq!(
        std::fs::read(c.root.join("certs/ca/ca.pem")).unwrap(),
        ca,
        "--force keeps the CA"
    );
    assert_ne!(
        std::fs::read(c.root.join("certs/server/cert.pem")).unwrap(),
        server
    );
    let ca_text = openssl(
        &["x509", "-in", "certs/ca/ca.pem", "-noout", "-text"],
        &c.root,
    );
    assert!(
        ca_text.contains("CA:TRUE, pathlen:0") && ca_text.contains("prime256v1"),
        "{ca_text}"
    );
    let dates = openssl(
        &[
            "x509",
            "-in",
            "certs/services/accounts/cert.pem",
            "-noout",
            "-startdate",
            "-enddate",
        ],
        &c.root,
    );
    assert!(
        !dates.contains("4096") && !dates.contains("1975"),
        "explicit validity, not rcgen's default: {dates}"
    );
    // A changed CA makes every leaf stale.
    std::fs::remove_file(c.root.join("certs/ca/ca.key")).unwrap();
    let o = xtask(&c.root, &["certs"]);
    ok(&o);
    assert!(text(&o).contains("signed by another CA"), "{}", text(&o));
    openssl(
        &[
            "verify",
            "-CAfile",
            "certs/ca/ca.pem",
            "certs/server/cert.pem",
            "certs/services/accounts/cert.pem",
        ],
        &c.root,
    );
    // Keys are ignored by git, and no key is inside any build context.
    let ig = Command::new("git")
        .current_dir(workspace())
        .args(["check-ignore", "-q", "certs/ca/ca.key"])
        .status()
        .unwrap();
    assert!(ig.success(), "certs/ must be git-ignored");
    let compose = std::fs::read_to_string(c.root.join("docker-compose.yml")).unwrap();
    assert!(
        !compose.contains("context: .\n") && !compose.contains("context: ./certs"),
        "no build context may contain certs/"
    );
}

#[test]
fn list_shows_every_service() {
    let c = copy("list");
    let o = xtask(&c.root, &["list", "--format", "json"]);
    ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let gw = v
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "gateway")
        .unwrap();
    assert_eq!(gw["public"], "/api/");
    assert_eq!(gw["depends_on"][0], "accounts");
    let acc = v
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "accounts")
        .unwrap();
    assert_eq!(acc["https"], true);
    let o = xtask(&c.root, &["list"]);
    ok(&o);
    snap::assert_cli("list", &snap::render(&c.root, &o));
}

#[test]
fn concurrent_adds_lose_no_update() {
    let c = copy("concurrent");
    ok(&xtask(&c.root, &["certs"]));
    let bin = env!("CARGO_BIN_EXE_xtask");
    let spawn = |name: &str, port: &str| {
        Command::new(bin)
            .arg("--root")
            .arg(&c.root)
            .args(["add-service", name, "--grpc", "--https", "--port", port])
            .spawn()
            .unwrap()
    };
    let (mut a, mut b) = (spawn("alpha", "50100"), spawn("beta", "50101"));
    assert!(a.wait().unwrap().success() && b.wait().unwrap().success());
    let compose = std::fs::read_to_string(c.root.join("docker-compose.yml")).unwrap();
    assert!(compose.contains("  alpha:\n") && compose.contains("  beta:\n"));
    let cnf = std::fs::read_to_string(c.root.join("openssl.cnf")).unwrap();
    assert!(cnf.contains("= alpha\n") && cnf.contains("= beta\n"));
    ok(&xtask(&c.root, &["check"]));
}

/// `add-service --grpc`: its .proto, a server that implements it and the
/// generated code, in one transaction; remove gives back every byte.
#[test]
fn grpc_service_gets_its_proto_and_generated_code_in_one_change() {
    let c = copy("grpcapi");
    ok(&xtask(&c.root, &["certs"]));
    let before = snapshot(&c.root);
    let o = xtask(&c.root, &["add-service", "user-events", "--grpc", "--pg"]);
    ok(&o);
    let out = text(&o);
    for f in [
        "src/proto/user_events/v1/user_events.proto",
        "src/common/gen/user_events/v1/user_events_pb2.py",
        "src/common/gen/user_events/v1/user_events_pb2_grpc.py",
        "src/common/gen/user_events/__init__.py",
    ] {
        assert!(
            out.contains(&format!("wrote {f}\n")),
            "{f} not written:\n{out}"
        );
    }
    let server =
        std::fs::read_to_string(c.root.join("src/backend_services/user-events/server.py")).unwrap();
    assert!(
        server.contains("class UserEvents(user_events_pb2_grpc.UserEventsServicer):"),
        "{server}"
    );
    // The generator and our rules agree the code is current, and Python imports it.
    ok(&xtask(&c.root, &["proto", "--check"]));
    ok(&xtask(&c.root, &["check"]));
    // What the incremental plan staged is what protoc makes from scratch.
    let full = Command::new("python3")
        .arg(c.root.join("scripts/gen_proto.py"))
        .arg("--root")
        .arg(&c.root)
        .args(["--check", "--full"])
        .output()
        .unwrap();
    ok(&full);
    let py = Command::new("/usr/bin/python3") // where setup.sh installs python3-grpcio
        .current_dir(c.root.join("src"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .args(["-c", "from common.gen.user_events.v1 import user_events_pb2 as p, user_events_pb2_grpc as g; print(p.DESCRIPTOR.services_by_name['UserEvents'].full_name, g.UserEventsStub)"])
        .output()
        .unwrap();
    ok(&py);
    assert!(
        text(&py).contains("user_events.v1.UserEvents"),
        "{}",
        text(&py)
    );

    ok(&xtask(&c.root, &["remove-service", "user-events"]));
    assert_same(&before, &snapshot(&c.root), "add --grpc then remove");
    assert!(
        !c.root.join("src/proto/user_events").exists()
            && !c.root.join("src/common/gen/user_events").exists()
    );

    // A Python keyword cannot be a package; a name whose proto folder exists is refused.
    let o = xtask(&c.root, &["add-service", "import", "--grpc"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("`import` is a Python keyword"),
        "{}",
        text(&o)
    );
    std::fs::create_dir_all(c.root.join("src/proto/audit")).unwrap();
    let o = xtask(&c.root, &["add-service", "audit", "--grpc"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("src/proto/audit/ already exists"),
        "{}",
        text(&o)
    );
    std::fs::remove_dir(c.root.join("src/proto/audit")).unwrap();
    assert_same(&before, &snapshot(&c.root), "refused adds");
}

/// A PATH with python3 but no protoc.
fn path_without_protoc(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("xtask-noprotoc-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    std::os::unix::fs::symlink("/usr/bin/python3", d.join("python3")).unwrap();
    d
}

#[test]
fn generated_code_stale_or_uncheckable_is_a_finding_and_proto_fixes_it() {
    let c = copy("protocheck");
    ok(&xtask(&c.root, &["certs"]));
    let pb = c.root.join("src/common/gen/accounts/v1/accounts_pb2.py");
    let mut t = std::fs::read_to_string(&pb).unwrap();
    t.push_str("# edited by hand\n");
    std::fs::write(&pb, t).unwrap();
    let o = xtask(&c.root, &["check"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("MR017 src/common/gen/accounts/v1/accounts_pb2.py: generated code is stale: differs\n  fix: run `cargo xtask proto`"), "{}", text(&o));
    let o = xtask(&c.root, &["check", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["findings"][0]["id"], "MR017");
    // proto --check passes the generator's exit code and lines through.
    let o = xtask(&c.root, &["proto", "--check"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .contains("src/common/gen/accounts/v1/accounts_pb2.py: differs"),
        "{}",
        text(&o)
    );
    ok(&xtask(&c.root, &["proto"]));
    ok(&xtask(&c.root, &["check"]));

    // No protoc: a finding that says how to install it (check), exit 2 (proto, add-service --grpc).
    let bin = path_without_protoc("check");
    let env = [("PATH", bin.to_str().unwrap())];
    let o = xtask_env(&c.root, &["check"], &env);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains(
            "MR017 src/common/gen: cannot check the generated code: cannot run `protoc --version`"
        ) && text(&o).contains("apt-get install protobuf-compiler protobuf-compiler-grpc"),
        "{}",
        text(&o)
    );
    let o = xtask_env(&c.root, &["proto"], &env);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let before = snapshot(&c.root);
    let o = xtask_env(&c.root, &["add-service", "ledger", "--grpc"], &env);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("generating the gRPC code failed")
            && text(&o).contains("protobuf-compiler"),
        "{}",
        text(&o)
    );
    assert_same(&before, &snapshot(&c.root), "add --grpc without protoc");
    let _ = std::fs::remove_dir_all(&bin);
}

/// MR018: two services given the same Postgres role fail check, naming both;
/// add-service --pg --redis gives the new one its own role, user and secrets.
#[test]
fn a_shared_data_role_fails_check_naming_both() {
    let c = copy("dlshare");
    ok(&xtask(&c.root, &["certs"]));
    ok(&xtask(
        &c.root,
        &["add-service", "billing", "--pg", "--redis"],
    ));
    let env = std::fs::read_to_string(c.root.join("secrets/billing.env")).unwrap();
    assert!(env.contains("PGPASSWORD=") && env.contains("REDIS_PASSWORD="));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(c.root.join("secrets/billing.env"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert!(
        std::fs::read_to_string(c.root.join("datalayer/postgres/10-service-roles.sh"))
            .unwrap()
            .contains("service_role billing")
    );
    ok(&xtask(&c.root, &["check"]));
    let p = c.root.join("src/backend_services/billing/service.env");
    std::fs::write(
        &p,
        std::fs::read_to_string(&p)
            .unwrap()
            .replace("PGUSER=billing", "PGUSER=accounts"),
    )
    .unwrap();
    let o = xtask(&c.root, &["check"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("MR018")
            && text(&o).contains("`accounts` and `billing` share the Postgres role `accounts`"),
        "{}",
        text(&o)
    );
    ok(&xtask(&c.root, &["remove-service", "billing"]));
    assert!(!c.root.join("secrets/billing.env").exists());
}

/// A python3 that logs each start to `<root>.log` before running
/// /usr/bin/python3 (for XTASK_PYTHON), and a cache folder for the script:
/// (cache, log, wrapper).
fn logging_python(
    root: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let cache = root.with_extension("cache");
    let log = root.with_extension("log");
    let wrapper = root.with_extension("py");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexec /usr/bin/python3 \"$@\"\n",
            log.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    (cache, log, wrapper)
}

/// Writes `content` to `p` and puts its mtime back (`touch -d`); the ctime
/// still moves.
fn write_keeping_mtime(p: &std::path::Path, content: &[u8], mtime: &str) {
    std::fs::write(p, content).unwrap();
    assert!(std::process::Command::new("touch")
        .arg("-d")
        .arg(mtime)
        .arg(p)
        .status()
        .unwrap()
        .success());
}

/// Damages a proto stamp twice (a field changed, then cut in half),
/// running `check` after each.
fn damage_stamp(stamp: &std::path::Path, check: &dyn Fn()) {
    let text_of = std::fs::read_to_string(stamp).unwrap();
    std::fs::write(
        stamp,
        text_of.replacen(
            "src/proto/accounts/v1/accounts.proto\t",
            "src/proto/accounts/v1/accounts.proto\t9",
            1,
        ),
    )
    .unwrap();
    check();
    std::fs::write(stamp, &text_of[..text_of.len() / 2]).unwrap();
    check();
}

/// The generator's own full check, cache unused.
fn full_generation_check(root: &std::path::Path) -> std::process::Output {
    Command::new("/usr/bin/python3")
        .arg(root.join("scripts/gen_proto.py"))
        .arg("--root")
        .arg(root)
        .args(["--check", "--full"])
        .env("GEN_PROTO_CACHE", "")
        .output()
        .unwrap()
}

/// The stamp that lets `check` skip gen_proto.py (plan/proto_stamp.rs):
/// trusted only while every file is as the last full check saw it. The
/// generator is run through a wrapper (XTASK_PYTHON) that logs each start.
#[test]
fn proto_stamp_skips_the_generator_only_while_nothing_changed() {
    let c = copy("protostamp");
    ok(&xtask(&c.root, &["certs"]));
    let (cache, log, wrapper) = logging_python(&c.root);
    let env = [
        ("GEN_PROTO_CACHE", cache.to_str().unwrap()),
        ("XTASK_PYTHON", wrapper.to_str().unwrap()),
    ];
    let runs = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let check = |want: i32| {
        let o = xtask_env(&c.root, &["check"], &env);
        assert_eq!(o.status.code(), Some(want), "{}", text(&o));
        text(&o)
    };
    // Files changed less than 2 s before a check are hashed, not trusted on
    // their stat data; let the copy's files age past that.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    check(0);
    assert_eq!(runs(), 1);
    let stamps: Vec<_> = std::fs::read_dir(cache.join("stamps"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(stamps.len(), 1, "one stamp, outside the repository");
    check(0);
    check(0);
    assert_eq!(runs(), 1, "nothing changed: the generator is skipped");

    // A same-size edit with the mtime put back (`touch -d`): ctime moved.
    let pb = c.root.join("src/common/gen/accounts/v1/accounts_pb2.py");
    let good = std::fs::read(&pb).unwrap();
    let mtime = std::process::Command::new("stat")
        .args(["-c", "%.9Y"])
        .arg(&pb)
        .output()
        .unwrap();
    let mtime = format!("@{}", String::from_utf8_lossy(&mtime.stdout).trim());
    let edited = String::from_utf8(good.clone())
        .unwrap()
        .replacen("DESCRIPTOR", "DESCRIPTAR", 1);
    assert_eq!(edited.len(), good.len());
    write_keeping_mtime(&pb, edited.as_bytes(), &mtime);
    assert!(check(1).contains(
        "MR017 src/common/gen/accounts/v1/accounts_pb2.py: generated code is stale: differs"
    ));
    assert_eq!(runs(), 2);
    // Put back: the script vouches again; the file is recent, so the next
    // check trusts it by its hash.
    write_keeping_mtime(&pb, &good, &mtime);
    check(0);
    check(0);
    assert_eq!(runs(), 3);

    // A new .proto, then a removed one: each is seen.
    let extra = c.root.join("src/proto/ledger/v1/ledger.proto");
    std::fs::create_dir_all(extra.parent().unwrap()).unwrap();
    std::fs::write(
        &extra,
        "syntax = \"proto3\";\npackage ledger.v1;\nmessage Entry { int64 id = 1; }\n",
    )
    .unwrap();
    assert!(check(1).contains(
        "MR017 src/common/gen/ledger/v1/ledger_pb2.py: generated code is stale: missing"
    ));
    std::fs::remove_dir_all(c.root.join("src/proto/ledger")).unwrap();
    check(0); // the stamped state again, file for file: no run needed
    let accounts = c.root.join("src/proto/accounts/v1/accounts.proto");
    let proto = std::fs::read(&accounts).unwrap();
    std::fs::remove_file(&accounts).unwrap();
    assert!(check(1).contains("MR017 src/common/gen/accounts/v1/accounts_pb2.py: generated code is stale: not generated from src/proto (remove it)"));
    std::fs::write(&accounts, &proto).unwrap();
    check(0);
    let before = runs();
    assert_eq!(before, 6);

    // A damaged stamp is ignored: the generator runs, and writes a sound one.
    damage_stamp(&stamps[0], &|| {
        check(0);
    });
    assert_eq!(runs(), before + 2);

    // add-service --grpc runs the generator once, for a plan that only adds
    // (so it makes only the new files), and they are exactly what a full
    // generation makes.
    let base = runs();
    let o = xtask_env(&c.root, &["add-service", "ledger", "--grpc"], &env);
    ok(&o);
    let log_text = std::fs::read_to_string(&log).unwrap();
    let started: Vec<&str> = log_text.lines().skip(base).collect();
    assert!(
        started.len() == 1 && started[0].contains("--plan") && !started[0].contains("--drop"),
        "{log_text}"
    );
    ok(&full_generation_check(&c.root));
    let _ = std::fs::remove_dir_all(&cache);
    let _ = std::fs::remove_file(&log);
    let _ = std::fs::remove_file(&wrapper);
}

/// MR019 reads the repository's compose file under whichever name Compose
/// found it (here `compose.yaml`), not only `docker-compose.yml`.
#[test]
fn a_literal_password_in_compose_yaml_is_a_finding() {
    let c = copy("mr019yaml");
    ok(&xtask(&c.root, &["certs"]));
    let yaml = std::fs::read_to_string(c.root.join("docker-compose.yml")).unwrap();
    std::fs::remove_file(c.root.join("docker-compose.yml")).unwrap();
    let yaml = yaml.replacen(
        "      POSTGRES_USER: app\n",
        "      POSTGRES_USER: app\n      POSTGRES_PASSWORD: hunter2-literal\n",
        1,
    );
    let line = yaml
        .lines()
        .position(|l| l.contains("POSTGRES_PASSWORD"))
        .unwrap()
        + 1;
    std::fs::write(c.root.join("compose.yaml"), yaml).unwrap();
    compose_config_ok(&c.root);
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .current_dir(&c.root)
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "git {args:?}: {}", text(&o));
    };
    git(&["init", "-q"]);
    git(&["add", "-A"]);
    let o = xtask(&c.root, &["check"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("compose.yaml:{line}"))
            && text(&o).contains("MR019")
            && text(&o).contains("`POSTGRES_PASSWORD` is set to a literal value"),
        "{}",
        text(&o)
    );
}

/// A service this tool does not manage may build from `../` (Compose
/// accepts it): add-service and remove-service work around it, and only
/// the managed services' contexts must be inside the repository.
#[test]
fn an_unmanaged_service_building_from_outside_is_left_alone() {
    let c = copy("ctxout");
    ok(&xtask(&c.root, &["certs"]));
    let p = c.root.join("docker-compose.yml");
    let tool = "  tool:\n    build:\n      context: ../\n      dockerfile: tool/Dockerfile\n    container_name: tool\n    profiles: [tools]\n";
    let before = std::fs::read_to_string(&p).unwrap().replacen(
        "\nservices:\n",
        &format!("\nservices:\n{tool}"),
        1,
    );
    std::fs::write(&p, &before).unwrap();
    compose_config_ok(&c.root);
    let o = xtask(
        &c.root,
        &["add-service", "payments", "--public", "/payments"],
    );
    ok(&o);
    assert!(
        text(&o).contains("--public `/payments` taken as `/payments/`"),
        "{}",
        text(&o)
    );
    let after = std::fs::read_to_string(&p).unwrap();
    assert!(after.contains(tool), "the other service is kept as written");
    assert!(
        after.contains("monorepo.public-path: \"/payments/\""),
        "{after}"
    );
    compose_config_ok(&c.root);
    let o = xtask(&c.root, &["check"]);
    assert!(!text(&o).contains("MR016"), "{}", text(&o));
    ok(&xtask(&c.root, &["remove-service", "payments"]));
    assert_eq!(std::fs::read_to_string(&p).unwrap(), before);
    // A managed service's context must still be inside the repository.
    std::fs::write(
        &p,
        before.replacen("context: ./src\n", "context: ../src\n", 1),
    )
    .unwrap();
    let o = xtask(&c.root, &["add-service", "billing"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("leaves the repository"), "{}", text(&o));
}

/// `--public` that is not a path at all is still refused, not normalised.
#[test]
fn a_public_path_is_normalised_only_when_it_lacks_its_slash() {
    let c = copy("pubslash");
    ok(&xtask(&c.root, &["certs"]));
    for bad in ["payments", "/pay/../x", "/a b"] {
        let o = xtask(&c.root, &["add-service", "payments", "--public", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", text(&o));
        assert!(text(&o).contains("--public:"), "{bad}: {}", text(&o));
        assert!(!text(&o).contains("taken as"), "{bad}: {}", text(&o));
    }
}

/// `check --format json` on a repository it cannot read prints the error
/// as JSON on stdout (a reader of the JSON needs no second parser) and
/// exits 2.
#[test]
fn check_json_prints_a_read_error_as_json() {
    let c = copy("jsonerr");
    let p = c.root.join("docker-compose.yml");
    let yaml = std::fs::read_to_string(&p).unwrap();
    let broken = yaml.replacen("services:\n", "services:\n  bad: [unclosed\n", 1);
    let line = broken
        .lines()
        .position(|l| l.contains("[unclosed"))
        .unwrap()
        + 1;
    std::fs::write(&p, broken).unwrap();
    let o = xtask(&c.root, &["check", "--format", "json"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", text(&o)));
    assert_eq!(v["clean"], false);
    assert_eq!(v["findings"], serde_json::json!([]));
    let e = &v["error"];
    assert_eq!(e["severity"], "error", "{v}");
    assert_eq!(e["file"], "docker-compose.yml", "{v}");
    assert!(e["line"].as_u64().unwrap() >= line as u64, "{v}");
    assert!(e["fix"].is_string(), "{v}");
    // The human form is unchanged: `error: file:line: …` on stderr.
    let o = xtask(&c.root, &["check"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).starts_with("error: docker-compose.yml:"));
}

/// `docker compose config --format json`'s model of the copy at `root`.
fn compose_model(root: &std::path::Path) -> serde_json::Value {
    let o = Command::new("docker")
        .current_dir(root)
        .args(["compose", "config", "--format", "json"])
        .output()
        .expect("docker compose (v2)");
    assert!(o.status.success(), "docker compose config:\n{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// (file line, message) of every MR020 finding of `check --format json`.
fn all_interfaces_findings(root: &std::path::Path) -> Vec<(u64, String)> {
    let o = xtask(root, &["check", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["id"] == "MR020")
        .map(|f| {
            (
                f["line"].as_u64().unwrap(),
                format!("{} {}", f["message"], f["fix"]),
            )
        })
        .collect()
}

#[test]
fn the_example_publishes_only_nginx_on_all_interfaces() {
    // Docker Compose's own model of the example is the oracle.
    let c = copy("loopback");
    set_up(&c.root);
    let model = compose_model(&c.root);
    for (svc, host_ip) in [
        ("postgres", "127.0.0.1"),
        ("redis", "127.0.0.1"),
        ("accounts", "127.0.0.1"),
        ("gateway", "127.0.0.1"),
        ("nginx", ""),
    ] {
        let ports = model["services"][svc]["ports"].as_array().unwrap();
        assert!(!ports.is_empty(), "{svc}");
        for p in ports {
            assert_eq!(p["host_ip"].as_str().unwrap_or(""), host_ip, "{svc}: {p}");
        }
    }
    ok(&xtask(&c.root, &["check"]));
    // A new service is bound to loopback too, and check stays clean.
    ok(&xtask(&c.root, &["add-service", "ledger", "--pg"]));
    let model = compose_model(&c.root);
    assert_eq!(
        model["services"]["ledger"]["ports"][0]["host_ip"], "127.0.0.1",
        "{}",
        model["services"]["ledger"]
    );
    ok(&xtask(&c.root, &["check"]));
}

/// Edits of the example that publish `gateway`'s port on every interface,
/// in each form Compose takes, with the text its finding names.
fn firing_edits(example: &str) -> Vec<(&'static str, String, &'static str)> {
    vec![
        (
            "short",
            example.replace("\"127.0.0.1:8080:8080\"", "\"8080:8080\""),
            "`127.0.0.1:8080:8080`",
        ),
        (
            "0.0.0.0",
            example.replace("\"127.0.0.1:8080:8080\"", "\"0.0.0.0:8080:8080\""),
            "port 0.0.0.0:8080:8080",
        ),
        (
            "::",
            example.replace("\"127.0.0.1:8080:8080\"", "\"[::]:8080:8080\""),
            "port [::]:8080:8080",
        ),
        (
            "container only",
            example.replace("\"127.0.0.1:8080:8080\"", "\"8080\""),
            "`127.0.0.1::8080`",
        ),
        (
            "range",
            example.replace("\"127.0.0.1:8080:8080\"", "\"9000-9001:9000-9001/udp\""),
            "`127.0.0.1:9000-9001:9000-9001/udp`",
        ),
        (
            "long",
            example.replace(
                "      - \"127.0.0.1:8080:8080\"\n",
                "      - target: 8080\n        published: \"8080\"\n",
            ),
            "`127.0.0.1:8080:8080`",
        ),
        (
            "long with host_ip ::",
            example.replace(
                "      - \"127.0.0.1:8080:8080\"\n",
                "      - target: 8080\n        published: \"8080\"\n        host_ip: \"::\"\n",
            ),
            "port [::]:8080:8080",
        ),
        (
            "label with another value",
            example
                .replace("\"127.0.0.1:8080:8080\"", "\"8080:8080\"")
                .replace(
                    "      monorepo.public-path: \"/api/\"\n",
                    "      monorepo.public-path: \"/api/\"\n      monorepo.reach: \"host\"\n",
                ),
            "`127.0.0.1:8080:8080`",
        ),
    ]
}

/// Edits that publish nothing on every interface, or only where allowed.
fn silent_edits(example: &str) -> Vec<(&'static str, String)> {
    vec![
        ("the example", example.to_string()),
        (
            "::1",
            example.replace("\"127.0.0.1:8080:8080\"", "\"[::1]:8080:8080\""),
        ),
        (
            "long with host_ip 127.0.0.1",
            example.replace(
                "      - \"127.0.0.1:8080:8080\"\n",
                "      - target: 8080\n        published: \"8080\"\n        host_ip: 127.0.0.1\n",
            ),
        ),
        (
            "nginx on every interface",
            example.replace(
                "      - \"8443:443\"",
                "      - \"0.0.0.0:8444:444\"\n      - \"8443:443\"",
            ),
        ),
        (
            "labelled",
            example
                .replace("\"127.0.0.1:8080:8080\"", "\"8080:8080\"")
                .replace(
                    "      monorepo.public-path: \"/api/\"\n",
                    "      monorepo.public-path: \"/api/\"\n      monorepo.reach: \"network\"\n",
                ),
        ),
    ]
}

#[test]
fn a_port_on_all_interfaces_is_a_finding_in_every_form() {
    let c = copy("allifs");
    set_up(&c.root);
    let path = c.root.join("docker-compose.yml");
    let example = std::fs::read_to_string(&path).unwrap();
    // Each case edits `gateway`'s port; `want` is the text its finding names.
    let fire = firing_edits(&example);
    for (case, text_, want) in &fire {
        assert_ne!(text_, &example, "{case}: the edit did not apply");
        std::fs::write(&path, text_).unwrap();
        let found = all_interfaces_findings(&c.root);
        assert_eq!(found.len(), 1, "{case}: {found:?}");
        let (line, msg) = &found[0];
        let line_text = text_.lines().nth(*line as usize - 1).unwrap();
        assert!(
            line_text.trim_start().starts_with("- "),
            "{case}: line {line} is {line_text:?}"
        );
        for w in [
            *want,
            "`gateway`",
            "all interfaces",
            "monorepo.reach: \\\"network\\\"",
        ] {
            assert!(msg.contains(w), "{case}: {w:?} not in {msg}");
        }
        // Compose agrees that the port is on every interface.
        let model = compose_model(&c.root);
        assert!(
            model["services"]["gateway"]["ports"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| matches!(p["host_ip"].as_str().unwrap_or(""), "" | "0.0.0.0" | "::")),
            "{case}: {}",
            model["services"]["gateway"]["ports"]
        );
    }
    let silent = silent_edits(&example);
    for (case, text_) in &silent {
        std::fs::write(&path, text_).unwrap();
        assert_eq!(all_interfaces_findings(&c.root), vec![], "{case}");
    }
    // The override file counts, and its label opts the service out.
    std::fs::write(&path, &example).unwrap();
    let over = c.root.join("docker-compose.override.yml");
    std::fs::write(
        &over,
        "services:\n  redis:\n    ports:\n      - \"6380:6380\"\n",
    )
    .unwrap();
    let o = xtask(&c.root, &["check"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("MR020 docker-compose.override.yml:4: service `redis`"),
        "{}",
        text(&o)
    );
    std::fs::write(
        &over,
        "services:\n  redis:\n    ports:\n      - \"6380:6380\"\n    labels:\n      monorepo.reach: network\n",
    )
    .unwrap();
    assert_eq!(all_interfaces_findings(&c.root), vec![]);
}

/// The help texts, whole: `--help` and each command's (the README's and
/// docs' commands tables are held to the list in tidy).
#[test]
fn help_texts_are_as_committed() {
    let c = copy("help");
    let top = xtask(&c.root, &["--help"]);
    ok(&top);
    let mut all = format!("=== --help\n{}\n", snap::render(&c.root, &top));
    let commands: Vec<String> = String::from_utf8_lossy(&top.stdout)
        .lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect();
    assert!(commands.len() >= 5, "{}", text(&top));
    for cmd in &commands {
        let o = xtask(&c.root, &[cmd, "--help"]);
        ok(&o);
        all += &format!("=== {cmd} --help\n{}\n", snap::render(&c.root, &o));
    }
    snap::assert_cli("help", &all);
}
