//! Name lookups the way the container's own resolver makes them, paced for
//! verify.
//!
//! Written by hand instead of calling getaddrinfo: glibc asks again only
//! after whole seconds (`RES_OPTIONS=timeout:1` is its floor) and sends A
//! and AAAA for every name. At 24 services a thousand lookups run at once
//! and the engine's DNS forwards the names it does not know upstream, where
//! answers get lost under the burst: each loss held a row for a second, and
//! three in a row ended as EAI_AGAIN, a "does not resolve" that no server
//! had said. Here a lost answer costs 200 ms; a name that does not exist
//! costs one upstream query (NXDOMAIN holds for every type, so AAAA is asked
//! only when A has no record); and a lookup nobody answered says so.
//!
//! The order is glibc's with `hosts: files dns`: an address literal, then
//! `/etc/hosts`, then the nameservers of `/etc/resolv.conf` with its search
//! list and `ndots`. Every read of a reply is bounds-checked: the bytes come
//! from the network.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// How long one lookup may take, all forms of the name together (glibc's
/// `timeout:1 attempts:3` that the probe used before).
const BUDGET: Duration = Duration::from_secs(3);
/// The first pause before asking again; it doubles up to `MAX_PACE`.
const PACE: Duration = Duration::from_millis(200);
const MAX_PACE: Duration = Duration::from_millis(800);

/// Why a name has no address.
pub enum NoAddress {
    /// Every form of it was answered without an address: an answer that
    /// holds until the names change.
    NoSuchName,
    /// Some form got no answer in time, or only server failures: another
    /// try may tell otherwise.
    NoAnswer(String),
}

impl std::fmt::Display for NoAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NoAddress::NoSuchName => f.write_str("no such name"),
            NoAddress::NoAnswer(why) => f.write_str(why),
        }
    }
}

/// The first address of `host`, as a client would take it, or why there
/// is none.
pub fn lookup(host: &str) -> Result<IpAddr, NoAddress> {
    if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse() {
        return Ok(ip);
    }
    if let Some(ip) = hosts_file(&read_text("/etc/hosts"), host).first() {
        return Ok(*ip);
    }
    let conf = Conf::parse(&read_text("/etc/resolv.conf"));
    let deadline = Instant::now() + BUDGET;
    let mut unanswered = None;
    for name in conf.candidates(host) {
        let reply = match ask(&conf.servers, &name, A, deadline) {
            Reply::NoData => ask(&conf.servers, &name, AAAA, deadline),
            r => r,
        };
        match reply {
            Reply::Addrs(a) => {
                if let Some(ip) = a.first() {
                    return Ok(*ip);
                }
            }
            Reply::NxDomain | Reply::NoData => {}
            Reply::NoAnswer(why) => unanswered = Some(why),
        }
    }
    Err(unanswered.map_or(NoAddress::NoSuchName, NoAddress::NoAnswer))
}

/// A file's text, empty if it cannot be read. Lossy: one byte that is not
/// UTF-8 (a Latin-1 comment) must not empty the whole file; glibc reads
/// the lines around it.
fn read_text(path: &str) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

/// The addresses `/etc/hosts` gives `host` (names match without case).
fn hosts_file(text: &str, host: &str) -> Vec<IpAddr> {
    let host = host.trim_end_matches('.');
    text.lines()
        .filter_map(|l| {
            let mut w = l.split('#').next()?.split_whitespace();
            let ip: IpAddr = w.next()?.parse().ok()?;
            w.any(|n| n.eq_ignore_ascii_case(host)).then_some(ip)
        })
        .collect()
}

/// What `/etc/resolv.conf` says (glibc's defaults where it is silent).
#[derive(Debug, PartialEq)]
struct Conf {
    servers: Vec<SocketAddr>,
    search: Vec<String>,
    ndots: usize,
}

impl Conf {
    fn parse(text: &str) -> Conf {
        let mut c = Conf {
            servers: vec![],
            search: vec![],
            ndots: 1,
        };
        for line in text.lines() {
            let mut w = line.split_whitespace();
            match w.next() {
                Some("nameserver") if c.servers.len() < 3 => {
                    if let Some(ip) = w.next().and_then(|a| a.parse::<IpAddr>().ok()) {
                        c.servers.push(SocketAddr::new(ip, 53));
                    }
                }
                // The last of `search` and `domain` wins, as in glibc.
                Some("search") => c.search = w.map(str::to_string).collect(),
                Some("domain") => c.search = w.next().into_iter().map(str::to_string).collect(),
                Some("options") => {
                    for o in w {
                        if let Some(n) = o.strip_prefix("ndots:").and_then(|n| n.parse().ok()) {
                            c.ndots = std::cmp::min(n, 15);
                        }
                    }
                }
                _ => {}
            }
        }
        if c.servers.is_empty() {
            c.servers.push(SocketAddr::from(([127, 0, 0, 1], 53)));
        }
        c
    }

    /// The names asked, in glibc's order: as written first when it has at
    /// least `ndots` dots, else after the search list; only as written when
    /// it ends with a dot.
    fn candidates(&self, host: &str) -> Vec<String> {
        if let Some(abs) = host.strip_suffix('.') {
            return vec![abs.to_string()];
        }
        let searched = self
            .search
            .iter()
            .map(|d| format!("{host}.{}", d.trim_end_matches('.')));
        if host.matches('.').count() >= self.ndots {
            std::iter::once(host.to_string()).chain(searched).collect()
        } else {
            searched.chain(std::iter::once(host.to_string())).collect()
        }
    }
}

const A: u16 = 1;
const CNAME: u16 = 5;
const AAAA: u16 = 28;

#[derive(Debug, PartialEq)]
enum Reply {
    Addrs(Vec<IpAddr>),
    NxDomain,
    NoData,
    NoAnswer(String),
}

/// Asks the servers for `name`'s records of `qtype`, again at a growing
/// pace (each time the next server) until one answers or `deadline`.
fn ask(servers: &[SocketAddr], name: &str, qtype: u16, deadline: Instant) -> Reply {
    let Some(base) = query(name, qtype, 0) else {
        return Reply::NxDomain; // not a name DNS can carry: nothing has it
    };
    let bind = |s: &SocketAddr| {
        UdpSocket::bind(if s.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        })
    };
    let sockets: Vec<_> = servers
        .iter()
        .filter_map(|s| Some((bind(s).ok()?, *s)))
        .collect();
    if sockets.is_empty() {
        return Reply::NoAnswer("no socket for the nameservers".into());
    }
    let mut ids = vec![];
    let mut failed = vec![false; sockets.len()];
    let mut pace = PACE;
    let mut buf = [0u8; 1500];
    for turn in 0.. {
        let i = turn % sockets.len();
        let (sock, server) = &sockets[i];
        let id = next_id();
        ids.push(id);
        let mut q = base.clone();
        q[..2].copy_from_slice(&id.to_be_bytes());
        let _ = sock.send_to(&q, server);
        let until = (Instant::now() + pace).min(deadline);
        // Replies to any earlier try of this question count too.
        loop {
            let now = Instant::now();
            if now >= until {
                break;
            }
            let _ = sock.set_read_timeout(Some(until - now));
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                break;
            };
            let Some(r) = parse(&buf[..n], name, qtype) else {
                continue;
            };
            if from != *server || !ids.contains(&r.id) {
                continue;
            }
            match r.rcode {
                0 if !r.addrs.is_empty() => return Reply::Addrs(r.addrs),
                // Cut short with nothing in it: glibc would ask again over
                // TCP. Not "no record": the name may have one.
                0 if r.truncated => {
                    return Reply::NoAnswer(format!(
                        "{} sent a truncated reply with no address",
                        list(servers)
                    ))
                }
                0 => return Reply::NoData,
                3 => return Reply::NxDomain,
                // SERVFAIL, REFUSED: glibc goes on to the next server.
                _ => {
                    failed[i] = true;
                    break;
                }
            }
        }
        if failed.iter().all(|f| *f) {
            return Reply::NoAnswer(format!(
                "{} answered only with a server failure",
                list(servers)
            ));
        }
        if Instant::now() >= deadline {
            break;
        }
        pace = (pace * 2).min(MAX_PACE);
    }
    Reply::NoAnswer(format!(
        "no answer from {} in {} s",
        list(servers),
        BUDGET.as_secs()
    ))
}

fn list(servers: &[SocketAddr]) -> String {
    servers
        .iter()
        .map(|s| s.ip().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A query id no other try of this process used lately (the probe's
/// threads share the counter; the clock makes two probes differ).
fn next_id() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u16)
        .unwrap_or(0);
    NEXT.fetch_add(1, Ordering::Relaxed).wrapping_add(seed)
}

/// A recursive query for `name`, or None if it is not a DNS name (an empty
/// label, a label over 63 bytes, over 253 bytes in all).
fn query(name: &str, qtype: u16, id: u16) -> Option<Vec<u8>> {
    if name.is_empty() || name.len() > 253 {
        return None;
    }
    let mut q = Vec::with_capacity(18 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD; one question
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return None;
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes()); // IN
    Some(q)
}

#[derive(Debug)]
struct Parsed {
    id: u16,
    rcode: u8,
    /// The reply was cut short (TC): what it holds may not be all.
    truncated: bool,
    addrs: Vec<IpAddr>,
}

/// A reply to our question (`name`, `qtype`), or None for anything else or
/// anything malformed. The addresses are the answer section's records of
/// `qtype` owned by `name` or by a CNAME that `name` leads to (as glibc
/// takes them: a record for another name in the same reply is not ours).
fn parse(b: &[u8], name: &str, qtype: u16) -> Option<Parsed> {
    let u16_at = |i: usize| Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]));
    let id = u16_at(0)?;
    let flags = u16_at(2)?;
    if flags & 0x8000 == 0 || u16_at(4)? != 1 {
        return None; // not a reply, or not to one question
    }
    let answers = u16_at(6)?;
    let (qname, mut at) = read_name(b, 12)?;
    if !qname.eq_ignore_ascii_case(name) || u16_at(at)? != qtype {
        return None;
    }
    at += 4;
    // (owner, type, where the data starts, its bytes)
    let mut records = vec![];
    for _ in 0..answers {
        let (owner, next) = read_name(b, at)?;
        let (typ, len) = (u16_at(next)?, u16_at(next + 8)? as usize);
        let data = b.get(next + 10..next + 10 + len)?;
        records.push((owner, typ, next + 10, data));
        at = next + 10 + len;
    }
    // The names `name` leads to through CNAMEs, in any order in the reply
    // (at most as many steps as records: a loop ends there).
    let mut chain = vec![name.to_string()];
    for _ in 0..records.len() {
        let last = chain.last().cloned().unwrap_or_default();
        let Some((_, _, start, _)) = records
            .iter()
            .find(|(o, t, ..)| *t == CNAME && o.eq_ignore_ascii_case(&last))
        else {
            break;
        };
        chain.push(read_name(b, *start)?.0);
    }
    let ours = |o: &str| chain.iter().any(|c| c.eq_ignore_ascii_case(o));
    let mut addrs = vec![];
    for (owner, typ, _, data) in &records {
        if *typ != qtype || !ours(owner) {
            continue;
        }
        match (*typ, data.len()) {
            (A, 4) => addrs.push(IpAddr::from(<[u8; 4]>::try_from(*data).ok()?)),
            (AAAA, 16) => addrs.push(IpAddr::from(<[u8; 16]>::try_from(*data).ok()?)),
            _ => {}
        }
    }
    Some(Parsed {
        id,
        rcode: (flags & 0x000f) as u8,
        truncated: flags & 0x0200 != 0,
        addrs,
    })
}

/// The name at `at` (following compression pointers, at most 128 steps)
/// and where the record goes on after it.
fn read_name(b: &[u8], mut at: usize) -> Option<(String, usize)> {
    let mut name = String::new();
    let mut after = None;
    for _ in 0..128 {
        let len = *b.get(at)? as usize;
        match len & 0xc0 {
            0xc0 => {
                let ptr = (len & 0x3f) << 8 | *b.get(at + 1)? as usize;
                after.get_or_insert(at + 2);
                at = ptr;
            }
            0 if len == 0 => return Some((name, after.unwrap_or(at + 1))),
            0 => {
                let label = b.get(at + 1..at + 1 + len)?;
                if label.contains(&b'.') {
                    return None; // one label `a.b` must not pass for two
                }
                if !name.is_empty() {
                    name.push('.');
                }
                name.push_str(&String::from_utf8_lossy(label));
                at += 1 + len;
            }
            _ => return None,
        }
    }
    None // a pointer loop
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A reply as a server writes it: our question, then `answers`, each
    /// owner a pointer to the question's name.
    fn reply(id: u16, rcode: u8, name: &str, qtype: u16, answers: &[(u16, &[u8])]) -> Vec<u8> {
        let mut b = query(name, qtype, id).unwrap();
        b[2] = 0x81;
        b[3] = 0x80 | rcode;
        b[6..8].copy_from_slice(&(answers.len() as u16).to_be_bytes());
        for (typ, data) in answers {
            b.extend_from_slice(&[0xc0, 12]);
            b.extend_from_slice(&typ.to_be_bytes());
            b.extend_from_slice(&[0, 1, 0, 0, 2, 88]);
            b.extend_from_slice(&(data.len() as u16).to_be_bytes());
            b.extend_from_slice(data);
        }
        b
    }

    /// A server on loopback that drops the first `drop` queries and
    /// answers the next with `answer(query)`; join it after the ask.
    fn one_answer(
        drop: usize,
        answer: fn(&[u8]) -> Vec<u8>,
    ) -> (SocketAddr, std::thread::JoinHandle<()>) {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        let h = std::thread::spawn(move || {
            let mut got = [0u8; 512];
            for _ in 0..drop {
                let _ = server.recv_from(&mut got).unwrap();
            }
            let (n, from) = server.recv_from(&mut got).unwrap();
            server.send_to(&answer(&got[..n]), from).unwrap();
        });
        (addr, h)
    }

    #[test]
    fn a_reply_gives_its_addresses_and_only_for_our_question() {
        let cname: &[u8] = &[3, b'a', b'b', b'c', 0];
        let b = reply(7, 0, "redis", A, &[(5, cname), (A, &[172, 20, 0, 3])]);
        let p = parse(&b, "REDIS", A).unwrap();
        assert_eq!((p.id, p.rcode), (7, 0));
        assert_eq!(p.addrs, vec![IpAddr::from([172, 20, 0, 3])]);
        assert!(parse(&b, "redis", AAAA).is_none());
        assert!(parse(&b, "postgres", A).is_none());
        let nx = reply(9, 3, "nginx", A, &[]);
        assert_eq!(parse(&nx, "nginx", A).unwrap().rcode, 3);
        let mut q = query("nginx", A, 1).unwrap();
        assert!(parse(&q, "nginx", A).is_none(), "a query is not a reply");
        q.truncate(14);
        assert!(parse(&q, "nginx", A).is_none());
    }

    #[test]
    fn only_records_of_our_name_and_its_cnames_count() {
        // An A record for another name in the reply to ours is not ours.
        let mut b = reply(3, 0, "redis", A, &[]);
        b[6..8].copy_from_slice(&1u16.to_be_bytes());
        b.extend_from_slice(&[4, b'e', b'v', b'i', b'l', 0]);
        b.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 9, 0, 4, 10, 6, 6, 6]);
        assert!(parse(&b, "redis", A).unwrap().addrs.is_empty());
        // redis -> cache.internal (CNAME), then its A record: ours.
        let mut c = reply(
            4,
            0,
            "redis",
            A,
            &[(
                CNAME,
                &[
                    5, b'c', b'a', b'c', b'h', b'e', 8, b'i', b'n', b't', b'e', b'r', b'n', b'a',
                    b'l', 0,
                ],
            )],
        );
        c[6..8].copy_from_slice(&2u16.to_be_bytes());
        c.extend_from_slice(&[
            5, b'c', b'a', b'c', b'h', b'e', 8, b'i', b'n', b't', b'e', b'r', b'n', b'a', b'l', 0,
        ]);
        c.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 9, 0, 4, 10, 0, 0, 9]);
        assert_eq!(
            parse(&c, "redis", A).unwrap().addrs,
            vec![IpAddr::from([10, 0, 0, 9])]
        );
        // An AAAA record in a reply to A is not an answer to A.
        let d = reply(5, 0, "redis", A, &[(AAAA, &[0; 16])]);
        assert!(parse(&d, "redis", A).unwrap().addrs.is_empty());
    }

    #[test]
    fn a_label_holding_a_dot_is_not_two_labels() {
        // One label `a.b` (3 bytes) must not pass for the name `a.b`.
        let mut one = vec![
            0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'a', b'.', b'b', 0, 0, 1, 0, 1,
        ];
        assert!(parse(&one, "a.b", A).is_none());
        one[14] = b'x';
        assert!(parse(&one, "axb", A).is_some());
    }

    #[test]
    fn a_file_with_a_byte_that_is_not_utf8_keeps_its_other_lines() {
        let p = std::env::temp_dir().join(format!("probe-hosts-{}", std::process::id()));
        std::fs::write(&p, b"# caf\xe9\n10.0.0.5 db\n").unwrap();
        let text = read_text(p.to_str().unwrap());
        let _ = std::fs::remove_file(&p);
        assert_eq!(hosts_file(&text, "db"), vec![IpAddr::from([10, 0, 0, 5])]);
        assert_eq!(read_text("/nonexistent/hosts"), "");
    }

    #[test]
    fn a_truncated_empty_reply_is_no_answer_not_no_record() {
        let (addr, h) = one_answer(0, |q| {
            let mut r = q.to_vec();
            r[2] = 0x83; // a reply, TC, RD
            r[3] = 0x80;
            r
        });
        let r = ask(&[addr], "big", A, Instant::now() + Duration::from_secs(2));
        h.join().unwrap();
        assert!(
            matches!(r, Reply::NoAnswer(ref w) if w.contains("truncated")),
            "{r:?}"
        );
    }

    #[test]
    fn names_that_dns_cannot_carry_are_not_asked() {
        assert!(query("", A, 0).is_none());
        assert!(query("a..b", A, 0).is_none());
        assert!(query(&"x".repeat(64), A, 0).is_none());
        assert!(query(&["x"; 130].join("."), A, 0).is_none());
        assert_eq!(query("a.bc", A, 0x0102).unwrap()[..2], [1, 2]);
    }

    #[test]
    fn a_pointer_loop_is_refused() {
        let mut b = query("x", A, 0).unwrap();
        b[2] = 0x81;
        b[12] = 0xc0;
        b[13] = 12;
        assert!(parse(&b, "x", A).is_none());
    }

    #[test]
    fn resolv_conf_as_glibc_reads_it() {
        let c = Conf::parse(
            "# docker\nnameserver 127.0.0.11\nnameserver bogus\nsearch a.example b.example.\noptions ndots:0 timeout:1\n",
        );
        assert_eq!(c.servers, vec![SocketAddr::from(([127, 0, 0, 11], 53))]);
        assert_eq!(c.ndots, 0);
        assert_eq!(
            c.candidates("redis"),
            ["redis", "redis.a.example", "redis.b.example"]
        );
        assert_eq!(c.candidates("redis."), ["redis"]);
        let d = Conf::parse("domain corp\n");
        assert_eq!(d.servers, vec![SocketAddr::from(([127, 0, 0, 1], 53))]);
        assert_eq!(d.ndots, 1);
        assert_eq!(d.candidates("db"), ["db.corp", "db"]);
        assert_eq!(d.candidates("db.x"), ["db.x", "db.x.corp"]);
    }

    #[test]
    fn hosts_file_matches_names_without_case() {
        let h = "127.0.0.1 localhost\n# 10.0.0.9 gone\n172.20.0.5 Accounts accounts.local # a comment\nbad line\n";
        assert_eq!(
            hosts_file(h, "accounts"),
            vec![IpAddr::from([172, 20, 0, 5])]
        );
        assert_eq!(
            hosts_file(h, "ACCOUNTS.local."),
            vec![IpAddr::from([172, 20, 0, 5])]
        );
        assert!(hosts_file(h, "gone").is_empty());
    }

    #[test]
    fn a_silent_server_is_no_answer_and_a_server_failure_is_one_too() {
        // A socket that never replies, then one that answers SERVFAIL.
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let t = Instant::now();
        let r = ask(
            &[silent.local_addr().unwrap()],
            "x",
            A,
            Instant::now() + Duration::from_millis(700),
        );
        assert!(
            matches!(r, Reply::NoAnswer(ref w) if w.contains("no answer")),
            "{r:?}"
        );
        assert!(t.elapsed() < Duration::from_millis(1500));
        let mut got = [0u8; 512];
        let mut tries = 0;
        while silent
            .set_read_timeout(Some(Duration::from_millis(10)))
            .is_ok()
            && silent.recv_from(&mut got).is_ok()
        {
            tries += 1;
        }
        assert!(tries >= 2, "asked again within the budget ({tries} tries)");

        let (addr, h) = one_answer(0, |q| {
            let mut r = q.to_vec();
            r[2] = 0x81;
            r[3] = 0x82; // SERVFAIL
            r
        });
        let r = ask(&[addr], "x", A, Instant::now() + Duration::from_secs(2));
        h.join().unwrap();
        assert!(
            matches!(r, Reply::NoAnswer(ref w) if w.contains("server failure")),
            "{r:?}"
        );
    }

    #[test]
    fn a_lost_reply_is_asked_again_and_the_next_one_counts() {
        let (addr, h) = one_answer(1, |q| {
            let id = u16::from_be_bytes([q[0], q[1]]);
            reply(id, 0, "accounts", A, &[(A, &[10, 0, 0, 7])])
        });
        let t = Instant::now();
        let r = ask(&[addr], "accounts", A, Instant::now() + BUDGET);
        h.join().unwrap();
        assert_eq!(r, Reply::Addrs(vec![IpAddr::from([10, 0, 0, 7])]));
        assert!(
            t.elapsed() < Duration::from_millis(800),
            "{:?}",
            t.elapsed()
        );
    }

    proptest! {
        #[test]
        fn any_reply_never_panics(b in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse(&b, "redis", A);
        }
    }
}
