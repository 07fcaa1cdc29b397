//! NGINX: a small parser that finds every `location` and where it proxies
//! to, and the per-service endpoint files (`nginx/locations/<name>.conf`)
//! that `add-service --public` writes. One file per service means adding or
//! removing an endpoint never rewrites a line of a hand-written config.

use std::path::Path;

use crate::diag::{Diagnostic, Error};

pub const DIR: &str = "nginx";
pub const LOCATIONS: &str = "nginx/locations";

#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub path: String,
    /// `http`, `https`, `grpc` or `grpcs`.
    pub scheme: String,
    pub host: String,
    pub port: u16,
    /// Repository-relative file and 1-based line of the `location`.
    pub file: String,
    pub line: usize,
}

#[derive(Debug)]
enum Tok {
    Word(String, usize),
    Open(usize),
    Close(usize),
    Semi(usize),
}

fn tokenize(src: &str, file: &str) -> Result<Vec<Tok>, Error> {
    let mut toks = vec![];
    let mut line = 1;
    let mut chars = src.chars().peekable();
    let mut word = String::new();
    let flush = |word: &mut String, toks: &mut Vec<Tok>, line: usize| {
        if !word.is_empty() {
            toks.push(Tok::Word(std::mem::take(word), line));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\n' => {
                flush(&mut word, &mut toks, line);
                line += 1;
            }
            '#' if word.is_empty() => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        line += 1;
                        break;
                    }
                }
            }
            '"' | '\'' if word.is_empty() => {
                let start = line;
                let mut closed = false;
                while let Some(d) = chars.next() {
                    if d == c {
                        closed = true;
                        break;
                    }
                    if d == '\\' {
                        if let Some(e) = chars.next() {
                            word.push(e);
                        }
                        continue;
                    }
                    if d == '\n' {
                        line += 1;
                    }
                    word.push(d);
                }
                if !closed {
                    return Err(Diagnostic::error(format!("{file}:{start}: unterminated quoted string")).fix("close the quote"));
                }
                toks.push(Tok::Word(std::mem::take(&mut word), start));
            }
            '{' | '}' | ';' => {
                flush(&mut word, &mut toks, line);
                toks.push(match c {
                    '{' => Tok::Open(line),
                    '}' => Tok::Close(line),
                    _ => Tok::Semi(line),
                });
            }
            c if c.is_whitespace() => flush(&mut word, &mut toks, line),
            c => word.push(c),
        }
    }
    flush(&mut word, &mut toks, line);
    Ok(toks)
}

/// Parses one config file and returns its routes. Checks that braces balance
/// and that every directive ends with `;`.
pub fn parse_routes(src: &str, file: &str) -> Result<Vec<Route>, Error> {
    let toks = tokenize(src, file)?;
    let mut routes = vec![];
    // Stack of open blocks: (directive words, line).
    let mut stack: Vec<(Vec<String>, usize)> = vec![];
    let mut words: Vec<String> = vec![];
    let mut first_line = 0;
    // `set $var value;` seen so far, for `proxy_pass http://$var;`.
    let mut vars: Vec<(String, String)> = vec![];
    for t in toks {
        match t {
            Tok::Word(w, l) => {
                if words.is_empty() {
                    first_line = l;
                }
                words.push(w);
            }
            Tok::Open(l) => {
                if words.is_empty() {
                    return Err(Diagnostic::error(format!("{file}:{l}: `{{` without a directive")).fix("remove the stray brace"));
                }
                stack.push((std::mem::take(&mut words), first_line));
            }
            Tok::Semi(l) => {
                if words.is_empty() {
                    continue;
                }
                let d = std::mem::take(&mut words);
                if d[0] == "set" && d.len() == 3 {
                    vars.push((d[1].clone(), d[2].clone()));
                }
                let pass = matches!(d[0].as_str(), "proxy_pass" | "grpc_pass");
                if let (true, Some((loc, loc_line))) = (pass, stack.last()) {
                    if loc[0] == "location" && d.len() >= 2 {
                        let path = loc.last().cloned().unwrap_or_default();
                        let mut target = d[1].clone();
                        for (k, v) in vars.iter().rev() {
                            if target.contains(k.as_str()) {
                                target = target.replace(k.as_str(), v);
                            }
                        }
                        let target = &target;
                        let (scheme, rest) = target.split_once("://").unwrap_or(("http", target));
                        let hostport = rest.split('/').next().unwrap_or("");
                        let (host, port) = match hostport.rsplit_once(':') {
                            Some((h, p)) => (h, p.parse().unwrap_or(0)),
                            None => (hostport, if scheme.ends_with('s') { 443 } else { 80 }),
                        };
                        routes.push(Route {
                            path,
                            scheme: scheme.to_string(),
                            host: host.to_string(),
                            port,
                            file: file.to_string(),
                            line: *loc_line,
                        });
                    }
                }
                let _ = l;
            }
            Tok::Close(l) => {
                if !words.is_empty() {
                    return Err(Diagnostic::error(format!("{file}:{first_line}: directive `{}` has no `;`",
                        words.join(" ")
                    )).fix("end it with `;`"));
                }
                if stack.pop().is_none() {
                    return Err(Diagnostic::error(format!("{file}:{l}: unbalanced `}}`")).fix("remove it or add the matching `{`"));
                }
            }
        }
    }
    if let Some((d, l)) = stack.last() {
        return Err(Diagnostic::error(format!("{file}:{l}: block `{}` is never closed",
            d.join(" ")
        )).fix("add the matching `}}`"));
    }
    if !words.is_empty() {
        return Err(Diagnostic::error(format!("{file}:{first_line}: directive `{}` has no `;`",
            words.join(" ")
        )).fix("end it with `;`"));
    }
    Ok(routes)
}

/// Every `*.conf` file under `nginx/`, repository-relative, sorted.
pub fn conf_files(root: &Path) -> Vec<String> {
    let mut out = vec![];
    let mut dirs = vec![root.join(DIR)];
    while let Some(d) = dirs.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "conf") {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

pub fn location_file(service: &str) -> String {
    format!("{LOCATIONS}/{service}.conf")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_routes_with_lines() {
        let src = "server {\n  listen 443 ssl;\n  # a comment { with braces\n  location /api/ {\n    proxy_pass http://gateway:8080;\n  }\n  include /etc/nginx/locations/*.conf;\n}\n";
        let r = parse_routes(src, "nginx/x.conf").unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].path.as_str(), r[0].host.as_str(), r[0].port, r[0].line), ("/api/", "gateway", 8080, 4));
    }

    #[test]
    fn unbalanced_braces_name_the_line() {
        let e = parse_routes("http {\n  server {\n  }\n", "nginx/n.conf").unwrap_err().to_string();
        assert!(e.contains("nginx/n.conf:1") && e.contains("never closed"), "{e}");
        let e = parse_routes("a;\n}\n", "f").unwrap_err().to_string();
        assert!(e.contains("f:2") && e.contains("unbalanced"), "{e}");
    }
}
