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
//!        probe check-file <path>  the same for one spec a line, run at once
//!        probe row [<secs> <spec>] a matrix row: the readiness wait (as
//!                                 `wait`) beside the specs of stdin (`row`)
//!        probe wait <secs> <spec> retry one spec until it succeeds
//!        probe exists <path>      exit 0 when the path exists (verify/pgcow.rs)
//! A spec is `kind=grpc&host=accounts&port=50051&tls=1&ca=/ca.pem&name=accounts`
//! (percent-encoded values). Kinds: pg, redis, grpc, http.
//! Data-layer modes: `kind=pg&user=&password=&db=` reports `denied` for
//! SQLSTATE 42501 (no privilege, e.g. no CONNECT on that database);
//! `kind=redis&user=&password=&key=` SETs and GETs `key` as that ACL user and
//! reports `denied` for NOPERM. Both report `unresolved`/`refused` when the
//! server is not reachable at all, so a refusal is never a network failure.
//!
//! One module per protocol (`pg`, `redis`, `grpc`, `http`, `tls`); `dns`
//! looks names up; `wire` holds what they share, including the bounds on
//! every read: a broken or hostile service gives a failed cell, never a
//! panic or a hang.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

mod dns;
mod grpc;
mod http;
mod pg;
mod redis;
mod row;
mod tls;
mod wire;

type Spec = Vec<(String, String)>;

fn get<'a>(s: &'a Spec, k: &str) -> &'a str {
    s.iter()
        .find(|(a, _)| a == k)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

/// Percent-decoding over bytes (a `%` before a multi-byte character, or a
/// bad escape, is kept as written).
fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = vec![];
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|c| hex(*c)),
                b.get(i + 2).and_then(|c| hex(*c)),
            ) {
                out.push(h << 4 | l);
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
    s.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), pct_decode(v)))
        .collect()
}

/// How a probe ended. `Unresolved` and `Refused` mean "not reachable";
/// anything after a TCP connection is `Failed` (reachable, but wrong).
enum Outcome {
    Ok(String),
    Unresolved(String),
    Refused(String),
    Failed(String),
    /// The server refused on purpose: Postgres SQLSTATE 42501, Redis NOPERM.
    Denied(String),
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

/// A connection to `addr` within `ms`. A path the engine drops never
/// answers; an open one completes in the kernel in about 0.1 ms, even with
/// 24 services and ~1,900 specs on 2 cores (the handshake's RTT from
/// TCP_INFO was at most 0.15 ms on every open path there). Threads were
/// kept off the CPU for up to 0.2 s under that load, and std's
/// `connect_timeout` gives up without looking at the socket if its thread
/// is taken off the CPU past the deadline in the few instructions between
/// its clock read and its first `poll` (a late `poll` still sees the
/// socket). So a short wait (under 1 s) is two attempts on two threads at
/// once: both must be caught there for an open path to read as dropped.
/// (An open path then sees a second connection that closes at once.)
fn connect_within(addr: SocketAddr, ms: u64) -> std::io::Result<TcpStream> {
    let wait = Duration::from_millis(ms);
    if ms >= 1000 {
        return TcpStream::connect_timeout(&addr, wait);
    }
    // No thread to be had (a limit on processes): one attempt.
    let Ok(other) =
        std::thread::Builder::new().spawn(move || TcpStream::connect_timeout(&addr, wait))
    else {
        return TcpStream::connect_timeout(&addr, wait);
    };
    match TcpStream::connect_timeout(&addr, wait) {
        Ok(s) => Ok(s),
        Err(e) => other.join().unwrap_or(Err(e)),
    }
}

/// The address `spec` names (its `host`, looked up as the container's
/// resolver would, and its `port`), or why it has none.
fn address(spec: &Spec) -> Result<SocketAddr, dns::NoAddress> {
    let port: u16 = get(spec, "port").parse().unwrap_or(0);
    dns::lookup(get(spec, "host")).map(|ip| SocketAddr::new(ip, port))
}

fn unresolved(spec: &Spec, why: &dns::NoAddress) -> Outcome {
    Outcome::Unresolved(format!(
        "name `{}` does not resolve: {why}",
        get(spec, "host")
    ))
}

/// `connect_ms`: how long a connection may take to be set up (2 s by
/// default; verify's path specs ask for less, see `connect_within`).
fn connect_ms(spec: &Spec) -> u64 {
    get(spec, "connect_ms")
        .parse()
        .unwrap_or(2000)
        .clamp(100, 10_000)
}

fn connect_failed(spec: &Spec, e: &std::io::Error) -> String {
    format!(
        "connect to {}:{} failed: {e}",
        get(spec, "host"),
        get(spec, "port")
    )
}

fn connect(spec: &Spec) -> Result<Box<dyn Stream>, Outcome> {
    let host = get(spec, "host");
    let port = get(spec, "port");
    let addr = address(spec).map_err(|why| unresolved(spec, &why))?;
    let tcp = match connect_within(addr, connect_ms(spec)) {
        Ok(t) => t,
        Err(e) => return Err(Outcome::Refused(connect_failed(spec, &e))),
    };
    tcp.set_read_timeout(Some(Duration::from_secs(4))).ok();
    tcp.set_write_timeout(Some(Duration::from_secs(4))).ok();
    if get(spec, "tls") != "1" {
        return Ok(Box::new(wire::Bounded::new(tcp)));
    }
    let name = if get(spec, "name").is_empty() {
        host
    } else {
        get(spec, "name")
    };
    let t = tls::wrap(
        tcp,
        get(spec, "ca"),
        name,
        get(spec, "kind") == "grpc",
        &format!("{host}:{port}"),
    )
    .map_err(Outcome::Failed)?;
    Ok(Box::new(wire::Bounded::new(t)))
}

fn run(spec: &Spec) -> Outcome {
    let mut s = match connect(spec) {
        Ok(s) => s,
        Err(o) => return o,
    };
    let r = match get(spec, "kind") {
        "pg" => pg::postgres(
            &mut s,
            get(spec, "user"),
            get(spec, "password"),
            get(spec, "db"),
        ),
        "redis" if !get(spec, "key").is_empty() => redis::redis_key(
            &mut s,
            get(spec, "user"),
            get(spec, "password"),
            get(spec, "key"),
        ),
        "redis" => redis::redis(
            &mut s,
            get(spec, "user"),
            get(spec, "password"),
            get(spec, "noauth_ok") == "1",
        ),
        "grpc" => grpc::grpc_health(&mut s, get(spec, "host"), get(spec, "tls") == "1"),
        "http" => http::http_get(
            &mut s,
            get(spec, "host"),
            get(spec, "path"),
            get(spec, "expect"),
        ),
        "tcp" => Ok("connected".into()),
        k => Err(format!("unknown probe kind `{k}`")),
    };
    match r {
        Ok(d) => Outcome::Ok(d),
        Err(e) if e.starts_with(pg::DENIED) || e.starts_with(redis::DENIED) => Outcome::Denied(e),
        Err(e) => Outcome::Failed(e),
    }
}

fn report(spec: &Spec, o: &Outcome, elapsed: Duration) {
    let (outcome, detail) = match o {
        Outcome::Ok(d) => ("ok", d),
        Outcome::Unresolved(d) => ("unresolved", d),
        Outcome::Refused(d) => ("refused", d),
        Outcome::Failed(d) => ("failed", d),
        Outcome::Denied(d) => ("denied", d),
    };
    println!(
        "{{\"id\":{},\"outcome\":\"{outcome}\",\"detail\":{},\"ms\":{}}}",
        json_str(get(spec, "id")),
        json_str(detail),
        elapsed.as_millis()
    );
}

/// One spec a line, all run at once (a blocked path waits out its connect
/// timeout; in sequence those waits would add up), printed in the file's
/// order (`row::run_lines`).
fn check_file(path: &str) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    for (_, spec, o, el) in row::run_lines(text.as_bytes(), &row::Gate::default()) {
        report(&spec, &o, el);
    }
}

/// Tries `spec` until it answers or `secs` pass; prints the last try's
/// line (flushed) and says whether it answered.
fn wait(secs: &str, spec: &str) -> bool {
    use std::io::Write;
    let secs: u64 = secs.parse().unwrap_or(60);
    let spec = parse_spec(spec);
    let t = Instant::now();
    // A refused try costs next to nothing (the service is not listening
    // yet): try again in 25 ms, so the wait ends within 25 ms of the
    // service's listen (every 200 ms, it lost 100 ms on average on the
    // critical path). A try that connected cost the service a handshake:
    // those back off to every 200 ms.
    let mut pause = Duration::from_millis(25);
    loop {
        let o = run(&spec);
        if matches!(o, Outcome::Ok(_)) || t.elapsed() > Duration::from_secs(secs) {
            report(&spec, &o, t.elapsed());
            let _ = std::io::stdout().flush();
            return matches!(o, Outcome::Ok(_));
        }
        if matches!(o, Outcome::Refused(_) | Outcome::Unresolved(_)) {
            std::thread::sleep(Duration::from_millis(25));
            continue;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
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
        Some("check-file") if args.len() == 2 => check_file(&args[1]),
        Some("wait") if args.len() == 3 => {
            let ok = wait(&args[1], &args[2]);
            std::process::exit(if ok { 0 } else { 1 });
        }
        // A matrix row's probe: its service's readiness wait when the
        // service is a target (one container where there were two), its
        // line printed and flushed first; meanwhile the specs, one a line,
        // from stdin until it closes, each run as it comes (`row`), their
        // lines printed once stdin has ended and every spec is done.
        // Exits 1 if not ready. A verify that died closes stdin too: the
        // specs still held end unrun.
        Some("row") if args.len() == 1 || args.len() == 3 => {
            let gate = row::Gate::default();
            let done = std::thread::scope(|s| {
                let specs = s.spawn(|| row::run_lines(std::io::stdin().lock(), &gate));
                if args.len() == 3 && !wait(&args[1], &args[2]) {
                    std::process::exit(1);
                }
                specs.join().unwrap_or_default()
            });
            for (_, spec, o, el) in done {
                report(&spec, &o, el);
            }
        }
        Some("exists") if args.len() == 2 => {
            let there = std::fs::symlink_metadata(&args[1]).is_ok();
            std::process::exit(if there { 0 } else { 1 });
        }
        _ => {
            eprintln!("usage: probe check <spec>... | probe check-file <path> | probe wait <secs> <spec> | probe row [<secs> <spec>] | probe exists <path>");
            std::process::exit(2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_short_connect_reaches_a_listener_and_is_refused_by_a_closed_port() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = l.local_addr().unwrap();
        assert!(connect_within(open, 100).is_ok());
        drop(l);
        let t = Instant::now();
        let e = connect_within(open, 100).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "a refusal is not a timeout"
        );
    }

    #[test]
    fn pct_decode_keeps_bad_escapes() {
        assert_eq!(pct_decode("a%20b%2"), "a b%2");
        // This panicked before: slicing a str inside a multi-byte character.
        assert_eq!(pct_decode("%\u{e9}x"), "%\u{e9}x");
    }

    proptest! {
        #[test]
        fn any_spec_never_panics(s in ".{0,64}") {
            let spec = parse_spec(&s);
            let _ = json_str(get(&spec, "id"));
        }
    }
}
