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
            return Err(format!("redis: reply longer than {MAX_LINE} bytes (is this Redis?)"));
        }
        if io(s.read(&mut b), "redis read")? == 0 {
            return Err("redis: connection closed".into());
        }
        line.push(b[0]);
    }
    line.truncate(line.len() - 2);
    Ok(String::from_utf8_lossy(&line).into_owned())
}

pub fn redis(s: &mut dyn ReadWrite, password: &str) -> Result<String, String> {
    if !password.is_empty() {
        let cmd = format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{password}\r\n", password.len());
        io(s.write_all(cmd.as_bytes()), "redis write")?;
        let r = read_line(s)?;
        if r != "+OK" {
            return Err(format!("redis: AUTH refused: {r}"));
        }
    }
    io(s.write_all(b"*1\r\n$4\r\nPING\r\n"), "redis write")?;
    match read_line(s)?.as_str() {
        "+PONG" => Ok("PING answered PONG".into()),
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
        assert!(redis(&mut Script::new(full), "pw").is_ok());
        for n in 0..full.len() {
            assert!(redis(&mut Script::new(&full[..n]), "pw").is_err(), "cut at {n}");
        }
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
            let r = redis(&mut Script::new(&b), "");
            // Only `+PONG\r\n` itself is success.
            prop_assert_eq!(r.is_ok(), b.starts_with(b"+PONG\r\n"));
            let _ = read_line(&mut Script::new(&b));
        }
    }
}
