//! openssl.cnf, NGINX and Cargo.toml written the way real projects write
//! them: the real binary on a copy of this
//! repository, with `openssl req` and `nginx -t` as oracles.
//!
//! The in/out cases under `tests/edits/<case>/` (cargo-edit style): `in/`
//! replaces repository files, `cmd` lists the commands (one per line, an
//! optional `=> <exit code>` at the end), `out/` holds every file that must
//! come out byte for byte. Each case also runs with CRLF line endings
//! (in/ and out/ converted) unless it has a `lf-only` file.
//! `XTASK_SNAPSHOT=overwrite` rewrites `out/` from what the commands produced.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

fn edits() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/edits")
}

fn files(dir: &Path) -> Vec<String> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

fn crlf(b: &[u8]) -> Vec<u8> {
    String::from_utf8(b.to_vec())
        .unwrap()
        .replace("\r\n", "\n")
        .replace('\n', "\r\n")
        .into_bytes()
}

fn run_case(case: &Path, as_crlf: bool) {
    let name = case.file_name().unwrap().to_string_lossy().into_owned();
    let tag = format!("edit-{name}-{}", if as_crlf { "crlf" } else { "lf" });
    let c = copy(&tag);
    let conv = |b: Vec<u8>| if as_crlf { crlf(&b) } else { b };
    for f in files(&case.join("in")) {
        let dst = c.root.join(&f);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        std::fs::write(dst, conv(std::fs::read(case.join("in").join(&f)).unwrap())).unwrap();
    }
    let cmds = std::fs::read_to_string(case.join("cmd")).unwrap();
    for line in cmds
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let (args, code) = match line.split_once("=>") {
            Some((a, c)) => (a, c.trim().parse::<i32>().unwrap()),
            None => (line, 0),
        };
        let args: Vec<&str> = args.split_whitespace().collect();
        let o = xtask(&c.root, &args);
        assert_eq!(
            o.status.code(),
            Some(code),
            "{tag}: `{}` exit:\n{}",
            args.join(" "),
            text(&o)
        );
    }
    let out = case.join("out");
    if crate::common::snap::overwrite() && !as_crlf {
        for f in files(&out) {
            std::fs::write(out.join(&f), std::fs::read(c.root.join(&f)).unwrap()).unwrap();
        }
        return;
    }
    for f in files(&out) {
        // Files the case did not provide keep the repository's own endings.
        let want = std::fs::read(out.join(&f)).unwrap();
        let want = if case.join("in").join(&f).exists() {
            conv(want)
        } else {
            want
        };
        let got = std::fs::read(c.root.join(&f)).unwrap_or_else(|_| b"<missing>".to_vec());
        assert!(
            got == want,
            "{tag}: {f} differs\n--- want\n{}\n--- got\n{}",
            String::from_utf8_lossy(&want),
            String::from_utf8_lossy(&got)
        );
    }
    if let Ok(gone) = std::fs::read_to_string(case.join("gone")) {
        for f in gone.lines().filter(|l| !l.is_empty()) {
            assert!(!c.root.join(f).exists(), "{tag}: {f} should be gone");
        }
    }
}

#[test]
fn edit_cases_in_and_out() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(edits())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(!cases.is_empty());
    for case in &cases {
        run_case(case, false);
        if !case.join("lf-only").exists() {
            run_case(case, true);
        }
    }
    println!("{} edit cases", cases.len());
}

fn openssl_req_ok(root: &Path, cnf: &str) {
    let o = Command::new("openssl")
        .current_dir(root)
        .args([
            "req",
            "-x509",
            "-new",
            "-nodes",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-keyout",
            "/dev/null",
            "-out",
            "/dev/null",
            "-days",
            "1",
            "-config",
            cnf,
        ])
        .output()
        .expect("openssl");
    assert!(
        o.status.success(),
        "openssl req -config {cnf}:\n{}",
        text(&o)
    );
}

/// The openssl.cnf grammar of `man 5 config` in one file: everything is
/// read, `add-service --https` lands in the section `subjectAltName`
/// points at, and remove gives back every byte, in LF and CRLF.
#[test]
fn openssl_cnf_real_grammar_round_trips() {
    let cnf = "# real-world\n.pragma dollarid:on\n.include=extra.cnf\nHOME_DIR = .\n\n[ req ]\nprompt = no\ndistinguished_name = dn\nx509_extensions = v3_ext\nreq_extensions = v3_ext\n\n[ dn ]\nCN = \"local host\"  # quoted\n\n[v3_ext]\nsubjectAltName = @san_list\nbasicConstraints = CA:FALSE\n\n[ san_list ]\nDNS = localhost\nDNS.1 = nginx\nDNS.2 = long\\\nname\nIP.1 = 127.0.0.1\nemail.1 = \"ops@example.com\"\nURI.1 = https://example.com/x # not part of it\nDNS.3 = accounts\n\n[ other ]\nk = ${extra::v}\n";
    for form in ["lf", "crlf", "lf-no-final-newline"] {
        let c = copy(&format!("cnf-grammar-{form}"));
        let text_in = match form {
            "crlf" => cnf.replace('\n', "\r\n"),
            "lf-no-final-newline" => cnf.trim_end().to_string(),
            _ => cnf.to_string(),
        };
        std::fs::write(c.root.join("openssl.cnf"), &text_in).unwrap();
        std::fs::write(c.root.join("extra.cnf"), "[ extra ]\nv = 1\n").unwrap();
        openssl_req_ok(&c.root, "openssl.cnf");
        let o = xtask(&c.root, &["check", "--format", "json"]);
        assert_ne!(o.status.code(), Some(2), "{form}: check:\n{}", text(&o));
        // A set-up checkout: certs/ and the per-checkout secrets/ exist.
        ok_certs(&c.root);
        let before = snapshot(&c.root);
        let o = xtask(&c.root, &["add-service", "billing", "--https"]);
        assert_eq!(o.status.code(), Some(0), "{form}: add:\n{}", text(&o));
        let after = std::fs::read_to_string(c.root.join("openssl.cnf")).unwrap();
        let eol = if form == "crlf" { "\r\n" } else { "\n" };
        assert!(
            after.contains(&format!("DNS.3 = accounts{eol}DNS.4 = billing")),
            "{form}:\n{after}"
        );
        openssl_req_ok(&c.root, "openssl.cnf");
        let sans = Command::new("openssl")
            .args(["x509", "-in"])
            .arg(c.root.join("certs/server/cert.pem"))
            .args(["-noout", "-ext", "subjectAltName"])
            .output()
            .unwrap();
        let sans = text(&sans);
        assert!(
            sans.contains("DNS:longname")
                && sans.contains("DNS:billing")
                && sans.contains("IP Address:127.0.0.1"),
            "{form}: {sans}"
        );
        let o = xtask(&c.root, &["remove-service", "billing"]);
        assert_eq!(o.status.code(), Some(0), "{form}: remove:\n{}", text(&o));
        assert_same(&before, &snapshot(&c.root), form);
    }
}

/// `DNS.two = x`, `dns.1 = x`: OpenSSL accepts the first (anything after
/// the dot) and refuses the second (names are case-sensitive); so do we.
#[test]
fn openssl_cnf_refuses_only_what_openssl_refuses() {
    let c = copy("cnf-refuse");
    let base = std::fs::read_to_string(c.root.join("openssl.cnf")).unwrap();
    std::fs::write(
        c.root.join("openssl.cnf"),
        base.replace("DNS.2 = nginx", "DNS.two = nginx"),
    )
    .unwrap();
    openssl_req_ok(&c.root, "openssl.cnf");
    let o = xtask(&c.root, &["check"]);
    assert_ne!(o.status.code(), Some(2), "{}", text(&o));
    for (bad, why) in [
        ("dns.2 = nginx", "dns.2"),
        ("DNS.2 = ${nowhere}", "nowhere"),
        ("[ broken", "[ broken"),
    ] {
        std::fs::write(
            c.root.join("openssl.cnf"),
            base.replace("DNS.2 = nginx", bad),
        )
        .unwrap();
        let o = xtask(&c.root, &["check"]);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(2), "{bad}: {out}");
        assert!(
            out.contains("openssl.cnf:") && out.contains(why) && out.contains("fix:"),
            "{bad}: {out}"
        );
    }
}

/// Point 8: `${host}` is a variable, not a directive missing its `;`; a
/// second server (another port) routing `/api/` through an upstream is not
/// a reason to delete gateway's own endpoint file, and MR014 follows the
/// upstream.
#[test]
fn nginx_second_server_with_upstream_keeps_the_endpoint_file() {
    let c = copy("nginx-upstream");
    let conf = std::fs::read_to_string(c.root.join("nginx/nginx.conf")).unwrap();
    let extra = "    upstream gw {\n        server gateway:8080;\n        keepalive 4;\n    }\n    map $http_upgrade $conn { default upgrade; '' close; }\n    server {\n        listen 8080;\n        # braces { in a comment \" and a quote\n        location /api/ {\n            proxy_set_header X-Forwarded-Host ${host};\n            proxy_pass http://gw;\n        }\n        location ~* \\.(js|css)$ { return 404; }\n        location ^~ /static/ { if ($request_method = POST) { return 405; } }\n    }\n";
    let conf2 = conf.replacen("    server {\n", &format!("{extra}    server {{\n"), 1);
    assert_ne!(conf, conf2);
    std::fs::write(c.root.join("nginx/nginx.conf"), &conf2).unwrap();
    // A set-up checkout: sync has no per-checkout secrets to make.
    ok_certs(&c.root);
    let before = snapshot(&c.root);
    let o = xtask(&c.root, &["sync", "--check"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = xtask(&c.root, &["sync"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_same(&before, &snapshot(&c.root), "sync");
    assert!(c.root.join("nginx/locations/gateway.conf").exists());
    // The generated endpoint replaced by the user's upstream route only.
    std::fs::remove_file(c.root.join("nginx/locations/gateway.conf")).unwrap();
    std::fs::write(
        c.root.join("nginx/locations/gateway.conf"),
        "location /api/ {\n    proxy_pass http://gw;\n}\n",
    )
    .unwrap();
    ok_certs(&c.root);
    let o = xtask(&c.root, &["check", "--format", "json"]);
    let out = text(&o);
    assert!(!out.contains("MR014"), "false positive:\n{out}");
    // A file without the marker on its first line is the user's: never deleted.
    let o = xtask(&c.root, &["sync"]);
    assert_ne!(o.status.code(), Some(2), "{}", text(&o));
    assert!(c.root.join("nginx/locations/gateway.conf").exists());
}

fn ok_certs(root: &Path) {
    let o = xtask(root, &["certs"]);
    assert!(o.status.success(), "{}", text(&o));
}

// ---------------------------------------------------------------------------
// The corpus of real projects' files (tests/realworld/, SOURCES.tsv): each
// openssl.cnf and NGINX config is read in a copy of this repository, in LF
// and CRLF; add-service then remove-service gives back every byte; the
// intermediate files pass `openssl req` / `nginx -t`; `check` reports only
// the true findings. A table per file is printed (`--nocapture`).

fn realworld() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/realworld")
}

/// (file, oracle options) of every case of one kind in SOURCES.tsv.
fn corpus(kind: &str) -> Vec<(String, String)> {
    let tsv = std::fs::read_to_string(realworld().join("SOURCES.tsv")).unwrap();
    tsv.lines()
        .skip(1)
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .filter(|c| c.len() > 7 && c[1] == kind && c[2] == "case")
        .map(|c| (c[0].to_string(), c[7].to_string()))
        .collect()
}

/// Whether `openssl req` accepts the file as this repository uses it
/// (the command in openssl.cnf's header: no -subj, no -extensions).
fn openssl_req_plain_accepts(file: &str) -> bool {
    Command::new("openssl")
        .current_dir(realworld())
        .args([
            "req",
            "-x509",
            "-new",
            "-nodes",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-keyout",
            "/dev/null",
            "-out",
            "/dev/null",
            "-config",
            file,
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
        .status
        .success()
}

/// `check --format json` refused to read openssl.cnf (exit 2): the error,
/// as JSON on stdout, names the file, a line and the fix. Returns it as
/// `openssl.cnf:line: message`.
fn refused_at_read(tag: &str, plain: bool, o: &std::process::Output) -> String {
    assert!(
        !plain,
        "{tag}: refused, but `openssl req -config` accepts it:\n{}",
        text(o)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|_| panic!("{tag}: check --format json:\n{}", text(o)));
    let e = &v["error"];
    assert!(
        e["file"] == "openssl.cnf" && e["line"].as_u64() > Some(0) && e["fix"].is_string(),
        "{tag}: {v}"
    );
    format!(
        "openssl.cnf:{}: {}",
        e["line"],
        e["message"].as_str().unwrap_or("")
    )
}

fn finding_ids(o: &std::process::Output) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|_| panic!("check --format json:\n{}", text(o)));
    let mut ids: Vec<String> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap_or("?").to_string())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// `openssl req` the way validate.sh runs it (`env=`/`extensions=` options,
/// with and without -x509), in `dir`.
fn openssl_req_like_validate(dir: &Path, cnf: &str, oracle: &str) -> Result<(), String> {
    let mut envs = vec![];
    let mut ext = vec![];
    for kv in oracle.split(';').filter(|s| !s.is_empty()) {
        if let Some(e) = kv.strip_prefix("env=") {
            envs.extend(
                e.split(',')
                    .filter_map(|p| p.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string())),
            );
        } else if let Some(x) = kv.strip_prefix("extensions=") {
            ext = vec!["-extensions".to_string(), x.to_string()];
        }
    }
    for x509 in [false, true] {
        let mut c = Command::new("openssl");
        c.current_dir(dir).arg("req");
        if x509 {
            c.arg("-x509").args(&ext);
        }
        c.args([
            "-config",
            cnf,
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "/dev/null",
            "-subj",
            "/CN=x",
            "-out",
            "/dev/null",
        ]);
        c.envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let o = c.output().expect("openssl");
        if !o.status.success() {
            return Err(text(&o));
        }
    }
    Ok(())
}

fn to_crlf(s: &str) -> String {
    s.replace("\r\n", "\n").replace('\n', "\r\n")
}

/// What `check` must report when a project's openssl.cnf replaces ours in
/// this repository (whose https service is `accounts`): the names section
/// has no `DNS = accounts` (MR012), so the certificate does not cover the
/// section (MR013) and sync has something to do or, without a names
/// section, cannot do it (MR015). Anything else is a false positive.
const CNF_TRUE_FINDINGS: &[&str] = &["MR012", "MR013", "MR015"];

#[test]
fn corpus_openssl_cnf() {
    let cases = corpus("openssl");
    assert!(cases.len() >= 6, "{cases:?}");
    let mut table = vec!["| file | form | read (check) | add-service --https | openssl req on the result | round trip |".to_string(), "|---|---|---|---|---|---|".to_string()];
    let mut false_positives = 0;
    for (file, oracle) in &cases {
        let src = std::fs::read_to_string(realworld().join(file)).unwrap();
        // The unmodified file is valid OpenSSL (validate.sh's oracle).
        openssl_req_like_validate(&realworld(), file, oracle)
            .unwrap_or_else(|e| panic!("{file} itself: {e}"));
        let plain = openssl_req_plain_accepts(file);
        for form in ["lf", "crlf"] {
            let tag = format!(
                "{}-{form}",
                Path::new(file).file_stem().unwrap().to_string_lossy()
            );
            let c = copy(&format!("rw-cnf-{tag}"));
            ok_certs(&c.root);
            let body = if form == "crlf" {
                to_crlf(&src)
            } else {
                src.clone()
            };
            std::fs::write(c.root.join("openssl.cnf"), &body).unwrap();
            let o = xtask(&c.root, &["check", "--format", "json"]);
            if o.status.code() == Some(2) {
                // Refused at read: only right when openssl req refuses it too.
                let first = refused_at_read(&tag, plain, &o);
                table.push(format!("| {file} | {form} | refused, as `openssl req -config` without `-subj` refuses it: `{}` | - | - | - |", first.replace('|', "\\|")));
                continue;
            }
            let ids = finding_ids(&o);
            let fp: Vec<&String> = ids
                .iter()
                .filter(|i| !CNF_TRUE_FINDINGS.contains(&i.as_str()))
                .collect();
            false_positives += fp.len();
            assert!(
                fp.is_empty(),
                "{tag}: false positives {fp:?}:\n{}",
                text(&o)
            );
            let cnf = xtask::model::cnf::Cnf::load(&body, Some(&c.root)).unwrap();
            let read = format!(
                "read: {} names in [ {} ]; findings {}",
                cnf.alt_names.len(),
                cnf.section,
                ids.join(", ")
            );
            let before = snapshot(&c.root);
            let o = xtask(&c.root, &["add-service", "rwtest", "--https"]);
            if cnf.insert_after().is_err() {
                // No names section in openssl.cnf: the edit is refused,
                // naming the place and the fix; nothing is written.
                let msg = text(&o);
                assert_eq!(o.status.code(), Some(2), "{tag}: {msg}");
                assert!(
                    msg.contains("openssl.cnf:1") && msg.contains("fix:"),
                    "{tag}: {msg}"
                );
                assert_same(&before, &snapshot(&c.root), &tag);
                table.push(format!("| {file} | {form} | {read} | refused (no names section; exit 2, nothing written) | - | nothing written |"));
                continue;
            }
            assert_eq!(o.status.code(), Some(0), "{tag}: add:\n{}", text(&o));
            let mid = std::fs::read_to_string(c.root.join("openssl.cnf")).unwrap();
            let added: Vec<&str> = mid
                .split_inclusive('\n')
                .filter(|l| !body.contains(*l))
                .collect();
            let eol = if form == "crlf" { "\r\n" } else { "\n" };
            assert_eq!(added.len(), 1, "{tag}: {added:?}");
            assert!(
                added[0].starts_with("DNS.") && added[0].ends_with(&format!(" = rwtest{eol}")),
                "{tag}: {added:?}"
            );
            openssl_req_like_validate(&c.root, "openssl.cnf", oracle).unwrap_or_else(|e| {
                panic!("{tag}: openssl req refuses the edited file: {e}\n{mid}")
            });
            let o = xtask(&c.root, &["remove-service", "rwtest"]);
            assert_eq!(o.status.code(), Some(0), "{tag}: remove:\n{}", text(&o));
            assert_same(&before, &snapshot(&c.root), &tag);
            table.push(format!(
                "| {file} | {form} | {read} | `{}` added | ok | every byte back |",
                added[0].trim_end()
            ));
        }
    }
    println!(
        "{}\nopenssl.cnf corpus: {} files, false positives: {false_positives}",
        table.join("\n"),
        cases.len()
    );
}

/// One NGINX case in one line-ending form, as a file of nginx/conf.d:
/// check clean, sync --check clean, add --public and remove give back every
/// byte without touching the user's file, for an API and for a page.
/// Returns the false positives and the two endpoint files add-service wrote.
#[cfg(feature = "docker")]
fn nginx_round_trip(name: &str, src: &str, rel: &str, form: &str) -> (usize, String, String) {
    let tag = format!("{}-{form}", name.trim_end_matches(".conf"));
    let c = copy(&format!("rw-nginx-{tag}"));
    ok_certs(&c.root);
    let body = if form == "crlf" {
        to_crlf(src)
    } else {
        src.to_string()
    };
    std::fs::create_dir_all(c.root.join("nginx/conf.d")).unwrap();
    std::fs::write(c.root.join(rel), &body).unwrap();
    let o = xtask(&c.root, &["check", "--format", "json"]);
    assert_ne!(
        o.status.code(),
        Some(2),
        "{tag}: check refuses it:\n{}",
        text(&o)
    );
    let ids = finding_ids(&o);
    let false_positives = ids.len();
    assert!(
        ids.is_empty(),
        "{tag}: false positives {ids:?}:\n{}",
        text(&o)
    );
    let o = xtask(&c.root, &["sync", "--check"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{tag}: sync --check:\n{}",
        text(&o)
    );
    let before = snapshot(&c.root);
    let o = xtask(&c.root, &["add-service", "rwtest", "--public", "/rwtest/"]);
    assert_eq!(o.status.code(), Some(0), "{tag}: add:\n{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(c.root.join(rel)).unwrap(),
        body,
        "{tag}: the user's config was edited"
    );
    let loc_text = std::fs::read_to_string(c.root.join("nginx/locations/rwtest.conf")).unwrap();
    let o = xtask(&c.root, &["sync", "--check"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{tag}: sync --check after add:\n{}",
        text(&o)
    );
    let o = xtask(&c.root, &["remove-service", "rwtest"]);
    assert_eq!(o.status.code(), Some(0), "{tag}: remove:\n{}", text(&o));
    assert_same(&before, &snapshot(&c.root), &tag);
    // A page too: its endpoint file and NGINX's mount, and back.
    let o = xtask(
        &c.root,
        &["add-service", "rwweb", "--frontend", "--public", "/rwweb/"],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{tag}: add --frontend:\n{}",
        text(&o)
    );
    assert_eq!(
        std::fs::read_to_string(c.root.join(rel)).unwrap(),
        body,
        "{tag}: the user's config was edited"
    );
    let web_text = std::fs::read_to_string(c.root.join("nginx/locations/rwweb.conf")).unwrap();
    let o = xtask(&c.root, &["check"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{tag}: check after add --frontend:\n{}",
        text(&o)
    );
    let o = xtask(&c.root, &["remove-service", "rwweb"]);
    assert_eq!(o.status.code(), Some(0), "{tag}: remove:\n{}", text(&o));
    assert_same(&before, &snapshot(&c.root), &format!("{tag} --frontend"));
    (false_positives, loc_text, web_text)
}

#[cfg(feature = "docker")]
fn count_locations(ds: &[xtask::model::nginx::Directive]) -> usize {
    ds.iter()
        .map(|d| {
            usize::from(d.args[0] == "location") + d.block.as_deref().map_or(0, count_locations)
        })
        .sum()
}

/// The generated endpoint placed where NGINX takes a `location`, for the
/// context the case is written for: appended to a server fragment, in a new
/// server of an http fragment, or before the closing `}` of a main file's
/// `http` block (its last block in every main-context case).
#[cfg(feature = "docker")]
fn with_endpoint(src: &str, context: &str, loc: &str) -> String {
    let server = format!("\nserver {{\n    listen 8099;\n{loc}}}\n");
    match context {
        "server" => format!("{src}\n{loc}"),
        "http" => format!("{src}{server}"),
        _ => {
            let i = src
                .rfind('}')
                .expect("a main-context file has an http block");
            format!("{}{server}{}", &src[..i], &src[i..])
        }
    }
}

/// Every NGINX config of the corpus, merged into this repository as
/// `nginx/conf.d/<file>` (LF and CRLF): read, `check` and `sync --check`
/// clean, `add-service --public` writes only its endpoint file and
/// `remove-service` gives back every byte; `nginx -t` (validate.sh's
/// harness, the local NGINX image) accepts each file with the generated
/// endpoint in it.
#[test]
#[cfg(feature = "docker")]
fn corpus_nginx() {
    assert!(
        docker_available(),
        "this test runs `nginx -t` in the local NGINX image (see README: setup)"
    );
    let cases = corpus("nginx");
    assert!(cases.len() >= 10, "{cases:?}");
    let oracle_dir =
        std::env::temp_dir().join(format!("xtask-rw-nginx-oracle-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&oracle_dir);
    std::fs::create_dir_all(oracle_dir.join("nginx")).unwrap();
    std::fs::copy(
        realworld().join("validate.sh"),
        oracle_dir.join("validate.sh"),
    )
    .unwrap();
    let mut sources =
        String::from("file\tkind\trole\trepository\tpath\tcommit\tlicence\toracle\tnotes\n");
    let mut rows = vec![];
    let mut false_positives = 0;
    for (file, oracle) in &cases {
        let src = std::fs::read_to_string(realworld().join(file)).unwrap();
        let name = Path::new(file)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches(".template")
            .to_string();
        let rel = format!("nginx/conf.d/{name}");
        let ds = xtask::model::nginx::parse(&src, &rel).unwrap_or_else(|e| panic!("{file}: {e}"));
        let mut loc_text = String::new();
        let mut web_text = String::new();
        for form in ["lf", "crlf"] {
            let (fp, loc, web) = nginx_round_trip(&name, &src, &rel, form);
            false_positives += fp;
            loc_text = loc;
            web_text = web;
        }
        // The intermediate state for nginx -t: the case with the endpoint in it.
        let context = oracle
            .split(';')
            .find_map(|kv| kv.strip_prefix("context="))
            .unwrap_or("main");
        let case = Path::new(file)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        std::fs::write(
            oracle_dir.join("nginx").join(&case),
            with_endpoint(&src, context, &format!("{loc_text}{web_text}")),
        )
        .unwrap();
        sources += &format!("nginx/{case}\tnginx\tcase\t-\t-\t-\t-\t{oracle}\t-\n");
        rows.push((file.clone(), count_locations(&ds)));
    }
    std::fs::write(oracle_dir.join("SOURCES.tsv"), sources).unwrap();
    let mut v = Command::new("bash");
    v.arg(oracle_dir.join("validate.sh"));
    let image = env_image("NGINX_IMAGE", "");
    if !image.is_empty() {
        v.env("NGINX_IMAGE", image);
    }
    let o = v.output().expect("validate.sh");
    let out = text(&o);
    let _ = std::fs::remove_dir_all(&oracle_dir);
    let mut table = vec!["| file | locations read | check | add --public / remove (LF, CRLF) | nginx -t with the endpoint |".to_string(), "|---|---|---|---|---|".to_string()];
    for (file, locs) in &rows {
        let case = Path::new(file)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let ok = out.lines().any(|l| l == format!("ok    nginx/{case}"));
        table.push(format!(
            "| {file} | {locs} | clean | every byte back | {} |",
            if ok { "ok" } else { "FAIL" }
        ));
    }
    println!(
        "{}\nNGINX corpus: {} files, false positives: {false_positives}",
        table.join("\n"),
        cases.len()
    );
    assert!(
        o.status.success(),
        "nginx -t refuses a file with the generated endpoint:\n{out}"
    );
}
