//! gRPC health over HTTP/2, by hand: one request on stream 1, frames read
//! until the response ends. The response headers are not decoded (that
//! would need HPACK's Huffman tables): the message itself says SERVING or
//! not, and its absence means an error status.

use crate::wire::{io, read_n, ReadWrite};

/// Largest frame payload accepted: HTTP/2's default SETTINGS_MAX_FRAME_SIZE,
/// which the probe never raises.
pub const MAX_FRAME: usize = 16_384;
/// Frames accepted per call (settings, pings, window updates are answered
/// or skipped, but not forever).
const MAX_FRAMES: usize = 1000;
/// The health answer is a few bytes; anything near this is not one.
const MAX_DATA: usize = 64 << 10;

pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

fn frame(t: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.extend([t, flags]);
    f.extend(stream.to_be_bytes());
    f.extend(payload);
    f
}

pub fn read_frame(s: &mut dyn ReadWrite) -> Result<Frame, String> {
    let h = read_n(s, 9, "grpc read (is this a gRPC server? plaintext vs TLS?)")?;
    let len = (h[0] as usize) << 16 | (h[1] as usize) << 8 | h[2] as usize;
    if len > MAX_FRAME {
        return Err(format!(
            "grpc: frame of {len} bytes, over the {MAX_FRAME}-byte maximum"
        ));
    }
    let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
    Ok(Frame {
        kind: h[3],
        flags: h[4],
        stream,
        payload: read_n(s, len, "grpc read")?,
    })
}

/// The data of a DATA frame, without its padding (RFC 9113 6.1).
pub fn data_payload(flags: u8, p: &[u8]) -> Result<&[u8], String> {
    if flags & 0x8 == 0 {
        return Ok(p);
    }
    let (&pad, rest) = p
        .split_first()
        .ok_or("grpc: padded DATA frame without a pad length")?;
    rest.len()
        .checked_sub(pad as usize)
        .map(|n| &rest[..n])
        .ok_or_else(|| "grpc: DATA padding longer than the frame".into())
}

/// The serving status in a gRPC message (5-byte prefix, then a
/// HealthCheckResponse whose field 1 is the status).
pub fn health_status(data: &[u8]) -> Result<u8, String> {
    let Some(msg) = data.get(5..) else {
        return Err(
            "grpc: Health/Check returned no message (the server answered with an error status)"
                .into(),
        );
    };
    let declared = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
    if data[0] != 0 || declared != msg.len() {
        return Err("grpc: malformed Health/Check message".into());
    }
    Ok(match msg {
        [0x08, s, ..] => *s,
        _ => 0,
    })
}

fn hpack_str(out: &mut Vec<u8>, s: &str) -> Result<(), String> {
    // One-byte lengths, no Huffman: enough for the names the probe sends.
    if s.len() >= 127 {
        return Err(format!("grpc: authority `{s}` is too long"));
    }
    out.push(s.len() as u8);
    out.extend(s.as_bytes());
    Ok(())
}

/// Calls grpc.health.v1.Health/Check and wants SERVING.
pub fn grpc_health(s: &mut dyn ReadWrite, authority: &str, tls: bool) -> Result<String, String> {
    let mut hb = vec![0x83, if tls { 0x87 } else { 0x86 }];
    hb.push(0x04);
    hpack_str(&mut hb, "/grpc.health.v1.Health/Check")?;
    hb.push(0x01);
    hpack_str(&mut hb, authority)?;
    hb.extend([0x0f, 0x10]);
    hpack_str(&mut hb, "application/grpc")?;
    hb.push(0x00);
    hpack_str(&mut hb, "te")?;
    hpack_str(&mut hb, "trailers")?;
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(4, 0, 0, &[]));
    out.extend(frame(1, 0x4, 1, &hb));
    out.extend(frame(0, 0x1, 1, &[0, 0, 0, 0, 0]));
    io(s.write_all(&out), "grpc write")?;
    io(s.flush(), "grpc write")?;
    let mut data = vec![];
    let mut ended = false;
    for _ in 0..MAX_FRAMES {
        let f = read_frame(s)?;
        let p = &f.payload;
        match f.kind {
            4 if f.flags & 1 == 0 => io(s.write_all(&frame(4, 1, 0, &[])), "grpc write")?,
            6 if f.flags & 1 == 0 => io(s.write_all(&frame(6, 1, 0, p)), "grpc write")?,
            7 => {
                return Err(format!(
                    "grpc: connection closed by server (GOAWAY {})",
                    String::from_utf8_lossy(p.get(8..).unwrap_or(&[]))
                ))
            }
            3 if f.stream == 1 => return Err("grpc: stream reset by server".into()),
            0 if f.stream == 1 => {
                data.extend(data_payload(f.flags, p)?);
                if data.len() > MAX_DATA {
                    return Err(format!("grpc: over {MAX_DATA} bytes of response data"));
                }
                if f.flags & 1 != 0 {
                    ended = true;
                    break;
                }
            }
            1 if f.stream == 1 && f.flags & 1 != 0 => {
                ended = true;
                break;
            }
            _ => {}
        }
    }
    if !ended {
        return Err(format!(
            "grpc: the response did not end within {MAX_FRAMES} frames"
        ));
    }
    match health_status(&data)? {
        1 => Ok("Health/Check: SERVING".into()),
        2 => Err("grpc: Health/Check: NOT_SERVING (a dependency of the service is down)".into()),
        n => Err(format!("grpc: Health/Check: status {n}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Script;
    use proptest::prelude::*;

    fn serving() -> Vec<u8> {
        let mut v = frame(4, 0, 0, &[]);
        v.extend(frame(1, 0x4, 1, &[0x88]));
        v.extend(frame(0, 0, 1, &[0, 0, 0, 0, 2, 0x08, 0x01]));
        v.extend(frame(1, 0x5, 1, &[0x40]));
        v
    }

    #[test]
    fn serving_is_ok_and_every_truncation_is_an_error() {
        let full = serving();
        assert_eq!(
            grpc_health(&mut Script::new(&full), "a", false).unwrap(),
            "Health/Check: SERVING"
        );
        for n in 0..full.len() {
            assert!(
                grpc_health(&mut Script::new(&full[..n]), "a", false).is_err(),
                "cut at {n}"
            );
        }
    }

    #[test]
    fn bad_padding_is_an_error_not_a_panic() {
        // Both panicked before: p[0] on an empty frame, p.len() - pad underflow.
        assert!(data_payload(0x8, &[]).is_err());
        assert!(data_payload(0x8, &[200, 1, 2]).is_err());
        assert_eq!(data_payload(0x8, &[1, 7, 0]).unwrap(), &[7]);
        let mut v = frame(0, 0x9, 1, &[]);
        v.extend(frame(0, 0x9, 1, &[9]));
        assert!(grpc_health(&mut Script::new(&v), "a", false).is_err());
    }

    #[test]
    fn an_oversized_frame_is_refused_before_it_is_read() {
        let v = [0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 1];
        assert!(grpc_health(&mut Script::new(&v), "a", false)
            .unwrap_err()
            .contains("over the"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn any_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = grpc_health(&mut Script::new(&b), "a", true);
            let _ = read_frame(&mut Script::new(&b));
            let _ = health_status(&b);
            if let Some((f, p)) = b.split_first() { let _ = data_payload(*f, p); }
        }
        #[test]
        fn framed_garbage_never_panics(frames in proptest::collection::vec((0u8..10, any::<u8>(), 0u32..3, proptest::collection::vec(any::<u8>(), 0..24)), 0..12)) {
            let mut v = vec![];
            for (t, fl, st, p) in &frames { v.extend(frame(*t, *fl, *st, p)); }
            let _ = grpc_health(&mut Script::new(&v), "a", false);
        }
    }
}
