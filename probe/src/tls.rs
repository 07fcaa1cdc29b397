//! TLS client (rustls): verifies the chain against the local CA and the
//! host name, and drives the handshake so certificate errors are named.

use std::net::TcpStream;
use std::sync::Arc;

use crate::wire::b64_decode;

/// The largest CA file the probe reads (a PEM certificate is ~2 KB).
const MAX_CA_FILE: u64 = 1 << 20;

/// Every certificate in a PEM text, as DER.
pub fn pem_certs(pem: &str) -> Vec<Vec<u8>> {
    let mut out = vec![];
    let mut rest = pem;
    while let Some(s) = rest.find("-----BEGIN CERTIFICATE-----") {
        let body = &rest[s + 27..];
        let Some(e) = body.find("-----END CERTIFICATE-----") else {
            break;
        };
        out.push(b64_decode(&body[..e]));
        rest = &body[e..];
    }
    out
}

fn read_ca(path: &str) -> Result<String, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| format!("cannot read CA file {path}: {e}"))?;
    let mut text = String::new();
    f.take(MAX_CA_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read CA file {path}: {e}"))?;
    if text.len() as u64 > MAX_CA_FILE {
        return Err(format!("CA file {path} is over {MAX_CA_FILE} bytes"));
    }
    Ok(text)
}

pub type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

pub fn wrap(
    tcp: TcpStream,
    ca_path: &str,
    name: &str,
    h2: bool,
    peer: &str,
) -> Result<Tls, String> {
    let ca = read_ca(ca_path)?;
    let mut roots = rustls::RootCertStore::empty();
    for der in pem_certs(&ca) {
        roots
            .add(der.into())
            .map_err(|e| format!("bad CA certificate: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    if h2 {
        cfg.alpn_protocols = vec![b"h2".to_vec()];
    }
    let server_name = rustls::pki_types::ServerName::try_from(name.to_string())
        .map_err(|e| format!("bad TLS name {name}: {e}"))?;
    let conn =
        rustls::ClientConnection::new(Arc::new(cfg), server_name).map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
            let msg = e.to_string();
            return Err(if msg.contains("NotValidForName") {
                format!("TLS: the certificate of {peer} is not valid for the name `{name}`")
            } else if msg.contains("UnknownIssuer") || msg.contains("BadSignature") {
                format!("TLS: the certificate of {peer} is not signed by the local CA")
            } else {
                format!("TLS handshake with {peer} failed: {msg}")
            });
        }
    }
    Ok(tls)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_pem_text_never_panics(s in ".{0,200}", cut in 0usize..40) {
            let t = format!("-----BEGIN CERTIFICATE-----{s}-----END CERTIFICATE-----");
            let _ = pem_certs(&t);
            let _ = pem_certs(t.get(..t.len().saturating_sub(cut)).unwrap_or(&t));
            let _ = pem_certs(&s);
        }
    }
}
