//! The reachability probe that `cargo xtask verify` runs inside a service's
//! network namespace (a FROM-scratch container joined to the service with
//! `network_mode: container:<id>`), and on the host for NGINX routes.
//!
//! It speaks each protocol instead of only opening a TCP connection:
//! Postgres (authenticated query, SCRAM-SHA-256 or cleartext), Redis (PING),
//! gRPC health (HTTP/2 by hand, over TLS when asked) and HTTP(S) GET. TLS
//! verifies the chain against the local CA and the host name.
//!
//! Usage: probe check <spec>...   one JSON line per spec
//!        probe wait <secs> <spec> retry one spec until it succeeds
//! A spec is `kind=grpc&host=accounts&port=50051&tls=1&ca=/ca.pem&name=accounts`
//! (percent-encoded values). Kinds: pg, redis, grpc, http.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod wire;

type Spec = Vec<(String, String)>;

fn get<'a>(s: &'a Spec, k: &str) -> &'a str {
    s.iter().find(|(a, _)| a == k).map(|(_, v)| v.as_str()).unwrap_or("")
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = vec![];
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 3 <= b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_spec(s: &str) -> Spec {
    s.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_string(), pct_decode(v))).collect()
}

/// How a probe ended. `Unresolved` and `Refused` mean "not reachable";
/// anything after a TCP connection is `Failed` (reachable, but wrong).
enum Outcome {
    Ok(String),
    Unresolved(String),
    Refused(String),
    Failed(String),
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

fn connect(spec: &Spec) -> Result<Box<dyn Stream>, Outcome> {
    let host = get(spec, "host");
    let port: u16 = get(spec, "port").parse().unwrap_or(0);
    let addrs: Vec<_> = match (host, port).to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => return Err(Outcome::Unresolved(format!("name `{host}` does not resolve: {e}"))),
    };
    let Some(addr) = addrs.first() else {
        return Err(Outcome::Unresolved(format!("name `{host}` has no address")));
    };
    let tcp = match TcpStream::connect_timeout(addr, Duration::from_secs(2)) {
        Ok(t) => t,
        Err(e) => return Err(Outcome::Refused(format!("connect to {host}:{port} failed: {e}"))),
    };
    tcp.set_read_timeout(Some(Duration::from_secs(4))).ok();
    tcp.set_write_timeout(Some(Duration::from_secs(4))).ok();
    if get(spec, "tls") != "1" {
        return Ok(Box::new(tcp));
    }
    let ca = std::fs::read_to_string(get(spec, "ca")).map_err(|e| Outcome::Failed(format!("cannot read CA file {}: {e}", get(spec, "ca"))))?;
    let mut roots = rustls::RootCertStore::empty();
    for der in wire::pem_certs(&ca) {
        roots.add(der.into()).map_err(|e| Outcome::Failed(format!("bad CA certificate: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Outcome::Failed(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    if get(spec, "kind") == "grpc" {
        cfg.alpn_protocols = vec![b"h2".to_vec()];
    }
    let name = if get(spec, "name").is_empty() { host } else { get(spec, "name") };
    let server_name = rustls::pki_types::ServerName::try_from(name.to_string()).map_err(|e| Outcome::Failed(format!("bad TLS name {name}: {e}")))?;
    let conn = rustls::ClientConnection::new(Arc::new(cfg), server_name).map_err(|e| Outcome::Failed(e.to_string()))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    // Drive the handshake now so that certificate errors are reported as such.
    while tls.conn.is_handshaking() {
        if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
            let msg = e.to_string();
            let why = if msg.contains("NotValidForName") {
                format!("TLS: the certificate of {host}:{port} is not valid for the name `{name}`")
            } else if msg.contains("UnknownIssuer") || msg.contains("BadSignature") {
                format!("TLS: the certificate of {host}:{port} is not signed by the local CA")
            } else {
                format!("TLS handshake with {host}:{port} failed: {msg}")
            };
            return Err(Outcome::Failed(why));
        }
    }
    Ok(Box::new(tls))
}

fn run(spec: &Spec) -> Outcome {
    let mut s = match connect(spec) {
        Ok(s) => s,
        Err(o) => return o,
    };
    let r = match get(spec, "kind") {
        "pg" => wire::postgres(&mut s, get(spec, "user"), get(spec, "password"), get(spec, "db")),
        "redis" => wire::redis(&mut s, get(spec, "password")),
        "grpc" => wire::grpc_health(&mut s, get(spec, "host"), get(spec, "tls") == "1"),
        "http" => wire::http_get(&mut s, get(spec, "host"), get(spec, "path"), get(spec, "expect")),
        "tcp" => Ok("connected".into()),
        k => Err(format!("unknown probe kind `{k}`")),
    };
    match r {
        Ok(d) => Outcome::Ok(d),
        Err(e) => Outcome::Failed(e),
    }
}

fn report(spec: &Spec, o: &Outcome, elapsed: Duration) {
    let (outcome, detail) = match o {
        Outcome::Ok(d) => ("ok", d),
        Outcome::Unresolved(d) => ("unresolved", d),
        Outcome::Refused(d) => ("refused", d),
        Outcome::Failed(d) => ("failed", d),
    };
    println!(
        "{{\"id\":{},\"outcome\":\"{outcome}\",\"detail\":{},\"ms\":{}}}",
        json_str(get(spec, "id")),
        json_str(detail),
        elapsed.as_millis()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(|s| s.as_str()) {
        Some("check") => {
            for a in &args[1..] {
                let spec = parse_spec(a);
                let t = Instant::now();
                let o = run(&spec);
                report(&spec, &o, t.elapsed());
            }
        }
        Some("wait") if args.len() == 3 => {
            let secs: u64 = args[1].parse().unwrap_or(60);
            let spec = parse_spec(&args[2]);
            let t = Instant::now();
            // Short waits first (a service that is almost up costs little
            // extra), then every 200 ms: an attempt on loopback is cheap.
            let mut pause = Duration::from_millis(25);
            loop {
                let o = run(&spec);
                if matches!(o, Outcome::Ok(_)) || t.elapsed() > Duration::from_secs(secs) {
                    report(&spec, &o, t.elapsed());
                    std::process::exit(if matches!(o, Outcome::Ok(_)) { 0 } else { 1 });
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(200));
            }
        }
        _ => {
            eprintln!("usage: probe check <spec>... | probe wait <secs> <spec>");
            std::process::exit(2);
        }
    }
}
