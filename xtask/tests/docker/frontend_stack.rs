//! A minimal running stack for a frontend service, for the tests that need
//! one (`nginx_t.rs`, `browser.rs`): its API container (the generated
//! `Backend/server.py` on the Python image, named by the service so NGINX
//! resolves it) and NGINX (the repository's `nginx.conf`, `locations/`,
//! server certificate, and the page's read-only mount, as in compose) on a
//! network of their own; NGINX's 443 published on a free loopback port.
//! Everything is labelled `xtask-frontend-test` and removed on drop.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

pub const LABEL: &str = "xtask-frontend-test";

pub struct Stack {
    pub prefix: String,
    pub port: u16,
    pub nginx: String,
}

fn docker(args: &[&str]) -> String {
    let o = Command::new("docker").args(args).output().expect("docker");
    assert!(
        o.status.success(),
        "docker {args:?}:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

impl Stack {
    /// Starts `service` (added with `--frontend --public /<service>/`) of
    /// the repository at `root`, and waits until its API answers through
    /// NGINX.
    pub fn start(root: &Path, service: &str, tag: &str) -> Stack {
        let prefix = format!("xtask-fe-{tag}-{}", std::process::id());
        let label = format!("{LABEL}={prefix}");
        let py = super::common::env_image("PYTHON_IMAGE", "python:3.12-slim");
        let ng = super::common::env_image("NGINX_IMAGE", "nginx");
        let mut s = Stack {
            prefix: prefix.clone(),
            port: 0,
            nginx: format!("{prefix}-nginx"),
        };
        docker(&["network", "create", "--label", &label, &prefix]);
        let vol = |p: &str, t: &str| format!("{}:{t}:ro", root.join(p).display());
        let dir = format!("src/backend_services/{service}");
        docker(&[
            "run",
            "-d",
            "--label",
            &label,
            "--name",
            &format!("{prefix}-{service}"),
            "--network",
            &prefix,
            "--network-alias",
            service,
            "--env-file",
            root.join(&dir).join("service.env").to_str().unwrap(),
            "-e",
            "PYTHONPATH=/src",
            "-v",
            &vol("src", "/src"),
            &py,
            "python3",
            "-B",
            "-u",
            &format!("/src/backend_services/{service}/Backend/server.py"),
        ]);
        docker(&[
            "run",
            "-d",
            "--label",
            &label,
            "--name",
            &s.nginx,
            "--network",
            &prefix,
            "-p",
            "127.0.0.1::443",
            "-v",
            &vol("nginx/nginx.conf", "/etc/nginx/nginx.conf"),
            "-v",
            &vol("nginx/locations", "/etc/nginx/locations"),
            "-v",
            &vol("certs/server", "/etc/nginx/certs"),
            "-v",
            &vol(
                &format!("{dir}/Frontend"),
                &format!("/usr/share/nginx/frontends/{service}"),
            ),
            &ng,
        ]);
        let port = docker(&["port", &s.nginx, "443/tcp"]);
        let port: u16 = port
            .lines()
            .next()
            .and_then(|l| l.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no published port: {port}"));
        s.port = port;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = s.get(&format!("/{service}/api/healthz"));
            if r.status == 200 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the API never answered through NGINX: {r:?}\n{}",
                s.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        s
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    /// One request with curl (no redirects followed, the local CA not
    /// needed: the certificates are not under test here).
    pub fn request(&self, method: &str, path: &str, body: Option<&str>) -> Response {
        let mut c = Command::new("curl");
        c.args(["-sk", "-X", method, "-D", "-", "--max-time", "10"]);
        if let Some(b) = body {
            c.args(["-H", "Content-Type: application/json", "--data", b]);
        }
        let o = c.arg(self.url(path)).output().expect("curl");
        let raw = String::from_utf8_lossy(&o.stdout).into_owned();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        let status = head
            .lines()
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let headers = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Response {
            status,
            headers,
            body: body.to_string(),
        }
    }

    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, None)
    }

    /// NGINX's log (access log on stdout, errors on stderr).
    pub fn logs(&self) -> String {
        let o = Command::new("docker")
            .args(["logs", &self.nginx])
            .output()
            .expect("docker logs");
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let label = format!("label={LABEL}={}", self.prefix);
        let ids = Command::new("docker")
            .args(["ps", "-aq", "--filter", &label])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .args(["rm", "-f", "-v"])
                .args(&ids)
                .output();
        }
        let _ = Command::new("docker")
            .args(["network", "rm", &self.prefix])
            .output();
    }
}
