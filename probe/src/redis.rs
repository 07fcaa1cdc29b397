//! Redis: AUTH when a password is set, then PING.

use crate::wire::{io, ReadWrite};

/// Longest simple reply the probe reads (`+PONG`, `-ERR ...`).
const MAX_LINE: usize = 4096;

/// One RESP line, without its CRLF. A reply that never ends its line
/// within `MAX_LINE` bytes, or a closed connection, is an error.
pub fn read_line(s: &mut dyn ReadWrite) -> Result<String, String> {
    let mut line = vec![];
    let mut b = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        if line.len() >= MAX_LINE {
            return Err(format!(
                "redis: reply longer than {MAX_LINE} bytes (is this Redis?)"
            ));
        }
        if io(s.read(&mut b), "redis read")? == 0 {
            return Err("redis: connection closed".into());
        }
        line.push(b[0]);
    }
    line.truncate(line.len() - 2);
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// A RESP array of bulk strings.
fn command(args: &[&str]) -> Vec<u8> {
    let mut c = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        c.extend(format!("${}\r\n{a}\r\n", a.len()).into_bytes());
    }
    c
}

/// Marks a refusal by the server's ACL (`-NOPERM`), as the pg probe marks 42501.
pub const DENIED: &str = "denied:";

/// AUTH as `user` (when given), then SET `key` to a fresh value and GET it
/// back. A `-NOPERM` reply is a refusal (`denied:`), not a broken server.
pub fn redis_key(
    s: &mut dyn ReadWrite,
    user: &str,
    password: &str,
    key: &str,
) -> Result<String, String> {
    auth(s, user, password)?;
    let value = format!("probe-{}", std::process::id());
    io(s.write_all(&command(&["SET", key, &value])), "redis write")?;
    let r = read_line(s)?;
    if r.starts_with("-NOPERM") {
        return Err(format!("{DENIED} redis: SET {key} as `{user}`: {r}"));
    }
    if r != "+OK" {
        return Err(format!("redis: SET {key} answered {r}"));
    }
    io(s.write_all(&command(&["GET", key])), "redis write")?;
    let r = read_line(s)?;
    if r != format!("${}", value.len()) {
        return Err(format!("redis: GET {key} answered {r}"));
    }
    let got = read_line(s)?;
    if got != value {
        return Err(format!("redis: GET {key} gave {got:?}, not what SET wrote"));
    }
    Ok(format!("SET and GET {key} as `{user}`"))
}

fn auth(s: &mut dyn ReadWrite, user: &str, password: &str) -> Result<(), String> {
    if !password.is_empty() {
        let cmd = if user.is_empty() {
            command(&["AUTH", password])
        } else {
            command(&["AUTH", user, password])
        };
        io(s.write_all(&cmd), "redis write")?;
        let r = read_line(s)?;
        if r != "+OK" {
            return Err(format!("redis: AUTH refused: {r}"));
        }
    }
    Ok(())
}

pub fn redis(
    s: &mut dyn ReadWrite,
    user: &str,
    password: &str,
    noauth_ok: bool,
) -> Result<String, String> {
    if !password.is_empty() {
        let cmd = if user.is_empty() {
            command(&["AUTH", password])
        } else {
            command(&["AUTH", user, password])
        };
        io(s.write_all(&cmd), "redis write")?;
        let r = read_line(s)?;
        if r != "+OK" {
            return Err(format!("redis: AUTH refused: {r}"));
        }
    }
    io(s.write_all(b"*1\r\n$4\r\nPING\r\n"), "redis write")?;
    match read_line(s)?.as_str() {
        "+PONG" => Ok("PING answered PONG".into()),
        // Readiness without credentials: a server whose default user is off
        // answers the protocol, which is all readiness asks.
        other if noauth_ok && other.starts_with("-NOAUTH") => {
            Ok("answered NOAUTH (the default user is off)".into())
        }
        other => Err(format!("redis: PING answered {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Script;
    use proptest::prelude::*;

    #[test]
    fn pong_is_ok_and_every_truncation_is_an_error() {
        let full = b"+OK\r\n+PONG\r\n";
        assert!(redis(&mut Script::new(full), "", "pw", false).is_ok());
        for n in 0..full.len() {
            assert!(
                redis(&mut Script::new(&full[..n]), "", "pw", false).is_err(),
                "cut at {n}"
            );
        }
    }

    #[test]
    fn noperm_is_a_denial_and_a_round_trip_is_ok() {
        let denied = redis_key(
            &mut Script::new(b"+OK\r\n-NOPERM no permissions\r\n"),
            "a",
            "pw",
            "b:k",
        )
        .unwrap_err();
        assert!(denied.starts_with(DENIED), "{denied}");
        let v = format!("probe-{}", std::process::id());
        let ok = format!("+OK\r\n+OK\r\n${}\r\n{v}\r\n", v.len());
        assert!(redis_key(&mut Script::new(ok.as_bytes()), "a", "pw", "a:k").is_ok());
        let wrong = format!("+OK\r\n+OK\r\n${}\r\n{}\r\n", v.len(), "x".repeat(v.len()));
        assert!(redis_key(&mut Script::new(wrong.as_bytes()), "a", "pw", "a:k").is_err());
    }

    #[test]
    fn an_endless_line_is_refused() {
        let r = read_line(&mut Script::new(&vec![b'a'; 10_000]));
        assert!(r.unwrap_err().contains("longer than"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn any_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..512)) {
            let r = redis(&mut Script::new(&b), "", "", false);
            let _ = redis_key(&mut Script::new(&b), "u", "p", "u:k");
            // Only `+PONG\r\n` itself is success.
            prop_assert_eq!(r.is_ok(), b.starts_with(b"+PONG\r\n"));
            let _ = read_line(&mut Script::new(&b));
        }
    }
}
