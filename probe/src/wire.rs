//! The protocols, each as little as a probe needs.

use std::io::{Read, Write};

use ring::{digest, hmac, pbkdf2, rand::SecureRandom};

pub fn b64_encode(b: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut o = String::new();
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                o.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                o.push('=');
            }
        }
    }
    o
}

pub fn b64_decode(s: &str) -> Vec<u8> {
    let mut out = vec![];
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => continue,
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

pub fn pem_certs(pem: &str) -> Vec<Vec<u8>> {
    let mut out = vec![];
    let mut rest = pem;
    while let Some(s) = rest.find("-----BEGIN CERTIFICATE-----") {
        let body = &rest[s + 27..];
        let Some(e) = body.find("-----END CERTIFICATE-----") else { break };
        out.push(b64_decode(&body[..e]));
        rest = &body[e..];
    }
    out
}

fn io<T>(r: std::io::Result<T>, what: &str) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {e}"))
}

// --- Postgres -------------------------------------------------------------

fn pg_send(s: &mut dyn ReadWrite, tag: u8, body: &[u8]) -> Result<(), String> {
    let mut m = vec![tag];
    m.extend(((body.len() + 4) as u32).to_be_bytes());
    m.extend(body);
    io(s.write_all(&m), "postgres write")
}

fn pg_read(s: &mut dyn ReadWrite) -> Result<(u8, Vec<u8>), String> {
    let mut h = [0u8; 5];
    io(s.read_exact(&mut h), "postgres read")?;
    let len = u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize;
    if !(4..=1 << 24).contains(&len) {
        return Err("postgres: bad message length (is this Postgres?)".into());
    }
    let mut b = vec![0u8; len - 4];
    io(s.read_exact(&mut b), "postgres read")?;
    Ok((h[0], b))
}

fn pg_error(b: &[u8]) -> String {
    let mut msg = String::new();
    for f in b.split(|c| *c == 0) {
        if let Some((&k, v)) = f.split_first() {
            if k == b'M' || k == b'C' {
                msg.push_str(&String::from_utf8_lossy(v));
                msg.push(' ');
            }
        }
    }
    format!("postgres: {}", msg.trim())
}

pub trait ReadWrite: Read + Write {}
impl<T: Read + Write + ?Sized> ReadWrite for T {}

/// Logs in (SCRAM-SHA-256 or cleartext) and runs a query.
pub fn postgres(s: &mut dyn ReadWrite, user: &str, password: &str, db: &str) -> Result<String, String> {
    let mut startup = vec![];
    startup.extend(196608u32.to_be_bytes());
    for (k, v) in [("user", user), ("database", db)] {
        startup.extend(k.as_bytes());
        startup.push(0);
        startup.extend(v.as_bytes());
        startup.push(0);
    }
    startup.push(0);
    let mut m = ((startup.len() + 4) as u32).to_be_bytes().to_vec();
    m.extend(startup);
    io(s.write_all(&m), "postgres write")?;
    let mut scram: Option<(String, String)> = None; // (client nonce, client-first-bare)
    let mut server_sig: Option<Vec<u8>> = None;
    loop {
        let (tag, b) = pg_read(s)?;
        match tag {
            b'E' => return Err(pg_error(&b)),
            b'R' => {
                let code = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                match code {
                    0 => {}
                    3 => {
                        let mut p = password.as_bytes().to_vec();
                        p.push(0);
                        pg_send(s, b'p', &p)?;
                    }
                    10 => {
                        if !String::from_utf8_lossy(&b[4..]).contains("SCRAM-SHA-256") {
                            return Err("postgres: server offers no SCRAM-SHA-256".into());
                        }
                        let mut nb = [0u8; 18];
                        ring::rand::SystemRandom::new().fill(&mut nb).map_err(|_| "rng")?;
                        let nonce = b64_encode(&nb);
                        let bare = format!("n=,r={nonce}");
                        let first = format!("n,,{bare}");
                        let mut body = b"SCRAM-SHA-256\0".to_vec();
                        body.extend((first.len() as u32).to_be_bytes());
                        body.extend(first.as_bytes());
                        pg_send(s, b'p', &body)?;
                        scram = Some((nonce, bare));
                    }
                    11 => {
                        let (nonce, bare) = scram.clone().ok_or("postgres: unexpected SASL continue")?;
                        let server_first = String::from_utf8_lossy(&b[4..]).into_owned();
                        let attr = |k: &str| server_first.split(',').find_map(|p| p.strip_prefix(k)).unwrap_or("").to_string();
                        let (r, salt, iters) = (attr("r="), b64_decode(&attr("s=")), attr("i=").parse::<u32>().unwrap_or(0));
                        if !r.starts_with(&nonce) || iters == 0 {
                            return Err("postgres: bad SCRAM server message".into());
                        }
                        let mut salted = [0u8; 32];
                        pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, std::num::NonZeroU32::new(iters).unwrap(), &salt, password.as_bytes(), &mut salted);
                        let key = hmac::Key::new(hmac::HMAC_SHA256, &salted);
                        let client_key = hmac::sign(&key, b"Client Key");
                        let stored = digest::digest(&digest::SHA256, client_key.as_ref());
                        let without_proof = format!("c=biws,r={r}");
                        let auth = format!("{bare},{server_first},{without_proof}");
                        let sig = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, stored.as_ref()), auth.as_bytes());
                        let proof: Vec<u8> = client_key.as_ref().iter().zip(sig.as_ref()).map(|(a, b)| a ^ b).collect();
                        let server_key = hmac::sign(&key, b"Server Key");
                        server_sig = Some(hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, server_key.as_ref()), auth.as_bytes()).as_ref().to_vec());
                        pg_send(s, b'p', format!("{without_proof},p={}", b64_encode(&proof)).as_bytes())?;
                    }
                    12 => {
                        let fin = String::from_utf8_lossy(&b[4..]).into_owned();
                        let v = fin.strip_prefix("v=").map(b64_decode);
                        if v.is_none() || v != server_sig {
                            return Err("postgres: the server's SCRAM signature does not verify".into());
                        }
                    }
                    5 => return Err("postgres: md5 password auth is not supported by the probe; use scram-sha-256".into()),
                    c => return Err(format!("postgres: unsupported auth method {c}")),
                }
            }
            b'Z' => break,
            _ => {}
        }
    }
    pg_send(s, b'Q', b"SELECT current_user || '@' || current_database()\0")?;
    let mut row = String::new();
    loop {
        let (tag, b) = pg_read(s)?;
        match tag {
            b'E' => return Err(pg_error(&b)),
            b'D' if b.len() > 6 => row = String::from_utf8_lossy(&b[6..]).into_owned(),
            b'Z' => break,
            _ => {}
        }
    }
    let _ = pg_send(s, b'X', &[]);
    Ok(format!("query answered as {row}"))
}

// --- Redis ----------------------------------------------------------------

fn redis_line(s: &mut dyn ReadWrite) -> Result<String, String> {
    let mut line = vec![];
    let mut b = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        if io(s.read(&mut b), "redis read")? == 0 {
            return Err("redis: connection closed".into());
        }
        line.push(b[0]);
        if line.len() > 4096 {
            return Err("redis: reply too long (is this Redis?)".into());
        }
    }
    Ok(String::from_utf8_lossy(&line).trim_end().to_string())
}

pub fn redis(s: &mut dyn ReadWrite, password: &str) -> Result<String, String> {
    if !password.is_empty() {
        let cmd = format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{password}\r\n", password.len());
        io(s.write_all(cmd.as_bytes()), "redis write")?;
        let r = redis_line(s)?;
        if r != "+OK" {
            return Err(format!("redis: AUTH refused: {r}"));
        }
    }
    io(s.write_all(b"*1\r\n$4\r\nPING\r\n"), "redis write")?;
    match redis_line(s)?.as_str() {
        "+PONG" => Ok("PING answered PONG".into()),
        other => Err(format!("redis: PING answered {other}")),
    }
}

// --- gRPC health over HTTP/2 ---------------------------------------------

fn frame(t: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.extend([t, flags]);
    f.extend(stream.to_be_bytes());
    f.extend(payload);
    f
}

fn hpack_str(out: &mut Vec<u8>, s: &str) {
    // Lengths here are all < 127: one byte, no Huffman.
    out.push(s.len() as u8);
    out.extend(s.as_bytes());
}

/// Calls grpc.health.v1.Health/Check and wants SERVING. The response
/// headers are not decoded (that would need HPACK's Huffman tables): the
/// message itself says SERVING or not, and its absence means an error.
pub fn grpc_health(s: &mut dyn ReadWrite, authority: &str, tls: bool) -> Result<String, String> {
    let mut hb = vec![0x83, if tls { 0x87 } else { 0x86 }];
    hb.push(0x04);
    hpack_str(&mut hb, "/grpc.health.v1.Health/Check");
    hb.push(0x01);
    hpack_str(&mut hb, authority);
    hb.extend([0x0f, 0x10]);
    hpack_str(&mut hb, "application/grpc");
    hb.push(0x00);
    hpack_str(&mut hb, "te");
    hpack_str(&mut hb, "trailers");
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(4, 0, 0, &[]));
    out.extend(frame(1, 0x4, 1, &hb));
    out.extend(frame(0, 0x1, 1, &[0, 0, 0, 0, 0]));
    io(s.write_all(&out), "grpc write")?;
    io(s.flush(), "grpc write")?;
    let mut data = vec![];
    loop {
        let mut h = [0u8; 9];
        io(s.read_exact(&mut h), "grpc read (is this a gRPC server? plaintext vs TLS?)")?;
        let len = (h[0] as usize) << 16 | (h[1] as usize) << 8 | h[2] as usize;
        let (t, flags) = (h[3], h[4]);
        let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
        if len > 1 << 20 {
            return Err("grpc: frame too large".into());
        }
        let mut p = vec![0u8; len];
        io(s.read_exact(&mut p), "grpc read")?;
        match t {
            4 if flags & 1 == 0 => io(s.write_all(&frame(4, 1, 0, &[])), "grpc write")?,
            6 if flags & 1 == 0 => io(s.write_all(&frame(6, 1, 0, &p)), "grpc write")?,
            7 => return Err(format!("grpc: connection closed by server (GOAWAY {})", String::from_utf8_lossy(p.get(8..).unwrap_or(&[])))),
            3 if stream == 1 => return Err("grpc: stream reset by server".into()),
            0 if stream == 1 => {
                let body = if flags & 0x8 != 0 { &p[1..p.len() - p[0] as usize] } else { &p[..] };
                data.extend(body);
                if flags & 1 != 0 {
                    break;
                }
            }
            1 if stream == 1 && flags & 1 != 0 => break,
            _ => {}
        }
    }
    if data.len() < 5 {
        return Err("grpc: Health/Check returned no message (the server answered with an error status)".into());
    }
    let msg = &data[5..];
    let status = if msg.len() >= 2 && msg[0] == 0x08 { msg[1] } else { 0 };
    match status {
        1 => Ok("Health/Check: SERVING".into()),
        2 => Err("grpc: Health/Check: NOT_SERVING (a dependency of the service is down)".into()),
        n => Err(format!("grpc: Health/Check: status {n}")),
    }
}

// --- HTTP/1.1 -------------------------------------------------------------

pub fn http_get(s: &mut dyn ReadWrite, host: &str, path: &str, expect: &str) -> Result<String, String> {
    let path = if path.is_empty() { "/" } else { path };
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nUser-Agent: monorepo-probe\r\n\r\n");
    io(s.write_all(req.as_bytes()), "http write")?;
    let mut resp = vec![];
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => resp.extend(&buf[..n]),
            // TLS peers that close without close_notify: keep what came.
            Err(_) if !resp.is_empty() => break,
            Err(e) => return Err(format!("http read: {e}")),
        }
        if resp.len() > 1 << 20 {
            break;
        }
    }
    let text = String::from_utf8_lossy(&resp);
    let status: u16 = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("").trim();
    if status != 200 {
        return Err(format!("http: GET {path} answered {status}: {}", body.chars().take(200).collect::<String>()));
    }
    if !expect.is_empty() && !body.contains(expect) {
        return Err(format!("http: GET {path} answered 200 but not from the expected service (wanted `{expect}` in {body:?})"));
    }
    Ok(format!("GET {path}: 200 {}", body.chars().take(120).collect::<String>()))
}
