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

/// Where NGINX finds the frontends' files: each service's `Frontend/` is
/// bind-mounted (read-only) at this folder plus its public path, so `root`
/// maps the request path straight onto the file (docs/frontend.md).
pub const FRONTENDS_ROOT: &str = "/usr/share/nginx/frontends";

/// The read-only bind mount of a frontend's files into NGINX's container,
/// as it is written in NGINX's `volumes:` list.
pub fn frontend_mount(service: &str, path: &str) -> String {
    format!(
        "./{}/{service}/{}:{}:ro",
        crate::model::repo::SERVICES_DIR,
        crate::plan::scaffold::FRONTEND_DIR,
        frontend_target(path)
    )
}

/// The container folder a frontend's files are mounted at.
pub fn frontend_target(path: &str) -> String {
    format!("{FRONTENDS_ROOT}{}", path.trim_end_matches('/'))
}

/// The API of a frontend service, under its public path.
pub fn api_path(path: &str) -> String {
    format!("{path}api/")
}

/// The types a frontend's files are served with: NGINX's own table is not
/// included by every `nginx.conf`, and a module script served as
/// `text/plain` is refused by browsers.
const TYPES: &[&str] = &[
    "text/html html htm",
    "text/css css",
    "text/javascript js mjs",
    "application/json json map",
    "application/manifest+json webmanifest",
    "application/wasm wasm",
    "image/svg+xml svg",
    "image/png png",
    "image/jpeg jpg jpeg",
    "image/gif gif",
    "image/webp webp",
    "image/x-icon ico",
    "font/woff woff",
    "font/woff2 woff2",
    "text/plain txt",
];

/// The endpoint file of a frontend service: `= <path without slash>`
/// redirects to `<path>`; `<path>api/` goes to the service with the prefix
/// stripped (WebSocket upgrades pass); everything else under `<path>` is a
/// file of `Frontend/`, a deep link without an extension is the page, a
/// missing file with one is a 404. The page is never cached stale
/// (`no-cache`); the other files may be for five minutes.
pub fn render_frontend(service: &str, path: &str, port: u16, https: bool) -> String {
    let var = format!("${}_upstream", service.replace('-', "_"));
    let bare = path.trim_end_matches('/');
    let api = api_path(path);
    let scheme = if https { "https" } else { "http" };
    let regex = regex_escape(&api);
    let named = format!("@{service}_page");
    let types: String = TYPES.iter().map(|t| format!("        {t};\n")).collect();
    let mut s = format!(
        "{marker}
# Its page: Frontend/, mounted read-only into NGINX at {target}.
location = {bare} {{
    # A relative Location: NGINX's port (443) is not the host's (8443).
    absolute_redirect off;
    return 301 {path};
}}
# Its API: {path}api/x reaches `{service}` as /x.
location ^~ {api} {{
    set {var} {service}:{port};
    rewrite ^{regex}(.*)$ /$1 break;
    proxy_pass {scheme}://{var};
    proxy_http_version 1.1;
    proxy_set_header Host $host;
    proxy_set_header X-Forwarded-Proto $scheme;
    proxy_set_header X-Forwarded-Prefix {api_bare};
    proxy_set_header Upgrade $http_upgrade;
    proxy_set_header Connection $http_connection;
",
        marker = marker(service),
        target = frontend_target(path),
        api_bare = api.trim_end_matches('/'),
    );
    if https {
        s += &format!(
            "    proxy_ssl_verify on;\n    proxy_ssl_trusted_certificate /etc/nginx/certs/ca.pem;\n    proxy_ssl_name {service};\n    proxy_ssl_server_name on;\n"
        );
    }
    s += &format!(
        "}}
location {path} {{
    root {FRONTENDS_ROOT};
    absolute_redirect off;
    # A link inside Frontend/ would resolve in NGINX's own filesystem.
    disable_symlinks on;
    types {{
{types}    }}
    default_type application/octet-stream;
    add_header Cache-Control \"max-age=300\";
    try_files $uri $uri/ {named};
    location = {path}index.html {{
        add_header Cache-Control \"no-cache\";
    }}
}}
location {named} {{
    if ($uri ~ \"\\.[^/]*$\") {{
        return 404;
    }}
    rewrite ^ {path}index.html last;
}}
"
    );
    s
}

/// A path (names::public_path's grammar) as a regex matching itself.
fn regex_escape(path: &str) -> String {
    path.chars()
        .flat_map(|c| if c == '.' { vec!['\\', c] } else { vec![c] })
        .collect()
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

    /// The frontend endpoint, read back by the model: its API route
    /// reaches the service (with the prefix as a `^~` location, so no
    /// regex location takes it), and the page's locations are all there.
    #[test]
    fn frontend_endpoint_parses_back() {
        let s = render_frontend("shop-web", "/shop.web/", 8090, false);
        let r = parse_routes(&s, "nginx/locations/shop-web.conf").unwrap();
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(
            (
                r[0].modifier.as_str(),
                r[0].path.as_str(),
                r[0].scheme.as_str()
            ),
            ("^~", "/shop.web/api/", "http")
        );
        assert_eq!(r[0].targets, vec![("shop-web".to_string(), 8090)]);
        assert!(is_generated("shop-web", &s));
        let ds = crate::model::nginx::parse(&s, "f").unwrap();
        let locs: Vec<Vec<String>> = ds
            .iter()
            .filter(|d| d.args[0] == "location")
            .map(|d| d.args[1..].to_vec())
            .collect();
        let want: Vec<Vec<String>> = [
            vec!["=", "/shop.web"],
            vec!["^~", "/shop.web/api/"],
            vec!["/shop.web/"],
            vec!["@shop-web_page"],
        ]
        .iter()
        .map(|v| v.iter().map(|x| x.to_string()).collect())
        .collect();
        assert_eq!(locs, want);
        // The API's prefix is stripped by a regex that matches only itself.
        assert!(
            s.contains("rewrite ^/shop\\.web/api/(.*)$ /$1 break;"),
            "{s}"
        );
        assert!(s.contains("proxy_set_header X-Forwarded-Prefix /shop.web/api;"));
        assert!(s.contains("root /usr/share/nginx/frontends;"));
        assert!(s.contains(
            "location = /shop.web/index.html {\n        add_header Cache-Control \"no-cache\";"
        ));
        let https = render_frontend("a", "/a/", 1, true);
        let r = parse_routes(&https, "f").unwrap();
        assert_eq!(r[0].scheme, "https");
        assert!(https.contains("proxy_ssl_name a;"));
    }

    #[test]
    fn the_mount_lands_where_root_looks() {
        assert_eq!(
            frontend_mount("shop-web", "/shop/web/"),
            "./src/backend_services/shop-web/Frontend:/usr/share/nginx/frontends/shop/web:ro"
        );
        // `root` + the request path = the mount + the path below it.
        assert_eq!(
            format!("{FRONTENDS_ROOT}/shop/web/app.js"),
            format!("{}/app.js", frontend_target("/shop/web/"))
        );
    }
}
