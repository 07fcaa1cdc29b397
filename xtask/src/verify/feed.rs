//! What each matrix row's probe reads on stdin, and when (probe/src/row.rs
//! runs each line as it comes): its specs once every container of the
//! stack has started and runs and the row's probe runs, each marked with
//! the target it is about (`after=`); then, when the probes phase takes the
//! row (every target answered), `go <target>` for each and the end of
//! stdin. What the probe can answer before its target is ready, and will
//! answer the same after (a name that does not exist, a path with no
//! route), is answered while the services boot; the rest waits for its
//! `go`.
//!
//! At 24 services the names no network gives are ~150 lookups the
//! engine's DNS forwards upstream, and a resolver that answers ~50 a second
//! after a burst (this machine's) held the probes phase for 1.5 s; they are
//! asked while the services boot now. The rest waits for every target, not
//! each for its own: released one by one as each answered, the protocol
//! exchanges ran beside the booting services and slowed them as much as
//! they gained, on 2 cores (BENCHMARKS.md).
//!
//! A row whose probe did not run while the stack started (a source that is
//! no target, or the swarm engine's rows), or every row when a container
//! had exited or was restarting then, is fed nothing early: the probes
//! phase writes its specs whole, without `after`, and closes stdin. When a
//! container restarted after the rows were fed, `abandon` ends them and the
//! probes phase makes new probes (verify/mod.rs `restarted`).

use std::collections::{HashMap, HashSet};

use super::attach::Input;
use super::matrix::pct;

/// A row's specs as the probe reads them, and the targets they wait for.
pub(super) struct Plan {
    pub text: String,
    pub targets: Vec<String>,
}

impl Plan {
    /// `specs`, each with the target it is about, one a line.
    pub fn new(specs: &[(String, String)]) -> Plan {
        let mut text = String::new();
        let mut targets: Vec<String> = vec![];
        for (target, spec) in specs {
            text.push_str(&format!("{spec}&after={}\n", pct(target)));
            if !targets.contains(target) {
                targets.push(target.clone());
            }
        }
        Plan { text, targets }
    }

    /// The end of the row: every target released, one a line.
    fn release_all(&self) -> String {
        self.targets.iter().map(|t| format!("go {t}\n")).collect()
    }
}

/// How long one write to a probe's stdin may take.
const WRITE_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Default)]
pub(super) struct Feed(tokio::sync::Mutex<Inner>);

#[derive(Default)]
struct Inner {
    /// The stdin of each row whose probe runs.
    inputs: HashMap<String, Input>,
    /// Each row's specs, once every container has started.
    plans: Option<HashMap<String, Plan>>,
    /// The rows whose plan was written.
    fed: HashSet<String>,
    /// Why a write to a row's probe failed (it ended): its cells say so.
    failed: HashMap<String, String>,
}

/// What the probes phase gets back for a row.
pub(super) enum Taken {
    /// Its plan was written and stdin is closed now; Err: why a write
    /// failed.
    Fed(Result<(), String>),
    /// Nothing was written: its stdin if the feed held it.
    Unfed(Option<Input>),
}

impl Inner {
    async fn write(&mut self, row: &str, text: &str) {
        let Some(input) = self.inputs.get_mut(row) else {
            return;
        };
        // A few kilobytes: they fit the connection's buffers unless the
        // daemon stopped reading; then this row fails, not every row.
        let why = match tokio::time::timeout(WRITE_LIMIT, input.write(text)).await {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no write in {} s", WRITE_LIMIT.as_secs()),
        };
        self.failed.entry(row.to_string()).or_insert(why);
        self.inputs.remove(row);
    }

    /// Writes `row`'s plan if it is due: its probe runs and the plans are
    /// made.
    async fn feed(&mut self, row: &str) {
        if self.fed.contains(row) || !self.inputs.contains_key(row) {
            return;
        }
        let Some(text) = self
            .plans
            .as_ref()
            .and_then(|p| p.get(row))
            .map(|p| p.text.clone())
        else {
            return;
        };
        self.fed.insert(row.to_string());
        self.write(row, &text).await;
    }
}

impl Feed {
    /// `row`'s probe runs: its plan is written if made.
    pub async fn open(&self, row: &str, input: Input) {
        let mut g = self.0.lock().await;
        g.inputs.insert(row.to_string(), input);
        g.feed(row).await;
    }

    /// Every container has started: each row's plan, written to the rows
    /// whose probes run.
    pub async fn plan(&self, plans: HashMap<String, Plan>) {
        let mut g = self.0.lock().await;
        g.plans = Some(plans);
        let rows: Vec<String> = g.inputs.keys().cloned().collect();
        for row in rows {
            g.feed(&row).await;
        }
    }

    /// The topology changed since the rows were fed (a container
    /// restarted): each fed row's stdin is closed without a release (its
    /// held specs end unrun) and forgotten. Returns those rows, whose
    /// probes the probes phase replaces.
    pub async fn abandon(&self) -> Vec<String> {
        let mut g = self.0.lock().await;
        let rows: Vec<String> = g.fed.drain().collect();
        for row in &rows {
            if let Some(mut input) = g.inputs.remove(row) {
                let _ = input.close().await;
            }
        }
        g.plans = None;
        rows
    }

    /// The probes phase takes `row` (every target has answered by now):
    /// a fed row's targets are released and its stdin closed.
    pub async fn finish(&self, row: &str) -> Taken {
        let mut g = self.0.lock().await;
        if !g.fed.contains(row) {
            return Taken::Unfed(g.inputs.remove(row));
        }
        let go = g
            .plans
            .as_ref()
            .and_then(|p| p.get(row))
            .map(Plan::release_all)
            .unwrap_or_default();
        g.write(row, &go).await;
        if let Some(mut input) = g.inputs.remove(row) {
            if let Err(e) = input.close().await {
                g.failed.entry(row.to_string()).or_insert(e.to_string());
            }
        }
        Taken::Fed(match g.failed.remove(row) {
            Some(why) => Err(why),
            None => Ok(()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn pipe() -> (Input, tokio::io::DuplexStream) {
        let (w, r) = tokio::io::duplex(1 << 16);
        (Input::of(w), r)
    }

    async fn all(mut r: tokio::io::DuplexStream) -> String {
        let mut s = String::new();
        r.read_to_string(&mut s).await.unwrap();
        s
    }

    fn plans() -> HashMap<String, Plan> {
        let specs = [
            ("b".to_string(), "id=a->b&host=b".to_string()),
            ("b c".to_string(), "id=a->b c#0&host=10.0.0.2".to_string()),
            ("b".to_string(), "id=a->b#1&host=10.0.0.3".to_string()),
        ];
        HashMap::from([("a".to_string(), Plan::new(&specs))])
    }

    #[tokio::test]
    async fn a_row_is_fed_once_its_probe_runs_and_its_plan_is_made_in_either_order() {
        let expected = "id=a->b&host=b&after=b\n\
                        id=a->b c#0&host=10.0.0.2&after=b%20c\n\
                        id=a->b#1&host=10.0.0.3&after=b\n\
                        go b\ngo b c\n";
        // The probe runs first, then the plan is made.
        let f = Feed::default();
        let (input, out) = pipe();
        f.open("a", input).await;
        f.plan(plans()).await;
        assert!(matches!(f.finish("a").await, Taken::Fed(Ok(()))));
        assert_eq!(all(out).await, expected);
        // The plan first.
        let f = Feed::default();
        f.plan(plans()).await;
        let (input, out) = pipe();
        f.open("a", input).await;
        assert!(matches!(f.finish("a").await, Taken::Fed(Ok(()))));
        assert_eq!(all(out).await, expected);
    }

    #[tokio::test]
    async fn a_row_not_fed_is_handed_back_untouched() {
        // No plan for it (the swarm engine's rows): its stdin comes back,
        // nothing written, for the caller's whole specs.
        let f = Feed::default();
        let (input, out) = pipe();
        f.open("z", input).await;
        f.plan(plans()).await;
        let Taken::Unfed(Some(mut input)) = f.finish("z").await else {
            panic!("z was not fed and its stdin is the caller's");
        };
        input.send("spec\n").await.unwrap();
        assert_eq!(all(out).await, "spec\n");
        // A row the feed never saw.
        assert!(matches!(f.finish("y").await, Taken::Unfed(None)));
    }

    #[tokio::test]
    async fn an_abandoned_row_gets_no_release_and_is_no_longer_fed() {
        let f = Feed::default();
        let (input, out) = pipe();
        f.open("a", input).await;
        f.plan(plans()).await;
        assert_eq!(f.abandon().await, ["a"]);
        // Its specs, and then the end of stdin: no `go`, so what it held
        // ends unrun.
        assert_eq!(all(out).await.matches("go ").count(), 0);
        // The probes phase makes it a new probe and writes its specs whole.
        assert!(matches!(f.finish("a").await, Taken::Unfed(None)));
    }

    #[tokio::test]
    async fn a_probe_that_ended_is_said_at_the_end() {
        let f = Feed::default();
        let (input, out) = pipe();
        drop(out);
        f.open("a", input).await;
        f.plan(plans()).await;
        assert!(matches!(f.finish("a").await, Taken::Fed(Err(_))));
    }
}
