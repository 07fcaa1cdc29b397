//! A matrix row's specs, one a line, each started as it arrives.
//!
//! verify writes a row's specs once every container of the stack has
//! started and runs (verify/feed.rs), while services still boot, each with
//! `after=<service>`: the target it is about. What a spec can tell before
//! its target answers, and will tell the same afterwards, is told at once:
//! a name the resolver says does not exist (the engine's DNS has every
//! running container's names), and a path with no route (the kernel's
//! answer, whoever listens). Everything else waits for a `go <service>`
//! line and then runs whole: a name that resolves or got no answer, a
//! refused path (the target may not listen yet), an open one, and one that
//! timed out (a SYN dropped by a filter and one dropped by a listener
//! whose accept queue is full look the same; a booting server that listens
//! but does not accept yet fills it). At 24 services the names no network
//! gives are ~150 lookups the engine's DNS forwards upstream, and a
//! resolver that answers ~50 a second after a burst held the probes phase
//! for 1.5 s after the last service was ready; now they are asked while
//! the services boot.

use std::collections::HashSet;
use std::io::{BufRead, ErrorKind};
use std::net::SocketAddr;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::dns::NoAddress;
use crate::{
    address, connect_failed, connect_ms, connect_within, get, parse_spec, run, unresolved, Outcome,
    Spec,
};

/// The targets verify has released (`go <service>`), and whether stdin
/// has ended.
#[derive(Default)]
pub struct Gate {
    state: Mutex<(HashSet<String>, bool)>,
    cv: Condvar,
}

impl Gate {
    fn release(&self, target: &str) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.0.insert(target.to_string());
        self.cv.notify_all();
    }

    fn end(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.1 = true;
        self.cv.notify_all();
    }

    /// True once `target` is released; false when stdin ended first (a
    /// verify that died, or a target that never answered).
    fn wait(&self, target: &str) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if s.0.contains(target) {
                return true;
            }
            if s.1 {
                return false;
            }
            s = self.cv.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// One spec's answer: its place in the input, the spec, the outcome and
/// how long its run took (a spec held for its target: from its release).
pub type Done = (usize, Spec, Outcome, Duration);

/// Most specs one row runs (each on its own thread).
const MAX_SPECS: usize = 256;

/// Runs every spec line of `input` as it arrives (`go <service>` lines
/// release the specs held for that service) until it ends; returns the
/// answers in the input's order. Each spec on its own thread; Postgres's
/// run one at a time, because every row runs at once and Postgres refuses
/// clients past `max_connections` (100 by default; 12 rows of 11 database
/// cells at 24 services went over it).
pub fn run_lines(input: impl BufRead, gate: &Gate) -> Vec<Done> {
    let pg = Mutex::new(());
    std::thread::scope(|scope| {
        let mut handles = vec![];
        let mut n = 0;
        for line in input.lines() {
            let Ok(line) = line else { break };
            let line = line.trim();
            if let Some(target) = line.strip_prefix("go ") {
                gate.release(target.trim());
                continue;
            }
            if line.is_empty() || n == MAX_SPECS {
                continue;
            }
            let (i, spec, pg) = (n, parse_spec(line), &pg);
            n += 1;
            handles.push(scope.spawn(move || {
                let (o, el) = staged(&spec, gate, pg);
                (i, spec, o, el)
            }));
        }
        gate.end();
        let mut done: Vec<Done> = handles.into_iter().filter_map(|h| h.join().ok()).collect();
        done.sort_by_key(|(i, ..)| *i);
        done
    })
}

/// A spec's answer: with `after`, its early answer if it has one, else
/// once its target is released; Postgres's one at a time (`pg`).
fn staged(spec: &Spec, gate: &Gate, pg: &Mutex<()>) -> (Outcome, Duration) {
    let t = Instant::now();
    let after = get(spec, "after");
    if !after.is_empty() {
        if let Some(o) = before_ready(spec) {
            return (o, t.elapsed());
        }
        if !gate.wait(after) {
            return (
                Outcome::Failed(format!(
                    "not run: `{after}` was not released before the specs ended"
                )),
                t.elapsed(),
            );
        }
    }
    let _one = (get(spec, "kind") == "pg").then(|| pg.lock().unwrap_or_else(|e| e.into_inner()));
    let t = Instant::now();
    (run(spec), t.elapsed())
}

/// What `spec` already tells before its target answers, and will tell the
/// same after: a name that does not exist, or a path (an address, not a
/// name) with no route. None when it must wait.
fn before_ready(spec: &Spec) -> Option<Outcome> {
    let addr: SocketAddr = match address(spec) {
        Ok(a) => a,
        Err(why @ NoAddress::NoSuchName) => return Some(unresolved(spec, &why)),
        Err(NoAddress::NoAnswer(_)) => return None,
    };
    let literal = get(spec, "host")
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
        .is_ok();
    if !literal {
        return None;
    }
    match connect_within(addr, connect_ms(spec)) {
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable
            ) =>
        {
            Some(Outcome::Refused(connect_failed(spec, &e)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufReader, Read};
    use std::net::TcpListener;
    use std::sync::mpsc;

    /// A reader that hands out the lines sent to it, ending when the
    /// sender is dropped: stdin written over time.
    struct Fed(mpsc::Receiver<String>, Vec<u8>);
    impl Read for Fed {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.1.is_empty() {
                match self.0.recv() {
                    Ok(l) => self.1 = l.into_bytes(),
                    Err(_) => return Ok(0),
                }
            }
            let n = buf.len().min(self.1.len());
            buf[..n].copy_from_slice(&self.1[..n]);
            self.1.drain(..n);
            Ok(n)
        }
    }

    fn outcome(o: &Outcome) -> &'static str {
        match o {
            Outcome::Ok(_) => "ok",
            Outcome::Unresolved(_) => "unresolved",
            Outcome::Refused(_) => "refused",
            Outcome::Failed(_) => "failed",
            Outcome::Denied(_) => "denied",
        }
    }

    #[test]
    fn a_refused_spec_waits_for_its_target_and_then_sees_it_listen() {
        // A port nobody listens on yet: refused before the release, open
        // after it (the target booted meanwhile).
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (tx, rx) = mpsc::channel();
        let gate = Gate::default();
        std::thread::scope(|s| {
            let rows = s.spawn(|| run_lines(BufReader::new(Fed(rx, vec![])), &gate));
            tx.send(format!(
                "id=a&kind=tcp&host=127.0.0.1&port={port}&connect_ms=100&after=t\n"
            ))
            .unwrap();
            // Nothing is decided before the release.
            std::thread::sleep(Duration::from_millis(150));
            let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
            tx.send("go t\n".into()).unwrap();
            drop(tx);
            let done = rows.join().unwrap();
            drop(l);
            assert_eq!(done.len(), 1);
            assert_eq!(outcome(&done[0].2), "ok");
        });
    }

    #[test]
    fn a_path_that_times_out_is_held_and_run_again_once_released() {
        // A listener that does not accept yet, its queue full: the kernel
        // drops further SYNs, as a filter would. Not an answer yet.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let mut queued = vec![];
        let timed_out = loop {
            match connect_within(addr, 100) {
                Ok(s) if queued.len() < 10_000 => queued.push(s),
                Ok(_) => panic!("the accept queue never filled"),
                Err(e) => break e,
            }
        };
        assert_eq!(timed_out.kind(), ErrorKind::TimedOut, "{timed_out}");
        let (tx, rx) = mpsc::channel();
        let gate = Gate::default();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let rows = s.spawn(|| run_lines(BufReader::new(Fed(rx, vec![])), &gate));
            tx.send(format!(
                "id=q&kind=tcp&host=127.0.0.1&port={}&connect_ms=100&after=t\n",
                addr.port()
            ))
            .unwrap();
            std::thread::sleep(Duration::from_millis(400));
            // The server accepts now: the held spec connects once released.
            l.set_nonblocking(true).unwrap();
            while l.accept().is_ok() {}
            drop(queued);
            let server = s.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if l.accept().is_err() {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            });
            tx.send("go t\n".into()).unwrap();
            drop(tx);
            let done = rows.join().unwrap();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            server.join().unwrap();
            assert_eq!(outcome(&done[0].2), "ok", "held, then run whole");
        });
    }

    #[test]
    fn an_unknown_name_and_an_unreleased_target_end_with_stdin() {
        let (tx, rx) = mpsc::channel();
        let gate = Gate::default();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        tx.send(
            // A name no resolver has (RFC 6761's `.invalid`, and a label
            // DNS cannot carry, so nothing is asked of any server).
            "id=n&kind=tcp&host=no..such.invalid&port=1&after=t\n".into(),
        )
        .unwrap();
        tx.send(format!(
            "id=h&kind=tcp&host=127.0.0.1&port={port}&connect_ms=100&after=u\n"
        ))
        .unwrap();
        tx.send("id=p&kind=tcp&host=127.0.0.1&port=1\n".into())
            .unwrap();
        drop(tx);
        let t = Instant::now();
        let done = run_lines(BufReader::new(Fed(rx, vec![])), &gate);
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        let got: Vec<(&str, &str)> = done
            .iter()
            .map(|(_, s, o, _)| (get(s, "id"), outcome(o)))
            .collect();
        // In the input's order: the name is answered at once, the held
        // spec ends when stdin does, a spec without `after` runs as ever.
        assert_eq!(
            got,
            [("n", "unresolved"), ("h", "failed"), ("p", "refused")]
        );
        assert!(matches!(&done[1].2, Outcome::Failed(d) if d.contains("`u` was not released")));
    }
}
