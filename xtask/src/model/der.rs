//! Just enough X.509 DER reading to tell whether a certificate is stale:
//! its validity, its subjectAltName DNS/IP names and its key identifiers.
//! (rcgen only writes certificates; its x509-parser feature costs 18 crates
//! and ~10 s of a cold build that must stay under 60 s, for the few fields
//! read here. Every subjectAltName type is read: a SAN the reader skipped
//! would make a certificate stale forever.)

#[derive(Debug, Default, Clone)]
pub struct CertInfo {
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
    pub dns: Vec<String>,
    /// IPv4 and IPv6 addresses, as `std::net::IpAddr` prints them.
    pub ips: Vec<String>,
    pub emails: Vec<String>,
    pub uris: Vec<String>,
    pub subject_key_id: Option<Vec<u8>>,
    pub authority_key_id: Option<Vec<u8>>,
    pub is_ca: bool,
}

struct Tlv<'a> {
    tag: u8,
    body: &'a [u8],
}

fn read(b: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let tag = *b.first()?;
    let first = *b.get(1)? as usize;
    let (len, hdr) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *b.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let body = b.get(hdr..hdr + len)?;
    Some((Tlv { tag, body }, &b[hdr + len..]))
}

fn children(mut b: &[u8]) -> Option<Vec<Tlv<'_>>> {
    let mut out = vec![];
    while !b.is_empty() {
        let (t, rest) = read(b)?;
        out.push(t);
        b = rest;
    }
    Some(out)
}

fn time(t: &Tlv) -> Option<i64> {
    let s = std::str::from_utf8(t.body).ok()?;
    let (year, rest) = match t.tag {
        0x17 => {
            let y: i64 = s.get(0..2)?.parse().ok()?;
            (if y >= 50 { 1900 + y } else { 2000 + y }, s.get(2..)?)
        }
        0x18 => (s.get(0..4)?.parse().ok()?, s.get(4..)?),
        _ => return None,
    };
    let n = |i: usize| -> Option<i64> { rest.get(i..i + 2)?.parse().ok() };
    let (mo, d, h, mi, se) = (n(0)?, n(2)?, n(4)?, n(6)?, n(8)?);
    Some(days_from_civil(year, mo, d) * 86400 + h * 3600 + mi * 60 + se)
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

pub fn parse(der: &[u8]) -> Option<CertInfo> {
    let (cert, _) = read(der)?;
    let parts = children(cert.body)?;
    let tbs = children(parts.first()?.body)?;
    // version [0] is optional; skip it if present.
    let off = usize::from(tbs.first()?.tag == 0xa0);
    let validity = children(tbs.get(off + 3)?.body)?;
    let mut info = CertInfo {
        not_before: time(validity.first()?)?,
        not_after: time(validity.get(1)?)?,
        ..Default::default()
    };
    let Some(ext_wrapper) = tbs.iter().find(|t| t.tag == 0xa3) else {
        return Some(info);
    };
    let (exts, _) = read(ext_wrapper.body)?;
    for ext in children(exts.body)? {
        let fields = children(ext.body)?;
        let oid = fields.first()?.body;
        let value = fields.last()?.body;
        match oid {
            [0x55, 0x1d, 0x11] => {
                let (names, _) = read(value)?;
                for n in children(names.body)? {
                    match n.tag {
                        0x81 => info
                            .emails
                            .push(String::from_utf8_lossy(n.body).into_owned()),
                        0x82 => info.dns.push(String::from_utf8_lossy(n.body).into_owned()),
                        0x86 => info.uris.push(String::from_utf8_lossy(n.body).into_owned()),
                        0x87 => info.ips.push(ip_text(n.body)?),
                        // otherName, x400, directoryName, ediParty, registeredID:
                        // never written by this tool; kept out of the comparison.
                        _ => {}
                    }
                }
            }
            [0x55, 0x1d, 0x0e] => info.subject_key_id = Some(read(value)?.0.body.to_vec()),
            [0x55, 0x1d, 0x23] => {
                let (seq, _) = read(value)?;
                info.authority_key_id = children(seq.body)?
                    .into_iter()
                    .find(|t| t.tag == 0x80)
                    .map(|t| t.body.to_vec());
            }
            [0x55, 0x1d, 0x13] => {
                let (seq, _) = read(value)?;
                info.is_ca = children(seq.body)?
                    .first()
                    .is_some_and(|t| t.tag == 0x01 && t.body == [0xff]);
            }
            _ => {}
        }
    }
    Some(info)
}

/// An iPAddress SAN: 4 bytes (IPv4) or 16 (IPv6); anything else is malformed.
fn ip_text(b: &[u8]) -> Option<String> {
    let ip: std::net::IpAddr = match b.len() {
        4 => <[u8; 4]>::try_from(b).ok()?.into(),
        16 => <[u8; 16]>::try_from(b).ok()?.into(),
        _ => return None,
    };
    Some(ip.to_string())
}

/// An IP address written by a user, as `ip_text` prints it (`::0001` and
/// `::1` are the same SAN).
pub fn canonical_ip(s: &str) -> String {
    s.trim()
        .parse::<std::net::IpAddr>()
        .map(|i| i.to_string())
        .unwrap_or_else(|_| s.to_string())
}

/// The DER of the first certificate in a PEM text.
pub fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    let start = pem.find("-----BEGIN CERTIFICATE-----")? + 27;
    let end = pem[start..].find("-----END CERTIFICATE-----")? + start;
    base64_decode(&pem[start..end])
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = vec![];
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b'\n' | b'\r' | b' ' => continue,
            _ => return None,
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_san_type_is_read_back() {
        let mut p = rcgen::CertificateParams::new(vec![
            "a.example".to_string(),
            "::1".to_string(),
            "127.0.0.1".to_string(),
            "fe80::1:2".to_string(),
        ])
        .unwrap();
        p.subject_alt_names.push(rcgen::SanType::Rfc822Name(
            "ops@example.com".try_into().unwrap(),
        ));
        p.subject_alt_names.push(rcgen::SanType::URI(
            "https://a.example/x".try_into().unwrap(),
        ));
        let k = rcgen::KeyPair::generate().unwrap();
        let c = p.self_signed(&k).unwrap();
        let i = super::parse(c.der()).unwrap();
        assert_eq!(i.dns, ["a.example"]);
        assert_eq!(i.ips, ["::1", "127.0.0.1", "fe80::1:2"]);
        assert_eq!(i.emails, ["ops@example.com"]);
        assert_eq!(i.uris, ["https://a.example/x"]);
        assert_eq!(super::canonical_ip("0:0::0001"), "::1");
    }

    #[test]
    fn truncated_certificates_never_panic() {
        let k = rcgen::KeyPair::generate().unwrap();
        let c = rcgen::CertificateParams::new(vec!["::1".to_string()])
            .unwrap()
            .self_signed(&k)
            .unwrap();
        for n in 0..c.der().len() {
            let _ = super::parse(&c.der()[..n]);
        }
    }

    #[test]
    fn civil_days() {
        assert_eq!(super::days_from_civil(1970, 1, 1), 0);
        assert_eq!(super::days_from_civil(2000, 3, 1), 11017);
    }
}
