//! A tar stream passed through byte for byte, minus whole entries that a
//! caller's test rejects once it has seen their data.
//!
//! Hand-written rather than the `tar` crate: that crate reads each entry
//! and writes a new header (PAX records and GNU long names re-encoded,
//! some dropped), and a seed must unpack exactly as the daemon archived
//! it; here every kept byte is the daemon's own. What it must understand
//! to find entry boundaries is small: 512-byte headers, octal or base-256
//! sizes, PAX `size=`/`path=` records and GNU long names.

use std::io::{self, Write};

const BLOCK: usize = 512;
/// Extension headers (PAX, GNU long names) larger than this are refused.
const MAX_EXT: usize = 1 << 20;

/// Which entries to hold and test: `hold(path, size)` says whether a
/// regular file's data is read whole before it is written on (keep it
/// small: held data sits in memory); `drop(path, data)` then decides.
pub struct TarFilter<W, H, D> {
    out: W,
    hold: H,
    drop: D,
    buf: Vec<u8>,
    /// Extension headers read, not yet written: they go with their entry.
    pending: Vec<u8>,
    /// The next entry's path and size from its extension headers.
    ext_path: Option<String>,
    ext_size: Option<u64>,
    state: State,
    /// Entries dropped, and their bytes (headers included).
    pub dropped: (usize, u64),
}

enum State {
    Header,
    /// Data of a kept entry still to pass (padding included).
    Pass(u64),
    /// After the end-of-archive block: everything passes.
    Rest,
}

fn err(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

fn padded(size: u64) -> u64 {
    size.div_ceil(BLOCK as u64) * BLOCK as u64
}

/// A numeric header field: octal (NUL/space padded) or GNU base-256.
fn number(field: &[u8]) -> io::Result<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut v: u64 = (field[0] & 0x7f) as u64;
        for b in &field[1..] {
            v = v
                .checked_mul(256)
                .and_then(|v| v.checked_add(*b as u64))
                .ok_or_else(|| err("tar: base-256 size overflows".into()))?;
        }
        return Ok(v);
    }
    let s = field
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| *b as char)
        .collect::<String>();
    let s = s.trim();
    if s.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(s, 8).map_err(|_| err(format!("tar: size field {s:?} is not octal")))
}

fn cstr(b: &[u8]) -> String {
    String::from_utf8_lossy(b.split(|c| *c == 0).next().unwrap_or_default()).into_owned()
}

/// ustar's name, with its prefix field when the magic says ustar.
fn header_path(h: &[u8]) -> String {
    let name = cstr(&h[0..100]);
    if &h[257..262] == b"ustar" {
        let prefix = cstr(&h[345..500]);
        if !prefix.is_empty() {
            return format!("{prefix}/{name}");
        }
    }
    name
}

/// PAX records: "<len> <key>=<value>\n" each.
fn pax(data: &[u8], path: &mut Option<String>, size: &mut Option<u64>) -> io::Result<()> {
    let mut rest = data;
    while !rest.is_empty() && rest[0] != 0 {
        let sp = rest
            .iter()
            .position(|b| *b == b' ')
            .ok_or_else(|| err("tar: PAX record without a length".into()))?;
        let len: usize = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| err("tar: PAX record length is not a number".into()))?;
        if len <= sp + 1 || len > rest.len() {
            return Err(err("tar: PAX record length out of range".into()));
        }
        let rec = &rest[sp + 1..len - 1];
        if let Some(v) = rec.strip_prefix(b"path=") {
            *path = Some(String::from_utf8_lossy(v).into_owned());
        } else if let Some(v) = rec.strip_prefix(b"size=") {
            *size = Some(
                std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| err("tar: PAX size is not a number".into()))?,
            );
        }
        rest = &rest[len..];
    }
    Ok(())
}

impl<W: Write, H: FnMut(&str, u64) -> bool, D: FnMut(&str, &[u8]) -> bool> TarFilter<W, H, D> {
    pub fn new(out: W, hold: H, drop: D) -> Self {
        TarFilter {
            out,
            hold,
            drop,
            buf: vec![],
            pending: vec![],
            ext_path: None,
            ext_size: None,
            state: State::Header,
            dropped: (0, 0),
        }
    }

    /// Takes the next bytes of the stream, in chunks of any size.
    pub fn write(&mut self, mut chunk: &[u8]) -> io::Result<()> {
        loop {
            self.drain_buf()?;
            if chunk.is_empty() {
                return Ok(());
            }
            match self.state {
                State::Rest => return self.out.write_all(chunk),
                // Kept data goes straight through, never into `buf`.
                State::Pass(left) if self.buf.is_empty() => {
                    let n = left.min(chunk.len() as u64) as usize;
                    self.out.write_all(&chunk[..n])?;
                    chunk = &chunk[n..];
                    self.state = if left == n as u64 {
                        State::Header
                    } else {
                        State::Pass(left - n as u64)
                    };
                }
                _ => {
                    self.buf.extend_from_slice(chunk);
                    chunk = &[];
                }
            }
        }
    }

    /// Handles what `buf` holds, as far as it goes.
    fn drain_buf(&mut self) -> io::Result<()> {
        loop {
            match self.state {
                State::Rest => {
                    self.out.write_all(&self.buf)?;
                    self.buf.clear();
                    return Ok(());
                }
                State::Pass(left) => {
                    let n = left.min(self.buf.len() as u64) as usize;
                    self.out.write_all(&self.buf[..n])?;
                    self.buf.drain(..n);
                    self.state = if left == n as u64 {
                        State::Header
                    } else {
                        State::Pass(left - n as u64)
                    };
                    if self.buf.is_empty() {
                        return Ok(());
                    }
                }
                State::Header => {
                    if !self.step()? {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Handles one header (and a held or extension entry) at the start of
    /// `buf`; false when `buf` does not hold enough yet.
    fn step(&mut self) -> io::Result<bool> {
        if self.buf.len() < BLOCK {
            return Ok(false);
        }
        let h: [u8; BLOCK] = self.buf[..BLOCK].try_into().expect("a block");
        if h.iter().all(|b| *b == 0) {
            if !self.pending.is_empty() {
                return Err(err("tar: extension header without an entry".into()));
            }
            self.state = State::Rest;
            return Ok(true);
        }
        let actual = h[..148]
            .iter()
            .chain([b' '; 8].iter())
            .chain(h[156..].iter())
            .map(|b| *b as u64)
            .sum::<u64>();
        if number(&h[148..156])? != actual {
            return Err(err(format!(
                "tar: header checksum mismatch at entry {:?}",
                header_path(&h)
            )));
        }
        let typ = h[156];
        let size = number(&h[124..136])?;
        match typ {
            b'x' | b'L' | b'K' => {
                let total = BLOCK + padded(size) as usize;
                if total > MAX_EXT {
                    return Err(err(format!("tar: extension header of {size} bytes")));
                }
                if self.buf.len() < total {
                    return Ok(false);
                }
                let data = &self.buf[BLOCK..BLOCK + size as usize];
                match typ {
                    b'x' => pax(data, &mut self.ext_path, &mut self.ext_size)?,
                    b'L' => self.ext_path = Some(cstr(data)),
                    _ => {}
                }
                self.pending.extend(self.buf.drain(..total));
                Ok(true)
            }
            _ => {
                // Read, not taken: a held entry may need more bytes first.
                let path = self.ext_path.clone().unwrap_or_else(|| header_path(&h));
                let size = self.ext_size.unwrap_or(size);
                let regular = typ == b'0' || typ == 0;
                if regular && (self.hold)(&path, size) {
                    let total = BLOCK + padded(size) as usize;
                    if self.buf.len() < total {
                        return Ok(false);
                    }
                    (self.ext_path, self.ext_size) = (None, None);
                    if (self.drop)(&path, &self.buf[BLOCK..BLOCK + size as usize]) {
                        self.dropped.0 += 1;
                        self.dropped.1 += (self.pending.len() + total) as u64;
                        self.pending.clear();
                    } else {
                        self.out.write_all(&self.pending)?;
                        self.pending.clear();
                        self.out.write_all(&self.buf[..total])?;
                    }
                    self.buf.drain(..total);
                    return Ok(true);
                }
                (self.ext_path, self.ext_size) = (None, None);
                self.out.write_all(&self.pending)?;
                self.pending.clear();
                self.out.write_all(&h)?;
                self.buf.drain(..BLOCK);
                // Links, directories and the like carry no data (a
                // hard link's size field may be set: it has none).
                let data = if matches!(typ, b'1' | b'2' | b'3' | b'4' | b'5' | b'6') {
                    0
                } else {
                    padded(size)
                };
                if data > 0 {
                    self.state = State::Pass(data);
                }
                Ok(true)
            }
        }
    }

    /// The stream ended: it must have ended between entries.
    pub fn finish(mut self) -> io::Result<W> {
        match self.state {
            State::Rest => {}
            State::Pass(left) => {
                return Err(err(format!(
                    "tar: the stream ended {left} bytes into an entry"
                )))
            }
            State::Header if !self.buf.is_empty() || !self.pending.is_empty() => {
                return Err(err(format!(
                    "tar: the stream ended inside a header ({} bytes left over)",
                    self.buf.len() + self.pending.len()
                )))
            }
            // No end-of-archive blocks: GNU tar accepts that, so do we.
            State::Header => {}
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn tmp(tag: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("xtask-tarfilter-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    fn filter(input: &[u8], chunk: usize) -> (Vec<u8>, (usize, u64)) {
        let mut f = TarFilter::new(
            vec![],
            |p: &str, _| p.ends_with(".zero") || p.ends_with(".held"),
            |_: &str, d: &[u8]| d.iter().all(|b| *b == 0),
        );
        for c in input.chunks(chunk) {
            f.write(c).unwrap();
        }
        let dropped = f.dropped;
        (f.finish().unwrap(), dropped)
    }

    /// GNU tar is the oracle: it makes the archives (both formats it
    /// writes, long names, links, an empty file) and reads ours back.
    #[test]
    fn drops_exactly_the_rejected_entries_at_any_chunking() {
        let d = tmp("oracle");
        let src = d.join("src");
        let long = "a".repeat(90) + "/" + &"b".repeat(90);
        std::fs::create_dir_all(src.join(&long)).unwrap();
        std::fs::write(src.join("x.zero"), vec![0u8; 3000]).unwrap();
        std::fs::write(src.join(&long).join("y.zero"), vec![0u8; 1024]).unwrap();
        std::fs::write(src.join("z.held"), [vec![0u8; 700], vec![1]].concat()).unwrap();
        std::fs::write(src.join("kept"), b"data").unwrap();
        std::fs::write(src.join("empty.zero"), b"").unwrap();
        std::fs::write(src.join(&long).join("c".repeat(120)), vec![7u8; 513]).unwrap();
        std::os::unix::fs::symlink("kept", src.join("link")).unwrap();
        std::fs::hard_link(src.join("kept"), src.join("hard")).unwrap();
        for format in ["gnu", "pax"] {
            let tar = d.join(format!("{format}.tar"));
            let st = Command::new("tar")
                .args(["--format", format, "-C"])
                .arg(&src)
                .arg("-cf")
                .arg(&tar)
                .arg(".")
                .status()
                .unwrap();
            assert!(st.success());
            let input = std::fs::read(&tar).unwrap();
            let (whole, dropped) = filter(&input, input.len());
            assert_eq!(
                dropped.0, 3,
                "{format}: x.zero, y.zero (long name) and the empty file"
            );
            assert_eq!(
                whole.len() as u64,
                input.len() as u64 - dropped.1,
                "{format}"
            );
            for chunk in [1, 7, 511, 512, 513, 4096] {
                assert_eq!(
                    filter(&input, chunk).0,
                    whole,
                    "{format} in chunks of {chunk}"
                );
            }
            let out = d.join(format!("{format}.out.tar"));
            std::fs::write(&out, &whole).unwrap();
            let x = d.join(format!("x-{format}"));
            std::fs::create_dir_all(&x).unwrap();
            let st = Command::new("tar")
                .arg("-C")
                .arg(&x)
                .arg("-xf")
                .arg(&out)
                .status()
                .unwrap();
            assert!(st.success(), "{format}: GNU tar reads the filtered archive");
            assert!(
                !x.join("x.zero").exists()
                    && !x.join(&long).join("y.zero").exists()
                    && !x.join("empty.zero").exists()
            );
            assert_eq!(
                std::fs::read(x.join("z.held")).unwrap(),
                std::fs::read(src.join("z.held")).unwrap()
            );
            assert_eq!(
                std::fs::read(x.join(&long).join("c".repeat(120))).unwrap(),
                vec![7u8; 513]
            );
            assert_eq!(
                std::fs::read_link(x.join("link")).unwrap(),
                std::path::Path::new("kept")
            );
            assert_eq!(std::fs::read(x.join("hard")).unwrap(), b"data");
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_cut_stream_or_a_damaged_header_is_an_error() {
        let d = tmp("cut");
        std::fs::write(d.join("f.held"), vec![0u8; 2048]).unwrap();
        std::fs::write(d.join("g"), vec![1u8; 2048]).unwrap();
        let tar = d.join("t.tar");
        assert!(Command::new("tar")
            .arg("-C")
            .arg(&d)
            .args(["-cf"])
            .arg(&tar)
            .args(["f.held", "g"])
            .status()
            .unwrap()
            .success());
        let input = std::fs::read(&tar).unwrap();
        for cut in [100, 512, 1024, 2560 + 100, 2560 + 512 + 10] {
            let mut f = TarFilter::new(
                vec![],
                |p: &str, _| p.ends_with(".held"),
                |_: &str, d: &[u8]| d.iter().all(|b| *b == 0),
            );
            f.write(&input[..cut]).unwrap();
            assert!(f.finish().is_err(), "cut at {cut}");
        }
        let mut bad = input.clone();
        bad[3] ^= 1;
        let mut f = TarFilter::new(vec![], |_: &str, _| false, |_: &str, _: &[u8]| false);
        assert!(f.write(&bad).is_err());
    }
}
