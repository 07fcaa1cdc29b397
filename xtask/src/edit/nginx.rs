//! NGINX endpoint files: one `locations/<service>.conf` per public service,
//! written whole (the main `nginx.conf` is never edited). A file is ours
//! only when its first line is our marker for its service.

/// The first line of every endpoint file `add-service` writes. A file is
/// generated (sync may rewrite or delete it) only when its first line is
/// this marker for its own service; the files written before this rule
/// carry the same line, so they stay owned.
pub fn marker(service: &str) -> String {
    format!("# Public endpoint of `{service}`. Written by `cargo xtask add-service`; `cargo xtask sync` keeps it current.")
}

/// Whether `text`, the content of `location_file(service)`, is ours.
pub fn is_generated(service: &str, text: &str) -> bool {
    text.lines()
        .next()
        .is_some_and(|l| l.trim_end() == marker(service))
}

/// The endpoint file for a public service. NGINX resolves the upstream at
/// request time (variables + `resolver`), so a stopped service gives a 502
/// for its path instead of stopping NGINX from starting at all.
pub fn render_location(service: &str, path: &str, port: u16, https: bool, grpc: bool) -> String {
    let scheme = match (grpc, https) {
        (false, false) => "http",
        (false, true) => "https",
        (true, false) => "grpc",
        (true, true) => "grpcs",
    };
    let pass = if grpc { "grpc_pass" } else { "proxy_pass" };
    let var = format!("${}_upstream", service.replace('-', "_"));
    let mut s = format!(
        "{}\nlocation {path} {{\n    set {var} {service}:{port};\n    {pass} {scheme}://{var};\n",
        marker(service)
    );
    if !grpc {
        s += "    proxy_set_header Host $host;\n    proxy_set_header X-Forwarded-Proto $scheme;\n";
    }
    if https {
        let p = if grpc { "grpc" } else { "proxy" };
        s += &format!(
            "    {p}_ssl_verify on;\n    {p}_ssl_trusted_certificate /etc/nginx/certs/ca.pem;\n    {p}_ssl_name {service};\n    {p}_ssl_server_name on;\n"
        );
    }
    s += "}\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::nginx::parse_routes;

    #[test]
    fn rendered_location_parses_back() {
        let s = render_location("acc", "/acc/", 50051, true, false);
        let r = parse_routes(&s, "f").unwrap();
        assert_eq!(
            (r[0].scheme.as_str(), r[0].host.as_str(), r[0].port),
            ("https", "acc", 50051)
        );
        assert!(is_generated("acc", &s) && !is_generated("other", &s));
    }
}
