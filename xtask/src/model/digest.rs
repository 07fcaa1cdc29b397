//! SHA-256 digests as lowercase hex, for the two things they are used for:
//! the digest of one content (a file, a stamp line, a password as Redis's
//! ACL stores it) and the key of a recipe made of several parts (an image's
//! inputs), where each part is length-prefixed so that `["ab", "c"]` and
//! `["a", "bc"]` differ.

fn hex(d: ring::digest::Digest) -> String {
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of `bytes`, as hex: the usual digest of one content.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, bytes))
}

/// The key of a recipe: SHA-256 over each part's length (u64, little
/// endian) and bytes, as hex. Not the digest of the concatenation.
pub fn recipe_hash(parts: &[&[u8]]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(&(p.len() as u64).to_le_bytes());
        ctx.update(p);
    }
    hex(ctx.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_digest_and_recipe_key() {
        // sha256("abc"), the FIPS 180-2 test vector.
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(recipe_hash(&[b"ab", b"c"]), recipe_hash(&[b"a", b"bc"]));
        assert_ne!(recipe_hash(&[b"abc"]), sha256_hex(b"abc"));
        let mut framed = 3u64.to_le_bytes().to_vec();
        framed.extend(b"abc");
        assert_eq!(recipe_hash(&[b"abc"]), sha256_hex(&framed));
    }
}
