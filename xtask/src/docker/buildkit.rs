//! Image builds with BuildKit through the Engine API, and the choice
//! between it and the classic builder.
//!
//! `POST /build?version=2` with the context tar in the body builds with the
//! daemon's own BuildKit: no session, no buildx (dockerd ≥ 18.09 on Linux).
//! Its progress arrives as `{"id":"moby.buildkit.trace","aux":"<base64>"}`
//! lines, each a protobuf `moby.buildkit.v1.StatusResponse`, and the image
//! id as `{"id":"moby.image.id","aux":{"ID":…}}`.
//!
//! Why not `Docker::build_image` for this: without bollard's `buildkit`
//! feature its `BuildInfo.aux` only parses `{"ID":…}`, so the first trace
//! line ends its stream with a JSON error (and the build is cancelled when
//! the stream is dropped); the feature itself brings tonic, prost and rustls
//! for the session we do not need. So the request goes out through hyper,
//! which bollard already links (no new crate), with bollard's own
//! `BuildImageOptions` as the query.

use std::collections::HashMap;

use bollard::query_parameters::{BuildImageOptions, BuilderVersion};
use bollard::Docker;
use http_body_util::BodyExt;

/// Which builder builds the images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builder {
    Classic,
    BuildKit,
}

/// `--builder auto|buildkit|classic`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Choice {
    #[default]
    Auto,
    #[value(name = "buildkit")]
    BuildKit,
    Classic,
}

/// BuildKit when the daemon has it (Linux, API ≥ 1.39), else classic. An
/// explicit choice is taken as it is (a BuildKit build on a daemon without
/// it then fails saying so).
pub async fn choose(d: &Docker, choice: Choice) -> (Builder, String) {
    match choice {
        Choice::Classic => (Builder::Classic, "classic (--builder classic)".into()),
        Choice::BuildKit => (Builder::BuildKit, "BuildKit (--builder buildkit)".into()),
        Choice::Auto => {
            let v = d.version().await.ok();
            let os = v.as_ref().and_then(|v| v.os.clone()).unwrap_or_default();
            let api = v
                .as_ref()
                .and_then(|v| v.api_version.clone())
                .unwrap_or_default();
            let (maj, min) = api
                .split_once('.')
                .map(|(a, b)| (a.parse().unwrap_or(0), b.parse().unwrap_or(0)))
                .unwrap_or((0u32, 0u32));
            if os == "linux" && (maj, min) >= (1, 39) {
                (Builder::BuildKit, format!("BuildKit (daemon API {api})"))
            } else {
                (
                    Builder::Classic,
                    format!("classic (daemon {os} API {api} has no BuildKit)"),
                )
            }
        }
    }
}

/// Builds `tag` with `builder` (the classic one through bollard, see
/// `docker::build`); BuildKit reports each completed step to `on_step`. With
/// `fallback`, a BuildKit request the daemon refuses is built again with the
/// classic builder. Returns the builder that built it.
#[allow(clippy::too_many_arguments)]
pub async fn build_image(
    d: &Docker,
    builder: Builder,
    fallback: bool,
    tag: &str,
    mut context: Vec<u8>,
    dockerfile: &str,
    args: &HashMap<String, String>,
    labels: HashMap<String, String>,
    on_step: &mut (dyn FnMut(&Step) + Send),
) -> Result<Builder, String> {
    if builder == Builder::BuildKit {
        // Kept for the classic builder only when it may be needed.
        let ctx = if fallback {
            context.clone()
        } else {
            std::mem::take(&mut context)
        };
        match build(d, tag, ctx, dockerfile, args, labels.clone(), on_step).await {
            Ok(_) => return Ok(Builder::BuildKit),
            Err(Failure::Failed(log)) => return Err(log),
            Err(Failure::Refused(why)) if !fallback => {
                return Err(format!(
                    "BuildKit refused the build: {why}\n  fix: try `--builder classic`"
                ));
            }
            Err(Failure::Refused(why)) => crate::diag::warn(
                &crate::diag::Diagnostic::warning(format!(
                    "BuildKit refused the build of {tag} ({why}); using the classic builder"
                ))
                .fix("pass `--builder classic` to skip the attempt"),
            ),
        }
    }
    super::build(d, tag, context, dockerfile, args, labels)
        .await
        .map(|()| Builder::Classic)
}

/// One finished build step, for the progress lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub name: String,
    pub cached: bool,
    pub seconds: f64,
    pub error: Option<String>,
}

/// Why a BuildKit build did not produce an image.
#[derive(Debug)]
pub enum Failure {
    /// The daemon refused the request itself (no BuildKit, bad options):
    /// the classic builder may still work.
    Refused(String),
    /// The build ran and failed: the log of what ran.
    Failed(String),
}

/// Builds `tag` with BuildKit; `on_step` sees every step as it completes.
/// Returns the image id.
pub async fn build(
    d: &Docker,
    tag: &str,
    context: Vec<u8>,
    dockerfile: &str,
    args: &HashMap<String, String>,
    labels: HashMap<String, String>,
    on_step: &mut (dyn FnMut(&Step) + Send),
) -> Result<String, Failure> {
    let opts = BuildImageOptions {
        dockerfile: dockerfile.to_string(),
        t: Some(tag.to_string()),
        rm: true,
        forcerm: true,
        buildargs: Some(args.clone()),
        labels: Some(labels),
        version: BuilderVersion::BuilderBuildKit,
        ..Default::default()
    };
    let query = serde_urlencoded::to_string(&opts)
        .map_err(|e| Failure::Refused(format!("build options: {e}")))?;
    let path = format!("/v{}/build?{query}", d.client_version());
    let resp = post(&path, context).await.map_err(Failure::Refused)?;
    let status = resp.status();
    let mut body = resp.into_body();
    if !status.is_success() {
        let text = body
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        return Err(Failure::Refused(format!(
            "the daemon answered {status}: {}",
            text.trim()
        )));
    }
    let mut progress = Progress::default();
    let mut buf: Vec<u8> = vec![];
    let mut log = String::new();
    let mut image = None;
    let mut error = None;
    loop {
        let frame = match body.frame().await {
            None => break,
            Some(Ok(f)) => f,
            Some(Err(e)) => {
                return Err(Failure::Failed(format!(
                    "{log}\nthe build's stream broke: {e}"
                )))
            }
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buf.extend_from_slice(&data);
        while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            handle_line(
                &line,
                &mut progress,
                &mut log,
                &mut image,
                &mut error,
                on_step,
            );
        }
    }
    if !buf.is_empty() {
        handle_line(
            &buf,
            &mut progress,
            &mut log,
            &mut image,
            &mut error,
            on_step,
        );
    }
    match (error, image) {
        (Some(e), _) => Err(Failure::Failed(format!("{log}{e}"))),
        (None, Some(id)) => Ok(id),
        (None, None) => Err(Failure::Failed(format!(
            "{log}the build ended without an image id"
        ))),
    }
}

fn handle_line(
    line: &[u8],
    progress: &mut Progress,
    log: &mut String,
    image: &mut Option<String>,
    error: &mut Option<String>,
    on_step: &mut (dyn FnMut(&Step) + Send),
) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else {
        return;
    };
    if let Some(e) = v["errorDetail"]["message"].as_str().or(v["error"].as_str()) {
        *error = Some(e.to_string());
    }
    if let Some(s) = v["stream"].as_str() {
        log.push_str(s);
    }
    match v["id"].as_str() {
        Some("moby.image.id") => *image = v["aux"]["ID"].as_str().map(str::to_string),
        Some("moby.buildkit.trace") => {
            use base64::Engine;
            let Some(raw) = v["aux"]
                .as_str()
                .and_then(|a| base64::engine::general_purpose::STANDARD.decode(a).ok())
            else {
                return;
            };
            let status = parse_status(&raw);
            for (vertex, msg) in &status.logs {
                // The output of RUN steps: kept for the report of a failure.
                if let Some(name) = progress.names.get(vertex) {
                    for l in String::from_utf8_lossy(msg).lines() {
                        log.push_str(&format!("{name}: {l}\n"));
                    }
                }
            }
            for step in progress.update(status.vertexes) {
                on_step(&step);
            }
        }
        _ => {}
    }
}

/// The steps seen so far: a vertex is reported once, when it completes.
#[derive(Default)]
struct Progress {
    names: HashMap<String, String>,
    done: std::collections::HashSet<String>,
}

impl Progress {
    fn update(&mut self, vertexes: Vec<Vertex>) -> Vec<Step> {
        let mut out = vec![];
        for v in vertexes {
            if !v.name.is_empty() {
                self.names.insert(v.digest.clone(), v.name.clone());
            }
            let Some(done) = v.completed else { continue };
            if !self.done.insert(v.digest.clone()) {
                continue;
            }
            let name = if v.name.is_empty() {
                self.names.get(&v.digest).cloned().unwrap_or_default()
            } else {
                v.name
            };
            let seconds = v.started.map_or(0.0, |s| (done - s).max(0.0));
            out.push(Step {
                name,
                cached: v.cached,
                seconds,
                error: v.error,
            });
        }
        out
    }
}

// --- StatusResponse ---------------------------------------------------------
//
// A hand-written reader for the few fields we show, rather than prost and
// protoc (or bollard's `buildkit` feature) for one message: protobuf's wire
// format is varints and length-delimited fields, and everything else is
// skipped. From moby/buildkit api/services/control/control.proto:
//   StatusResponse { repeated Vertex vertexes = 1; repeated VertexStatus statuses = 2;
//                    repeated VertexLog logs = 3; repeated VertexWarning warnings = 4; }
//   Vertex { string digest = 1; repeated string inputs = 2; string name = 3; bool cached = 4;
//            Timestamp started = 5; Timestamp completed = 6; string error = 7; ... }
//   VertexLog { string vertex = 1; Timestamp timestamp = 2; int64 stream = 3; bytes msg = 4; }
//   google.protobuf.Timestamp { int64 seconds = 1; int32 nanos = 2; }

#[derive(Debug, Default, PartialEq)]
struct Vertex {
    digest: String,
    name: String,
    cached: bool,
    started: Option<f64>,
    completed: Option<f64>,
    error: Option<String>,
}

#[derive(Debug, Default)]
struct Status {
    vertexes: Vec<Vertex>,
    /// (vertex digest, output)
    logs: Vec<(String, Vec<u8>)>,
}

/// One field of a protobuf message: its number and value.
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

/// The fields of one message, in order; stops at the first malformed byte
/// (a trace line we cannot read costs a progress line, nothing more).
fn fields(mut b: &[u8]) -> Vec<(u64, Field<'_>)> {
    fn varint(b: &mut &[u8]) -> Option<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let (&x, rest) = b.split_first()?;
            *b = rest;
            v |= ((x & 0x7f) as u64) << (7 * i);
            if x < 0x80 {
                return Some(v);
            }
        }
        None
    }
    let mut out = vec![];
    while !b.is_empty() {
        let Some(key) = varint(&mut b) else { break };
        let (num, wire) = (key >> 3, key & 7);
        let f = match wire {
            0 => match varint(&mut b) {
                Some(v) => Field::Varint(v),
                None => break,
            },
            1 | 5 => {
                let n = if wire == 1 { 8 } else { 4 };
                if b.len() < n {
                    break;
                }
                b = &b[n..];
                continue;
            }
            2 => {
                let Some(len) = varint(&mut b).map(|l| l as usize) else {
                    break;
                };
                if b.len() < len {
                    break;
                }
                let (v, rest) = b.split_at(len);
                b = rest;
                Field::Bytes(v)
            }
            _ => break,
        };
        out.push((num, f));
    }
    out
}

fn string(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn timestamp(b: &[u8]) -> f64 {
    let (mut s, mut n) = (0i64, 0i64);
    for (num, f) in fields(b) {
        match (num, f) {
            (1, Field::Varint(v)) => s = v as i64,
            (2, Field::Varint(v)) => n = v as i64,
            _ => {}
        }
    }
    s as f64 + n as f64 / 1e9
}

fn parse_vertex(b: &[u8]) -> Vertex {
    let mut v = Vertex::default();
    for (num, f) in fields(b) {
        match (num, f) {
            (1, Field::Bytes(x)) => v.digest = string(x),
            (3, Field::Bytes(x)) => v.name = string(x),
            (4, Field::Varint(x)) => v.cached = x != 0,
            (5, Field::Bytes(x)) => v.started = Some(timestamp(x)),
            (6, Field::Bytes(x)) => v.completed = Some(timestamp(x)),
            (7, Field::Bytes(x)) if !x.is_empty() => v.error = Some(string(x)),
            _ => {}
        }
    }
    v
}

fn parse_status(b: &[u8]) -> Status {
    let mut s = Status::default();
    for (num, f) in fields(b) {
        match (num, f) {
            (1, Field::Bytes(x)) => s.vertexes.push(parse_vertex(x)),
            (3, Field::Bytes(x)) => {
                let (mut vertex, mut msg) = (String::new(), vec![]);
                for (n, f) in fields(x) {
                    match (n, f) {
                        (1, Field::Bytes(v)) => vertex = string(v),
                        (4, Field::Bytes(m)) => msg = m.to_vec(),
                        _ => {}
                    }
                }
                s.logs.push((vertex, msg));
            }
            _ => {}
        }
    }
    s
}

// --- the request ------------------------------------------------------------

/// POSTs a build to the daemon bollard talks to (DOCKER_HOST: `unix://` or
/// `tcp://`, default the local socket) and returns the streaming response.
async fn post(path: &str, body: Vec<u8>) -> Result<hyper::Response<hyper::body::Incoming>, String> {
    let host =
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    let req = hyper::Request::post(path)
        .header(hyper::header::HOST, "docker")
        .header(hyper::header::CONTENT_TYPE, "application/x-tar")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .map_err(|e| format!("build request: {e}"))?;
    macro_rules! send {
        ($stream:expr) => {{
            let io = hyper_util::rt::TokioIo::new($stream);
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| format!("{host}: {e}"))?;
            tokio::spawn(conn);
            sender
                .send_request(req)
                .await
                .map_err(|e| format!("{host}: {e}"))
        }};
    }
    if let Some(sock) = host.strip_prefix("unix://") {
        let s = tokio::net::UnixStream::connect(sock)
            .await
            .map_err(|e| format!("{sock}: {e}"))?;
        send!(s)
    } else if let Some(addr) = host
        .strip_prefix("tcp://")
        .or_else(|| host.strip_prefix("http://"))
    {
        let s = tokio::net::TcpStream::connect(addr.trim_end_matches('/'))
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        send!(s)
    } else {
        Err(format!("DOCKER_HOST={host}: BuildKit builds support unix:// and tcp:// only; use --builder classic"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn bytes_field(num: u64, b: &[u8], out: &mut Vec<u8>) {
        varint(num << 3 | 2, out);
        varint(b.len() as u64, out);
        out.extend_from_slice(b);
    }
    fn ts(s: u64, n: u64) -> Vec<u8> {
        let mut o = vec![];
        varint(8, &mut o);
        varint(s, &mut o);
        varint(16, &mut o);
        varint(n, &mut o);
        o
    }

    #[test]
    fn a_trace_line_from_dockerd_20_10_decodes() {
        // Captured from `POST /v1.41/build?version=2` on this project's daemon.
        use base64::Engine;
        let aux = "Cn0KR3NoYTI1Njo3Nzg5ZTMxNDJjYzcwOGQ3MjYwZDNhMzMyZjIyZTI2ZjBlNDQwZDIzN2Y2ODBiYzEzZGM0ODY3Mzc5YjNiZjlhGiRbaW50ZXJuYWxdIGxvYWQgcmVtb3RlIGJ1aWxkIGNvbnRleHQqDAi4gpLYBhDr6LzJAg==";
        let s = parse_status(
            &base64::engine::general_purpose::STANDARD
                .decode(aux)
                .unwrap(),
        );
        assert_eq!(s.vertexes.len(), 1);
        let v = &s.vertexes[0];
        assert_eq!(v.name, "[internal] load remote build context");
        assert!(v.digest.starts_with("sha256:7789e3"));
        assert!(v.started.unwrap() > 1.7e9 && v.completed.is_none());
    }

    #[test]
    fn steps_are_reported_once_when_they_complete_with_logs_and_errors() {
        let mut vtx = vec![];
        bytes_field(1, b"sha256:aa", &mut vtx);
        bytes_field(3, b"[2/3] RUN make", &mut vtx);
        bytes_field(5, &ts(100, 0), &mut vtx);
        let mut running = vec![];
        bytes_field(1, &vtx, &mut running);
        let mut log = vec![];
        bytes_field(1, b"sha256:aa", &mut log);
        varint(3 << 3, &mut log);
        varint(2, &mut log);
        bytes_field(4, b"cc: error\n", &mut log);
        bytes_field(3, &log, &mut running);
        let mut done_vtx = vtx.clone();
        bytes_field(6, &ts(101, 500_000_000), &mut done_vtx);
        bytes_field(7, b"exit code: 2", &mut done_vtx);
        let mut done = vec![];
        bytes_field(1, &done_vtx, &mut done);

        let mut p = Progress::default();
        let s1 = parse_status(&running);
        assert_eq!(
            s1.logs,
            vec![("sha256:aa".to_string(), b"cc: error\n".to_vec())]
        );
        assert!(p.update(s1.vertexes).is_empty());
        let steps = p.update(parse_status(&done).vertexes);
        assert_eq!(
            steps,
            vec![Step {
                name: "[2/3] RUN make".into(),
                cached: false,
                seconds: 1.5,
                error: Some("exit code: 2".into())
            }]
        );
        // The same completion again (dockerd repeats vertexes) is not a new step.
        assert!(p.update(parse_status(&done).vertexes).is_empty());
    }

    #[test]
    fn malformed_bytes_end_the_reading_without_panicking() {
        for b in [
            &[0xffu8; 12][..],
            &[0x0a, 0x7f, 0x01],
            &[0x09, 1, 2],
            &[0x0a],
        ] {
            let _ = parse_status(b);
        }
    }

    #[test]
    fn builder_choices_parse() {
        use clap::ValueEnum;
        assert_eq!(Choice::from_str("auto", false), Ok(Choice::Auto));
        assert_eq!(Choice::from_str("classic", false), Ok(Choice::Classic));
        assert_eq!(Choice::from_str("buildkit", false), Ok(Choice::BuildKit));
        assert!(Choice::from_str("v1", false).is_err());
    }
}
