//! HTTP/1.1 GET, for the NGINX routes and http services.

use crate::wire::ReadWrite;

/// The most of a response the probe reads: the status and the start of
/// the body are all it looks at.
const MAX_RESPONSE: usize = 1 << 20;

/// Reads until the peer closes, errs after some bytes came, or
/// `MAX_RESPONSE` bytes arrived.
pub fn read_response(s: &mut dyn ReadWrite) -> Result<Vec<u8>, String> {
    let mut resp = vec![];
    let mut buf = [0u8; 4096];
    while resp.len() < MAX_RESPONSE {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => resp.extend(&buf[..n]),
            // TLS peers that close without close_notify: keep what came.
            Err(_) if !resp.is_empty() => break,
            Err(e) => return Err(format!("http read: {e}")),
        }
    }
    Ok(resp)
}

/// The status code and body of a response. Anything that does not start
/// with `HTTP/1.x NNN` and a complete header block is an error.
pub fn parse_response(resp: &[u8]) -> Result<(u16, String), String> {
    let Some(end) = resp.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(format!(
            "http: no complete response header in {} bytes",
            resp.len()
        ));
    };
    let head = String::from_utf8_lossy(&resp[..end]);
    let status_line = head.lines().next().unwrap_or("");
    let mut parts = status_line.split(' ');
    let (proto, code) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if !proto.starts_with("HTTP/1.") || code.len() != 3 {
        return Err(format!(
            "http: not an HTTP/1 status line: {:?}",
            status_line.chars().take(80).collect::<String>()
        ));
    }
    let status: u16 = code
        .parse()
        .map_err(|_| format!("http: bad status code {code:?}"))?;
    Ok((
        status,
        String::from_utf8_lossy(&resp[end + 4..]).trim().to_string(),
    ))
}

pub fn http_get(
    s: &mut dyn ReadWrite,
    host: &str,
    path: &str,
    expect: &str,
) -> Result<String, String> {
    let path = if path.is_empty() { "/" } else { path };
    if path
        .bytes()
        .chain(host.bytes())
        .any(|b| b <= b' ' || b == 0x7f)
    {
        return Err(format!("http: refusing a request with whitespace or control characters in {path:?} or {host:?}"));
    }
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nUser-Agent: monorepo-probe\r\n\r\n");
    crate::wire::io(s.write_all(req.as_bytes()), "http write")?;
    let (status, body) = parse_response(&read_response(s)?)?;
    if status != 200 {
        return Err(format!(
            "http: GET {path} answered {status}: {}",
            body.chars().take(200).collect::<String>()
        ));
    }
    if !expect.is_empty() && !body.contains(expect) {
        let shown: String = body.chars().take(200).collect();
        return Err(format!("http: GET {path} answered 200 but not from the expected service (wanted `{expect}` in {shown:?})"));
    }
    Ok(format!(
        "GET {path}: 200 {}",
        body.chars().take(120).collect::<String>()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Script;
    use proptest::prelude::*;

    #[test]
    fn a_200_with_the_expected_body_is_ok() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(
            http_get(&mut Script::new(r), "h", "/a/", "hell").unwrap(),
            "GET /a/: 200 hello"
        );
        assert!(http_get(&mut Script::new(r), "h", "/a/", "other").is_err());
    }

    #[test]
    fn truncated_headers_are_an_error() {
        let full = b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\n";
        for n in 0..full.len() {
            assert!(
                http_get(&mut Script::new(&full[..n]), "h", "/", "").is_err(),
                "cut at {n}"
            );
        }
    }

    #[test]
    fn a_path_with_a_newline_is_not_sent() {
        let mut s = Script::new(b"");
        assert!(http_get(&mut s, "h", "/a\r\nX: y", "").is_err());
        assert!(s.written.is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn any_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..512)) {
            let r = http_get(&mut Script::new(&b), "h", "/", "");
            // Success needs a status line and a complete header block.
            if r.is_ok() { prop_assert!(b.starts_with(b"HTTP/1.") && b.windows(4).any(|w| w == b"\r\n\r\n")); }
            let _ = parse_response(&b);
        }
        #[test]
        fn status_lines_never_panic(line in "HTTP/1\\.[01] .{0,12}\r\n.{0,20}\r\n\r\n.{0,20}") {
            let _ = parse_response(line.as_bytes());
        }
    }
}
