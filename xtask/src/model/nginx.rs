//! NGINX: a reader that follows NGINX's own tokenizer (`ngx_conf_read_token`):
//! quoted strings with escapes, `$var` and `${var}` (a `{` right after `$`
//! belongs to the word), `#` comments only where a token starts, `}` inside
//! a word is part of it; `*_by_lua_block { ... }` holds Lua and is skipped
//! as Lua. It follows `include` (paths under `/etc/nginx/` or relative to
//! it are files under `nginx/`), knows each `location`'s `server`, and
//! follows `proxy_pass http://<upstream>` to the upstream's `server` lines.
//! Written by hand: no crate parses NGINX configs with line numbers.
//!
//! The per-service endpoint files (`nginx/locations/<name>.conf`) that
//! `add-service --public` writes are files of their own (written by
//! `edit::nginx`), so adding or removing an endpoint never rewrites a line
//! of a hand-written config.

use std::collections::BTreeMap;
use std::path::Path;

use crate::diag::{Diagnostic, Error};

fn err(file: &str, line: usize, what: impl Into<String>, fix: &str) -> Error {
    Diagnostic::error(what).at(file, line).fix(fix)
}

pub const DIR: &str = "nginx";
pub const LOCATIONS: &str = "nginx/locations";
/// Where the NGINX image puts `nginx/` (see nginx/Dockerfile).
const PREFIX: &str = "/etc/nginx/";

#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub path: String,
    /// `=`, `~`, `~*`, `^~`, or empty.
    pub modifier: String,
    /// `http`, `https`, `grpc` or `grpcs`.
    pub scheme: String,
    pub host: String,
    pub port: u16,
    /// Every (host, port) the route reaches: the upstream's servers when
    /// `proxy_pass` names an `upstream`, else `host:port`.
    pub targets: Vec<(String, u16)>,
    /// Repository-relative file and 1-based line of the `location`.
    pub file: String,
    pub line: usize,
    /// `file:line` of the enclosing `server` block, if any.
    pub server: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String, usize),
    Open(usize),
    Close(usize),
    Semi(usize),
}

fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut it = raw.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.peek() {
                Some(&q @ ('"' | '\'' | '\\')) => {
                    out.push(q);
                    it.next();
                }
                Some('t') => {
                    out.push('\t');
                    it.next();
                }
                Some('r') => {
                    out.push('\r');
                    it.next();
                }
                Some('n') => {
                    out.push('\n');
                    it.next();
                }
                _ => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Skips a Lua block body (after its `{`): strings, `--` comments and long
/// brackets may hold braces. Returns the index after the closing `}`.
fn skip_lua(c: &[char], mut i: usize, line: &mut usize) -> Option<usize> {
    let mut depth = 1;
    let long_close = |c: &[char], i: usize| -> Option<usize> {
        // `[[` or `[=*[` at i: the index after the matching close.
        let eq = c[i + 1..].iter().take_while(|x| **x == '=').count();
        if c.get(i + 1 + eq) != Some(&'[') {
            return None;
        }
        let close: Vec<char> = std::iter::once(']')
            .chain(std::iter::repeat_n('=', eq))
            .chain(std::iter::once(']'))
            .collect();
        let mut j = i + 2 + eq;
        while j + close.len() <= c.len() {
            if c[j..j + close.len()] == close[..] {
                return Some(j + close.len());
            }
            j += 1;
        }
        Some(c.len())
    };
    while i < c.len() {
        match c[i] {
            '\n' => {
                *line += 1;
                i += 1;
            }
            '{' => {
                depth += 1;
                i += 1;
            }
            '}' => {
                depth -= 1;
                i += 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            '-' if c.get(i + 1) == Some(&'-') => {
                if c.get(i + 2) == Some(&'[') {
                    if let Some(j) = long_close(c, i + 2) {
                        *line += c[i..j].iter().filter(|x| **x == '\n').count();
                        i = j;
                        continue;
                    }
                }
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
            }
            '[' => match long_close(c, i) {
                Some(j) => {
                    *line += c[i..j].iter().filter(|x| **x == '\n').count();
                    i = j;
                }
                None => i += 1,
            },
            q @ ('"' | '\'') => {
                i += 1;
                while i < c.len() && c[i] != q && c[i] != '\n' {
                    i += if c[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    None
}

/// Where the bare word that starts at `i` ends: at whitespace, `;` or `{`,
/// except a `{` right after `$` (`${var}`) and an escaped character.
fn word_end(c: &[char], mut i: usize) -> usize {
    let mut var = false;
    while i < c.len() {
        let d = c[i];
        if d == '{' && var {
            i += 1;
            continue;
        }
        var = false;
        if d == '\\' {
            i += 2;
            continue;
        }
        if d == '$' {
            var = true;
        } else if matches!(d, ' ' | '\t' | '\r' | '\n') || d == ';' || d == '{' {
            break;
        }
        i += 1;
    }
    i.min(c.len())
}

fn no_semicolon(file: &str, line: usize, words: &[String]) -> Error {
    err(
        file,
        line,
        format!("directive `{}` has no `;`", words.join(" ")),
        "end it with `;`",
    )
}

fn tokenize(src: &str, file: &str) -> Result<Vec<Tok>, Error> {
    let c: Vec<char> = src.chars().collect();
    let mut toks = vec![];
    let mut line = 1;
    let mut i = 0;
    // The first word of the statement being read (to spot Lua blocks).
    let mut first: Option<String> = None;
    let ws = |ch: char| matches!(ch, ' ' | '\t' | '\r' | '\n');
    while i < c.len() {
        let ch = c[i];
        match ch {
            '\n' => {
                line += 1;
                i += 1;
            }
            _ if ws(ch) => i += 1,
            ';' | '}' => {
                toks.push(if ch == ';' {
                    Tok::Semi(line)
                } else {
                    Tok::Close(line)
                });
                first = None;
                i += 1;
            }
            '{' => {
                toks.push(Tok::Open(line));
                i += 1;
                if first
                    .take()
                    .is_some_and(|w| w.ends_with("_by_lua_block") || w == "lua_block")
                {
                    let start = line;
                    i = skip_lua(&c, i, &mut line).ok_or_else(|| {
                        err(
                            file,
                            start,
                            "Lua block is never closed",
                            "add the matching `}`",
                        )
                    })?;
                    toks.push(Tok::Close(line));
                }
            }
            '#' => {
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
            }
            '"' | '\'' => {
                let start = line;
                let mut j = i + 1;
                while j < c.len() && c[j] != ch {
                    if c[j] == '\\' {
                        j += 1;
                    }
                    if c.get(j) == Some(&'\n') {
                        line += 1;
                    }
                    j += 1;
                }
                if j >= c.len() {
                    return Err(err(
                        file,
                        start,
                        "unterminated quoted string",
                        "close the quote",
                    ));
                }
                let w = unescape(&c[i + 1..j].iter().collect::<String>());
                first.get_or_insert_with(|| w.clone());
                toks.push(Tok::Word(w, start));
                i = j + 1;
                // NGINX wants a space, `;`, `{` or `)` after a closing quote.
                if let Some(&n) = c.get(i) {
                    if !(ws(n) || n == ';' || n == '{' || n == ')') {
                        return Err(err(
                            file,
                            line,
                            format!("unexpected `{n}` right after a quoted string"),
                            "put a space or `;` after the closing quote",
                        ));
                    }
                }
            }
            _ => {
                let start = i;
                let i2 = word_end(&c, i);
                let w = unescape(&c[start..i2].iter().collect::<String>());
                line += c[start..i2].iter().filter(|x| **x == '\n').count();
                first.get_or_insert_with(|| w.clone());
                toks.push(Tok::Word(w, line));
                i = i2;
            }
        }
    }
    Ok(toks)
}

/// One directive: its words, line, and block (if it has one).
#[derive(Debug, Clone)]
pub struct Directive {
    pub args: Vec<String>,
    pub line: usize,
    pub block: Option<Vec<Directive>>,
}

/// Parses one file into its directives; checks braces and `;`.
pub fn parse(src: &str, file: &str) -> Result<Vec<Directive>, Error> {
    let toks = tokenize(src, file)?;
    let mut stack: Vec<(Vec<Directive>, Vec<String>, usize)> = vec![(vec![], vec![], 0)];
    let mut words: Vec<String> = vec![];
    let mut first_line = 0;
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
                    return Err(err(
                        file,
                        l,
                        "`{` without a directive",
                        "remove the stray brace",
                    ));
                }
                stack.push((vec![], std::mem::take(&mut words), first_line));
            }
            Tok::Semi(l) => {
                if words.is_empty() {
                    return Err(err(file, l, "unexpected `;`", "remove the stray `;`"));
                }
                stack.last_mut().unwrap().0.push(Directive {
                    args: std::mem::take(&mut words),
                    line: first_line,
                    block: None,
                });
            }
            Tok::Close(l) => {
                if !words.is_empty() {
                    return Err(no_semicolon(file, first_line, &words));
                }
                if stack.len() == 1 {
                    return Err(err(
                        file,
                        l,
                        "unbalanced `}`",
                        "remove it or add the matching `{`",
                    ));
                }
                let (body, args, line) = stack.pop().unwrap();
                stack.last_mut().unwrap().0.push(Directive {
                    args,
                    line,
                    block: Some(body),
                });
            }
        }
    }
    if stack.len() > 1 {
        let (_, d, l) = stack.last().unwrap();
        return Err(err(
            file,
            *l,
            format!("block `{}` is never closed", d.join(" ")),
            "add the matching `}`",
        ));
    }
    if !words.is_empty() {
        return Err(no_semicolon(file, first_line, &words));
    }
    Ok(stack.pop().unwrap().0)
}

/// Parses one config file on its own and returns its routes.
#[cfg(test)]
pub fn parse_routes(src: &str, file: &str) -> Result<Vec<Route>, Error> {
    let files = BTreeMap::from([(file.to_string(), parse(src, file)?)]);
    Ok(Config::from_files(files).routes)
}

/// Every config file under `nginx/` and what they route.
#[derive(Debug, Default)]
pub struct Config {
    pub routes: Vec<Route>,
    /// `file:line` of every `server` that includes `nginx/locations/*.conf`.
    pub location_servers: Vec<String>,
}

fn glob_match(pat: &str, s: &str) -> bool {
    match pat.split_once('*') {
        None => pat == s,
        Some((a, b)) => {
            s.starts_with(a)
                && (0..=s.len() - a.len())
                    .any(|i| s.is_char_boundary(a.len() + i) && glob_match(b, &s[a.len() + i..]))
        }
    }
}

/// An `include` pattern as repository paths under `nginx/` (a pattern
/// outside `/etc/nginx/` names nothing in the repository).
fn include_pattern(p: &str) -> Option<String> {
    let rel = match p.strip_prefix(PREFIX) {
        Some(r) => r,
        None if !p.starts_with('/') => p,
        None => return None,
    };
    Some(format!("{DIR}/{rel}"))
}

struct Walk<'a> {
    files: &'a BTreeMap<String, Vec<Directive>>,
    upstreams: BTreeMap<String, Vec<(String, u16)>>,
    vars: Vec<(String, String)>,
    out: Config,
}

fn hostport(hp: &str, scheme: &str) -> (String, u16) {
    let default = if scheme.ends_with('s') { 443 } else { 80 };
    match hp.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            (h.to_string(), p.parse().unwrap_or(0))
        }
        _ => (hp.to_string(), default),
    }
}

impl Walk<'_> {
    fn collect_upstreams(&mut self, ds: &[Directive]) {
        for d in ds {
            if let (Some(b), true) = (&d.block, d.args[0] == "upstream" && d.args.len() == 2) {
                let servers = b
                    .iter()
                    .filter(|s| s.args[0] == "server" && s.args.len() >= 2)
                    .map(|s| hostport(&s.args[1], "http"))
                    .collect();
                self.upstreams.insert(d.args[1].clone(), servers);
            } else if let Some(b) = &d.block {
                self.collect_upstreams(b);
            }
        }
    }

    fn included(&self, pat: &str) -> Vec<String> {
        let Some(p) = include_pattern(pat) else {
            return vec![];
        };
        self.files
            .keys()
            .filter(|f| glob_match(&p, f))
            .cloned()
            .collect()
    }

    fn walk(
        &mut self,
        file: &str,
        ds: &[Directive],
        server: Option<&str>,
        location: Option<(&str, &str, usize, &str)>,
        depth: usize,
    ) {
        for d in ds {
            let name = d.args[0].as_str();
            match (name, &d.block) {
                ("include", None) if d.args.len() == 2 && depth < 16 => {
                    let inc = self.included(&d.args[1]);
                    if let Some(s) = server {
                        if inc.iter().any(|f| f.starts_with(LOCATIONS))
                            || include_pattern(&d.args[1]).is_some_and(|p| p.starts_with(LOCATIONS))
                        {
                            self.out.location_servers.push(s.to_string());
                        }
                    }
                    for f in inc {
                        let body = self.files[&f].clone();
                        self.walk(&f, &body, server, location, depth + 1);
                    }
                }
                ("set", None) if d.args.len() == 3 => {
                    self.vars.push((d.args[1].clone(), d.args[2].clone()))
                }
                ("proxy_pass" | "grpc_pass", None) if d.args.len() >= 2 => {
                    if let Some((modifier, path, line, lfile)) = location {
                        let mut target = d.args[1].clone();
                        for (k, v) in self.vars.iter().rev() {
                            target = target
                                .replace(&format!("${{{}}}", &k[1..]), v)
                                .replace(k.as_str(), v);
                        }
                        let (scheme, rest) = target.split_once("://").unwrap_or(("http", &target));
                        let hp = rest.split('/').next().unwrap_or("");
                        let (host, port) = hostport(hp, scheme);
                        let targets = match self.upstreams.get(hp) {
                            Some(servers) => servers.clone(),
                            None => vec![(host.clone(), port)],
                        };
                        self.out.routes.push(Route {
                            path: path.to_string(),
                            modifier: modifier.to_string(),
                            scheme: scheme.to_string(),
                            host,
                            port,
                            targets,
                            file: lfile.to_string(),
                            line,
                            server: server.map(str::to_string),
                        });
                    }
                }
                ("server", Some(b)) => {
                    let id = format!("{file}:{}", d.line);
                    self.walk(file, b, Some(&id), None, depth);
                }
                ("location", Some(b)) if d.args.len() >= 2 => {
                    let path = d.args.last().unwrap().as_str();
                    let modifier = if d.args.len() > 2 {
                        d.args[1].as_str()
                    } else {
                        ""
                    };
                    self.walk(file, b, server, Some((modifier, path, d.line, file)), depth);
                }
                ("upstream", Some(_)) => {}
                (_, Some(b)) => self.walk(file, b, server, location, depth),
                _ => {}
            }
        }
    }
}

impl Config {
    /// Walks the files that no other file includes, following includes.
    pub fn from_files(files: BTreeMap<String, Vec<Directive>>) -> Config {
        let mut w = Walk {
            files: &files,
            upstreams: BTreeMap::new(),
            vars: vec![],
            out: Config::default(),
        };
        for ds in files.values() {
            w.collect_upstreams(ds);
        }
        let mut included = vec![];
        fn includes(ds: &[Directive], out: &mut Vec<String>) {
            for d in ds {
                if d.args[0] == "include" && d.args.len() == 2 && d.block.is_none() {
                    out.push(d.args[1].clone());
                }
                if let Some(b) = &d.block {
                    includes(b, out);
                }
            }
        }
        for ds in files.values() {
            let mut pats = vec![];
            includes(ds, &mut pats);
            for p in pats {
                included.extend(w.included(&p));
            }
        }
        for (f, ds) in &files {
            if !included.contains(f) {
                w.walk(f, ds, None, None, 0);
            }
        }
        w.out
            .routes
            .dedup_by(|a, b| a.file == b.file && a.line == b.line && a.server == b.server);
        w.out
    }

    /// A route a generated endpoint for `path` would collide with: a prefix
    /// location for the same path in a `server` that includes the endpoint
    /// files (or in no server at all), outside the file `except`.
    pub fn conflict(&self, path: &str, except: &str) -> Option<&Route> {
        self.routes.iter().find(|r| {
            r.path == path
                && matches!(r.modifier.as_str(), "" | "^~")
                && r.file != except
                && r.server
                    .as_ref()
                    .is_none_or(|s| self.location_servers.contains(s))
        })
    }

    /// Reads every `*.conf` under `nginx/`.
    pub fn load(root: &Path) -> Result<Config, Error> {
        let mut files = BTreeMap::new();
        for f in conf_files(root) {
            let text = crate::model::files::read_text(root, &f)?;
            files.insert(f.clone(), parse(&text, &f)?);
        }
        Ok(Config::from_files(files))
    }
}

/// Every `*.conf` file under `nginx/`, repository-relative, sorted.
pub fn conf_files(root: &Path) -> Vec<String> {
    let mut out = vec![];
    let mut dirs = vec![root.join(DIR)];
    while let Some(d) = dirs.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
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
        assert_eq!(
            (r[0].path.as_str(), r[0].host.as_str(), r[0].port, r[0].line),
            ("/api/", "gateway", 8080, 4)
        );
    }

    #[test]
    fn unbalanced_braces_name_the_line() {
        let e = parse_routes("http {\n  server {\n  }\n", "nginx/n.conf")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("nginx/n.conf:1") && e.contains("never closed"),
            "{e}"
        );
        let e = parse_routes("a;\n}\n", "f").unwrap_err().to_string();
        assert!(e.contains("f:2") && e.contains("unbalanced"), "{e}");
        let e = parse_routes("server {\n  listen 80\n}\n", "f")
            .unwrap_err()
            .to_string();
        assert!(e.contains("f:2") && e.contains("has no `;`"), "{e}");
    }

    /// Point 8: the real grammar. `${host}` is one word; `}` inside a word
    /// is part of it; quotes hold braces and `;`; comments hold anything;
    /// Lua blocks are Lua.
    #[test]
    fn tokenizes_like_nginx() {
        let words = |s: &str| {
            tokenize(s, "f")
                .unwrap()
                .into_iter()
                .filter_map(|t| {
                    if let Tok::Word(w, _) = t {
                        Some(w)
                    } else {
                        None
                    }
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            words("proxy_set_header X-Forwarded-Host ${host};"),
            ["proxy_set_header", "X-Forwarded-Host", "${host}"]
        );
        assert_eq!(
            words("return 200 \"a { b ; \\\" c\";"),
            ["return", "200", "a { b ; \" c"]
        );
        assert_eq!(words("add_header X 'it\\'s';"), ["add_header", "X", "it's"]);
        assert_eq!(
            words("location ~* \\.(js|css)$ {}"),
            ["location", "~*", "\\.(js|css)$"]
        );
        assert_eq!(words("a b#c; # d { '\n"), ["a", "b#c"]);
        assert_eq!(
            words("if ($http_x ~ \"^a{2}$\") { }"),
            ["if", "($http_x", "~", "^a{2}$", ")"]
        );
        let lua = "content_by_lua_block {\n  local t = { a = \"}\" } -- }\n  ngx.say([[ { ]])\n}\nlocation /x { proxy_pass http://a:1; }\n";
        let r = parse_routes(lua, "f").unwrap();
        assert_eq!((r.len(), r[0].line), (1, 5));
        assert!(
            parse_routes("location /x { return 200 \"ok\"}\n", "f").is_err(),
            "NGINX wants a space after a closing quote"
        );
    }

    #[test]
    fn follows_upstreams_servers_and_includes() {
        let main = "http {\n  upstream gw { server gateway:8080 max_fails=3; server gateway2:8080; }\n  map $a $b { default 1; '' 0; }\n  server {\n    listen 443 ssl;\n    include locations/*.conf;\n  }\n  server {\n    listen 8080;\n    location = /x { proxy_pass http://gw; }\n    location ^~ /api/ { if ($x) { return 403; } proxy_pass http://gw/api/; }\n  }\n}\n";
        // An endpoint file as edit/nginx writes it (written out: the model
        // does not depend on its editor).
        let loc = "# Public endpoint of `svc`.\nlocation /svc/ {\n    set $svc_upstream svc:9000;\n    proxy_pass http://$svc_upstream;\n}\n";
        let files = BTreeMap::from([
            (
                "nginx/nginx.conf".to_string(),
                parse(main, "nginx/nginx.conf").unwrap(),
            ),
            (
                "nginx/locations/svc.conf".to_string(),
                parse(loc, "nginx/locations/svc.conf").unwrap(),
            ),
        ]);
        let c = Config::from_files(files);
        assert_eq!(c.location_servers, ["nginx/nginx.conf:4"]);
        type Row<'a> = (&'a str, &'a str, Vec<(String, u16)>, Option<&'a str>);
        let by: Vec<Row> = c
            .routes
            .iter()
            .map(|r| {
                (
                    r.modifier.as_str(),
                    r.path.as_str(),
                    r.targets.clone(),
                    r.server.as_deref(),
                )
            })
            .collect();
        let gw = vec![
            ("gateway".to_string(), 8080),
            ("gateway2".to_string(), 8080),
        ];
        assert_eq!(
            by,
            vec![
                (
                    "",
                    "/svc/",
                    vec![("svc".to_string(), 9000)],
                    Some("nginx/nginx.conf:4")
                ),
                ("=", "/x", gw.clone(), Some("nginx/nginx.conf:8")),
                ("^~", "/api/", gw, Some("nginx/nginx.conf:8")),
            ]
        );
        assert_eq!(c.routes[0].file, "nginx/locations/svc.conf");
    }
}
