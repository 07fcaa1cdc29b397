//! Postgres: startup, SCRAM-SHA-256 or cleartext login, one query.

use ring::{digest, hmac, pbkdf2, rand::SecureRandom};

use crate::wire::{b64_decode, b64_encode, io, read_n, ReadWrite};

/// Largest message the probe accepts (a login and a one-row answer are tiny).
const MAX_MESSAGE: usize = 1 << 20;
/// Messages accepted per phase (login, query): notices and parameter
/// statuses are skipped, but not forever.
const MAX_MESSAGES: usize = 1000;
/// PBKDF2 rounds the probe will compute for SCRAM: Postgres uses 4096 by
/// default; a hostile server could ask for 2^32 and stall the probe.
const MAX_ITERATIONS: u32 = 1 << 20;

fn send(s: &mut dyn ReadWrite, tag: u8, body: &[u8]) -> Result<(), String> {
    let mut m = vec![tag];
    m.extend(((body.len() + 4) as u32).to_be_bytes());
    m.extend(body);
    io(s.write_all(&m), "postgres write")
}

/// One backend message: its tag and body.
pub fn read_message(s: &mut dyn ReadWrite) -> Result<(u8, Vec<u8>), String> {
    let h = read_n(s, 5, "postgres read")?;
    let len = u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize;
    if !(4..=MAX_MESSAGE + 4).contains(&len) {
        return Err(format!(
            "postgres: bad message length {len} (is this Postgres?)"
        ));
    }
    Ok((h[0], read_n(s, len - 4, "postgres read")?))
}

/// SQLSTATE 42501 insufficient_privilege: the server refused on purpose
/// (e.g. no CONNECT on the database). `denied` marks it in the error text.
pub const DENIED: &str = "denied:";

/// The SQLSTATE of an ErrorResponse.
pub fn sqlstate(b: &[u8]) -> String {
    b.split(|c| *c == 0)
        .find_map(|f| f.strip_prefix(b"C"))
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

fn error_text(b: &[u8]) -> String {
    if sqlstate(b) == "42501" {
        return format!("{DENIED} {}", plain_error_text(b));
    }
    plain_error_text(b)
}

fn plain_error_text(b: &[u8]) -> String {
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

/// An Authentication message: its code and the rest.
pub fn auth(b: &[u8]) -> Result<(u32, &[u8]), String> {
    match b {
        [a, b, c, d, rest @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), rest)),
        _ => Err(format!(
            "postgres: authentication message of {} bytes is too short",
            b.len()
        )),
    }
}

/// The server-first SCRAM message: (combined nonce, salt, iterations).
pub fn scram_server_first(msg: &str, client_nonce: &str) -> Result<(String, Vec<u8>, u32), String> {
    let attr = |k: &str| {
        msg.split(',')
            .find_map(|p| p.strip_prefix(k))
            .unwrap_or("")
            .to_string()
    };
    let (r, salt) = (attr("r="), b64_decode(&attr("s=")));
    let iters: u32 = attr("i=")
        .parse()
        .map_err(|_| "postgres: bad SCRAM iteration count")?;
    if !r.starts_with(client_nonce) || r.len() == client_nonce.len() {
        return Err("postgres: bad SCRAM server nonce".into());
    }
    if !(1..=MAX_ITERATIONS).contains(&iters) {
        return Err(format!("postgres: SCRAM asks for {iters} iterations (the probe computes 1 to {MAX_ITERATIONS})"));
    }
    Ok((r, salt, iters))
}

/// The first column of a DataRow, as text (NULL is empty).
pub fn first_column(b: &[u8]) -> Result<String, String> {
    let bad = || "postgres: malformed DataRow".to_string();
    let cols = u16::from_be_bytes([*b.first().ok_or_else(bad)?, *b.get(1).ok_or_else(bad)?]);
    if cols == 0 {
        return Ok(String::new());
    }
    let len = i32::from_be_bytes(b.get(2..6).ok_or_else(bad)?.try_into().unwrap());
    if len < 0 {
        return Ok(String::new());
    }
    let v = b.get(6..6 + len as usize).ok_or_else(bad)?;
    Ok(String::from_utf8_lossy(v).into_owned())
}

/// The StartupMessage (protocol 3.0) for `user` on `db`, length-prefixed.
fn startup_message(user: &str, db: &str) -> Vec<u8> {
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
    m
}

/// SCRAM state across the login: the client nonce and client-first-bare,
/// then the server signature expected in SASLFinal.
#[derive(Default)]
struct Scram {
    first: Option<(String, String)>,
    server_sig: Option<Vec<u8>>,
}

/// AuthenticationSASL: checks SCRAM-SHA-256 is offered and sends client-first.
fn scram_start(s: &mut dyn ReadWrite, rest: &[u8], scram: &mut Scram) -> Result<(), String> {
    if !String::from_utf8_lossy(rest).contains("SCRAM-SHA-256") {
        return Err("postgres: server offers no SCRAM-SHA-256".into());
    }
    let mut nb = [0u8; 18];
    ring::rand::SystemRandom::new()
        .fill(&mut nb)
        .map_err(|_| "rng")?;
    let nonce = b64_encode(&nb);
    let bare = format!("n=,r={nonce}");
    let first = format!("n,,{bare}");
    let mut body = b"SCRAM-SHA-256\0".to_vec();
    body.extend((first.len() as u32).to_be_bytes());
    body.extend(first.as_bytes());
    send(s, b'p', &body)?;
    scram.first = Some((nonce, bare));
    Ok(())
}

/// AuthenticationSASLContinue: derives the keys, sends client-final with the
/// proof and remembers the server signature to expect.
fn scram_continue(
    s: &mut dyn ReadWrite,
    rest: &[u8],
    password: &str,
    scram: &mut Scram,
) -> Result<(), String> {
    let (nonce, bare) = scram
        .first
        .clone()
        .ok_or("postgres: unexpected SASL continue")?;
    let server_first = String::from_utf8_lossy(rest).into_owned();
    let (r, salt, iters) = scram_server_first(&server_first, &nonce)?;
    let mut salted = [0u8; 32];
    let iters = std::num::NonZeroU32::new(iters).ok_or("postgres: zero SCRAM iterations")?;
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iters,
        &salt,
        password.as_bytes(),
        &mut salted,
    );
    let key = hmac::Key::new(hmac::HMAC_SHA256, &salted);
    let client_key = hmac::sign(&key, b"Client Key");
    let stored = digest::digest(&digest::SHA256, client_key.as_ref());
    let without_proof = format!("c=biws,r={r}");
    let auth = format!("{bare},{server_first},{without_proof}");
    let sig = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, stored.as_ref()),
        auth.as_bytes(),
    );
    let proof: Vec<u8> = client_key
        .as_ref()
        .iter()
        .zip(sig.as_ref())
        .map(|(a, b)| a ^ b)
        .collect();
    let server_key = hmac::sign(&key, b"Server Key");
    scram.server_sig = Some(
        hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, server_key.as_ref()),
            auth.as_bytes(),
        )
        .as_ref()
        .to_vec(),
    );
    send(
        s,
        b'p',
        format!("{without_proof},p={}", b64_encode(&proof)).as_bytes(),
    )
}

/// One Authentication message: answers it, or fails on what the probe cannot do.
fn authenticate(
    s: &mut dyn ReadWrite,
    b: &[u8],
    password: &str,
    scram: &mut Scram,
) -> Result<(), String> {
    let (code, rest) = auth(b)?;
    match code {
        0 => {}
        3 => {
            let mut p = password.as_bytes().to_vec();
            p.push(0);
            send(s, b'p', &p)?;
        }
        10 => scram_start(s, rest, scram)?,
        11 => scram_continue(s, rest, password, scram)?,
        12 => {
            let fin = String::from_utf8_lossy(rest).into_owned();
            let v = fin.strip_prefix("v=").map(b64_decode);
            if v.is_none() || scram.server_sig.is_none() || v != scram.server_sig {
                return Err("postgres: the server's SCRAM signature does not verify".into());
            }
        }
        5 => {
            return Err(
                "postgres: md5 password auth is not supported by the probe; use scram-sha-256"
                    .into(),
            )
        }
        c => return Err(format!("postgres: unsupported auth method {c}")),
    }
    Ok(())
}

/// The login phase: authentication messages until ReadyForQuery.
fn login(s: &mut dyn ReadWrite, password: &str) -> Result<(), String> {
    let mut scram = Scram::default();
    for _ in 0..MAX_MESSAGES {
        let (tag, b) = read_message(s)?;
        match tag {
            b'E' => return Err(error_text(&b)),
            b'R' => authenticate(s, &b, password, &mut scram)?,
            b'Z' => return Ok(()),
            _ => {}
        }
    }
    Err(format!(
        "postgres: no ReadyForQuery after {MAX_MESSAGES} messages"
    ))
}

/// The query phase: who the session is, then Terminate.
fn query(s: &mut dyn ReadWrite) -> Result<String, String> {
    send(
        s,
        b'Q',
        b"SELECT current_user || '@' || current_database()\0",
    )?;
    let mut row = None;
    for _ in 0..MAX_MESSAGES {
        let (tag, b) = read_message(s)?;
        match tag {
            b'E' => return Err(error_text(&b)),
            b'D' => row = Some(first_column(&b)?),
            b'Z' => {
                let _ = send(s, b'X', &[]);
                return match row {
                    Some(r) => Ok(format!("query answered as {r}")),
                    None => Err("postgres: the query returned no row".into()),
                };
            }
            _ => {}
        }
    }
    Err(format!(
        "postgres: no ReadyForQuery after {MAX_MESSAGES} messages"
    ))
}

/// Logs in (SCRAM-SHA-256 or cleartext) and runs a query.
pub fn postgres(
    s: &mut dyn ReadWrite,
    user: &str,
    password: &str,
    db: &str,
) -> Result<String, String> {
    io(s.write_all(&startup_message(user, db)), "postgres write")?;
    login(s, password)?;
    query(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Script;
    use proptest::prelude::*;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![tag];
        m.extend(((body.len() + 4) as u32).to_be_bytes());
        m.extend(body);
        m
    }

    /// A cleartext login and a one-row answer, as a server would send them.
    fn good_session() -> Vec<u8> {
        let mut v = msg(b'R', &3u32.to_be_bytes());
        v.extend(msg(b'R', &0u32.to_be_bytes()));
        v.extend(msg(b'S', b"server_version\x0016\x00"));
        v.extend(msg(b'Z', b"I"));
        let mut row = 1u16.to_be_bytes().to_vec();
        row.extend(6i32.to_be_bytes());
        row.extend(b"app@db");
        v.extend(msg(b'D', &row));
        v.extend(msg(b'C', b"SELECT 1\0"));
        v.extend(msg(b'Z', b"I"));
        v
    }

    #[test]
    fn a_good_session_answers() {
        let r = postgres(&mut Script::new(&good_session()), "app", "pw", "db");
        assert_eq!(r.unwrap(), "query answered as app@db");
    }

    #[test]
    fn a_short_authentication_message_is_an_error() {
        // This panicked before: the code was read as b[0..4] unchecked.
        assert!(postgres(&mut Script::new(&msg(b'R', &[0, 0])), "u", "p", "d").is_err());
    }

    #[test]
    fn scram_refuses_absurd_iteration_counts() {
        assert!(scram_server_first("r=abcX,s=AAAA,i=4294967295", "abc").is_err());
        assert!(scram_server_first("r=abcX,s=AAAA,i=0", "abc").is_err());
        assert!(scram_server_first("r=abcX,s=AAAA,i=4096", "abc").is_ok());
    }

    #[test]
    fn every_truncation_of_a_good_session_is_an_error() {
        let full = good_session();
        for n in 0..full.len() {
            assert!(
                postgres(&mut Script::new(&full[..n]), "app", "pw", "db").is_err(),
                "cut at {n}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn any_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..256)) {
            // No complete session ends with ReadyForQuery twice by chance
            // with these lengths; the point is: an Err, not a panic.
            let _ = postgres(&mut Script::new(&b), "u", "p", "d");
            let _ = read_message(&mut Script::new(&b));
            let _ = auth(&b);
            let _ = first_column(&b);
        }
        #[test]
        fn framed_garbage_is_an_error(tags in proptest::collection::vec((any::<u8>(), proptest::collection::vec(any::<u8>(), 0..40)), 0..20)) {
            let mut v = vec![];
            for (t, b) in &tags {
                v.extend(msg(*t, b));
            }
            // A well-framed stream of random messages may not log in: it
            // has no DataRow answer after a second ReadyForQuery.
            let r = postgres(&mut Script::new(&v), "u", "p", "d");
            let zs = tags.iter().filter(|(t, _)| *t == b'Z').count();
            if zs < 2 { prop_assert!(r.is_err()); }
        }
        #[test]
        fn scram_messages_never_panic(m in ".*", nonce in "[a-zA-Z0-9]{0,8}") {
            let _ = scram_server_first(&m, &nonce);
        }
    }
}
