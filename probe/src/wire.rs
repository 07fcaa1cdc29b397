//! What every protocol shares: the stream type, base64, and the bounds on
//! what a peer may make the probe read.
//!
//! The probe talks to the services under test, so every byte it reads is
//! untrusted: a broken service must give a failed cell, never a panic or a
//! hang. Each connection is wrapped in a `Bounded` stream that refuses to
//! read past a byte budget or a deadline; each parser also bounds its own
//! message sizes and counts, and reports malformed input as `Err`.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

/// Bytes one probe may read from a peer, all messages together.
pub const MAX_READ: u64 = 4 << 20;
/// Wall time one probe may spend talking to a peer after connecting.
pub const DEADLINE: Duration = Duration::from_secs(10);

pub trait ReadWrite: Read + Write {}
impl<T: Read + Write + ?Sized> ReadWrite for T {}

/// A stream that fails (instead of blocking or growing) once the peer has
/// sent `MAX_READ` bytes or `DEADLINE` has passed. Each socket read has its
/// own 4 s timeout, so a probe ends at most 4 s after the deadline.
pub struct Bounded<S> {
    inner: S,
    left: u64,
    deadline: Instant,
}

impl<S> Bounded<S> {
    pub fn new(inner: S) -> Self {
        Self::with(inner, MAX_READ, DEADLINE)
    }
    pub fn with(inner: S, budget: u64, time: Duration) -> Self {
        Bounded {
            inner,
            left: budget,
            deadline: Instant::now() + time,
        }
    }
}

impl<S: Read> Read for Bounded<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if Instant::now() > self.deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the peer took over {} s", DEADLINE.as_secs()),
            ));
        }
        if self.left == 0 {
            return Err(io::Error::other(format!(
                "the peer sent over {MAX_READ} bytes"
            )));
        }
        let n = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let got = self.inner.read(&mut buf[..n])?;
        self.left -= got as u64;
        Ok(got)
    }
}

impl<S: Write> Write for Bounded<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

pub fn io<T>(r: std::io::Result<T>, what: &str) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {e}"))
}

/// Reads exactly `n` bytes (the caller has already bounded `n`).
pub fn read_n(s: &mut dyn Read, n: usize, what: &str) -> Result<Vec<u8>, String> {
    let mut b = vec![0u8; n];
    io(s.read_exact(&mut b), what)?;
    Ok(b)
}

pub fn b64_encode(b: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut o = String::new();
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
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

/// Lenient decoding: characters outside the alphabet are skipped.
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

/// A peer for the parsers' tests: reads come from `input`, writes vanish.
#[cfg(test)]
pub struct Script {
    pub input: io::Cursor<Vec<u8>>,
    pub written: Vec<u8>,
}

#[cfg(test)]
impl Script {
    pub fn new(input: &[u8]) -> Self {
        Script {
            input: io::Cursor::new(input.to_vec()),
            written: vec![],
        }
    }
}

#[cfg(test)]
impl Read for Script {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.input.read(buf)
    }
}

#[cfg(test)]
impl Write for Script {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bounded_stops_at_the_budget() {
        let mut s = Bounded::with(io::repeat(7), 10, DEADLINE);
        let mut buf = [0u8; 64];
        assert_eq!(s.read(&mut buf).unwrap(), 10);
        assert!(s.read(&mut buf).is_err());
    }

    #[test]
    fn bounded_stops_at_the_deadline() {
        let mut s = Bounded::with(io::repeat(7), 1 << 30, Duration::ZERO);
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(
            s.read(&mut [0u8; 4]).unwrap_err().kind(),
            io::ErrorKind::TimedOut
        );
    }

    proptest! {
        #[test]
        fn b64_round_trips(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(b64_decode(&b64_encode(&b)), b);
        }
        #[test]
        fn b64_decode_takes_any_text(s in ".*") {
            let _ = b64_decode(&s);
        }
    }
}
