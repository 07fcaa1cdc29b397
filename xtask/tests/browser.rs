//! A real browser against a frontend service: Debian's `chromium`
//! (`scripts/setup.sh` installs it), headless, loads the page through NGINX
//! with its API running, and the DOM after the page's scripts must show the
//! API's answer; NGINX's access log must show the browser's API calls.
//! Needs the Docker daemon and chromium.

mod common;
mod frontend_stack;

use std::process::Command;

use common::*;

fn chromium() -> &'static str {
    for c in ["chromium", "chromium-browser", "google-chrome"] {
        if Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return c;
        }
    }
    panic!("this test needs chromium (`apt-get install -y chromium`, as scripts/setup.sh does)")
}

/// The DOM after the page's scripts ran (virtual time: the fetches finish
/// before it is dumped).
fn dom(browser: &str, url: &str) -> String {
    let profile = std::env::temp_dir().join(format!("xtask-chromium-{}", std::process::id()));
    let o = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--ignore-certificate-errors",
            "--no-first-run",
            "--virtual-time-budget=10000",
            &format!("--user-data-dir={}", profile.display()),
            "--dump-dom",
            url,
        ])
        .output()
        .expect("run chromium");
    let _ = std::fs::remove_dir_all(&profile);
    assert!(o.status.success(), "chromium failed:\n{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn the_page_shows_its_api_answer_in_a_real_browser() {
    assert!(
        docker_available(),
        "this test needs the Docker daemon (see README: setup)"
    );
    let browser = chromium();
    let c = copy("fe-browser");
    let o = xtask(&c.root, &["certs"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = xtask(
        &c.root,
        &[
            "add-service",
            "shop-web",
            "--frontend",
            "--public",
            "/shop-web/",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let s = frontend_stack::Stack::start(&c.root, "shop-web", "browser");
    let r = s.request(
        "POST",
        "/shop-web/api/items",
        Some(r#"{"name": "made by the test"}"#),
    );
    assert_eq!(r.status, 201, "{r:?}");

    for path in ["/shop-web/", "/shop-web/some/deep/link"] {
        let started = std::time::Instant::now();
        let d = dom(browser, &s.url(path));
        println!("{path}: DOM after scripts in {:.1?}", started.elapsed());
        assert!(
            d.contains(r#"<p id="status" data-state="ok">shop-web: SERVING, 1 item(s)</p>"#),
            "{path}: the API's answer is not in the DOM:\n{d}\nNGINX:\n{}",
            s.logs()
        );
        assert!(
            d.contains(r#"<li data-id="1">made by the test</li>"#),
            "{path}:\n{d}"
        );
    }
    let logs = s.logs();
    let browser_calls: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("HeadlessChrome"))
        .collect();
    for want in [
        "\"GET /shop-web/ HTTP/1.1\" 200",
        "\"GET /shop-web/some/deep/link HTTP/1.1\" 200",
        "\"GET /shop-web/app.js HTTP/1.1\" 200",
        "\"GET /shop-web/api/items HTTP/1.1\" 200",
        "\"GET /shop-web/api/healthz HTTP/1.1\" 200",
    ] {
        assert!(
            browser_calls.iter().any(|l| l.contains(want)),
            "no browser request {want} in NGINX's access log:\n{logs}"
        );
    }
}
