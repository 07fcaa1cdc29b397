//! Which variables hold secrets: `check` refuses literal values for them
//! (MR019), `verify` masks their values in its output, and dry-run diffs
//! hide them.

/// A variable whose name says it holds a secret (a password, token, key).
pub fn is_secret_name(k: &str) -> bool {
    let k = k.to_ascii_uppercase();
    [
        "PASSWORD",
        "SECRET",
        "TOKEN",
        "PASSWD",
        "API_KEY",
        "PRIVATE_KEY",
    ]
    .iter()
    .any(|p| k.contains(p))
}
