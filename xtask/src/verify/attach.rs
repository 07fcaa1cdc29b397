//! A probe container's stdin and stdout over one attach, made before its
//! start: a matrix row's specs go in on stdin (verify/feed.rs), and its
//! lines come back on the same connection. (The specs were an
//! archive upload into the running container: the daemon mounted the
//! container's file system for it, 0.25-0.3 s of the probes phase.)

use std::pin::Pin;

use bollard::container::LogOutput;
use bollard::models::ContainerCreateBody;
use bollard::query_parameters as q;
use bollard::Docker;
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncWrite, AsyncWriteExt};

type Output = Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>;

pub(super) struct Attached {
    out: Output,
    /// Everything read from stdout so far (bytes: a chunk may end inside
    /// a character).
    seen: Vec<u8>,
    /// How much of `seen` `line` has handed out.
    taken: usize,
}

/// The probe's stdin.
pub(super) struct Input(Pin<Box<dyn AsyncWrite + Send>>);

/// Attaches to `id`'s stdin and stdout. The container must be created
/// with an open stdin that closes with the attach (`open_stdin`), and not yet
/// started, so no line is missed.
pub(super) async fn attach(
    d: &Docker,
    id: &str,
) -> Result<(Attached, Input), bollard::errors::Error> {
    let a = d
        .attach_container(
            id,
            Some(q::AttachContainerOptions {
                stdin: true,
                stdout: true,
                stream: true,
                ..Default::default()
            }),
        )
        .await?;
    Ok((
        Attached {
            out: a.output,
            seen: vec![],
            taken: 0,
        },
        Input(a.input),
    ))
}

/// What `attach` needs of the container: stdin open, and closed for it
/// when the attach closes it (so a verify that dies mid-run leaves a probe
/// that ends once its readiness wait does, not one that waits for specs
/// forever).
pub(super) fn open_stdin(body: &mut ContainerCreateBody) {
    body.open_stdin = Some(true);
    body.stdin_once = Some(true);
    body.attach_stdin = Some(true);
}

impl Input {
    /// Writes `text` to stdin, as it is (no newline added).
    pub(super) async fn write(&mut self, text: &str) -> std::io::Result<()> {
        self.0.write_all(text.as_bytes()).await?;
        self.0.flush().await
    }

    /// Closes stdin: the probe's end of its specs.
    pub(super) async fn close(&mut self) -> std::io::Result<()> {
        self.0.shutdown().await
    }

    /// An in-memory stdin, for tests.
    #[cfg(test)]
    pub(super) fn of(w: impl AsyncWrite + Send + 'static) -> Input {
        Input(Box::pin(w))
    }

    /// Writes `text` and closes stdin.
    pub(super) async fn send(&mut self, text: &str) -> std::io::Result<()> {
        self.write(text).await?;
        self.close().await
    }
}

impl Attached {
    /// The next line of stdout (without its newline), or everything left
    /// when the stream ends without one; Err when the connection broke.
    pub(super) async fn line(&mut self) -> Result<String, String> {
        loop {
            let left = &self.seen[self.taken..];
            if let Some(n) = left.iter().position(|b| *b == b'\n') {
                let l = String::from_utf8_lossy(&left[..n]).into_owned();
                self.taken += n + 1;
                return Ok(l);
            }
            if !self.read_more().await? {
                let l = String::from_utf8_lossy(&self.seen[self.taken..]).into_owned();
                self.taken = self.seen.len();
                return Ok(l);
            }
        }
    }

    /// All of stdout, from the first line on, once the stream ends (the
    /// daemon ends it when the container's output ends, at its exit), and
    /// whether it ended so: false when the connection broke.
    pub(super) async fn rest(mut self) -> (String, bool) {
        loop {
            match self.out.next().await {
                Some(Ok(chunk)) => self.push(chunk),
                Some(Err(_)) => return (self.text(), false),
                None => return (self.text(), true),
            }
        }
    }

    /// False at the stream's end.
    async fn read_more(&mut self) -> Result<bool, String> {
        match self.out.next().await {
            Some(Ok(chunk)) => {
                self.push(chunk);
                Ok(true)
            }
            Some(Err(e)) => Err(format!("the attach to the probe broke: {e}")),
            None => Ok(false),
        }
    }

    fn push(&mut self, chunk: LogOutput) {
        if let LogOutput::StdOut { message } = chunk {
            self.seen.extend_from_slice(&message);
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn fake(chunks: &[&[u8]], broken: bool) -> Attached {
        let mut items: Vec<Result<LogOutput, bollard::errors::Error>> = chunks
            .iter()
            .map(|c| {
                Ok(LogOutput::StdOut {
                    message: Bytes::copy_from_slice(c),
                })
            })
            .collect();
        // What the probe prints on stderr is not its output.
        items.insert(
            0,
            Ok(LogOutput::StdErr {
                message: Bytes::from_static(b"usage\n"),
            }),
        );
        if broken {
            items.push(Err(bollard::errors::Error::RequestTimeoutError));
        }
        Attached {
            out: Box::pin(futures_util::stream::iter(items)),
            seen: vec![],
            taken: 0,
        }
    }

    #[tokio::test]
    async fn lines_across_chunks_and_characters() {
        // "é" is two bytes, split between two chunks.
        let mut a = fake(&[b"{\"id\":\"r\xc3", b"\xa9\"}\nsec", b"ond\nlast"], false);
        assert_eq!(a.line().await.unwrap(), "{\"id\":\"ré\"}");
        assert_eq!(a.line().await.unwrap(), "second");
        Input(Box::pin(tokio::io::sink()))
            .send("spec\n")
            .await
            .unwrap();
        // The whole output, the lines already handed out too.
        assert_eq!(
            a.rest().await,
            ("{\"id\":\"ré\"}\nsecond\nlast".to_string(), true)
        );
    }

    #[tokio::test]
    async fn a_stream_that_ends_or_breaks() {
        let mut a = fake(&[b"no newline"], false);
        assert_eq!(a.line().await.unwrap(), "no newline");
        assert_eq!(a.line().await.unwrap(), "");
        let mut a = fake(&[b"half"], true);
        assert!(a.line().await.unwrap_err().contains("broke"));
        let a = fake(&[b"half"], true);
        assert_eq!(a.rest().await, ("half".to_string(), false));
    }
}
