//! The gate container starts pass through: at most `limit` at once, the
//! most urgent first. The daemon's starts share the machine's cores (and
//! its locks): asked all at once, every start takes about as long as all of
//! them together, so the start that others wait for (Postgres, under the
//! services that depend on it) finished no sooner than a leaf's.
//! Hand-written: tokio's Semaphore serves its waiters in arrival order.

use std::collections::BinaryHeap;
use std::sync::Mutex;

use tokio::sync::oneshot;

pub(super) struct Gate {
    limit: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    running: usize,
    /// Arrival number, so equal urgencies pass in arrival order.
    arrivals: u64,
    waiting: BinaryHeap<Waiter>,
}

struct Waiter {
    urgency: u32,
    arrival: u64,
    go: oneshot::Sender<()>,
}

impl PartialEq for Waiter {
    fn eq(&self, o: &Self) -> bool {
        (self.urgency, self.arrival) == (o.urgency, o.arrival)
    }
}
impl Eq for Waiter {}
impl PartialOrd for Waiter {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Waiter {
    /// The most urgent is the greatest; among equals, the first to come.
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.urgency
            .cmp(&o.urgency)
            .then(o.arrival.cmp(&self.arrival))
    }
}

/// A place inside the gate; leaving it (drop) lets the next one in.
pub(super) struct Pass<'g>(&'g Gate);

impl Gate {
    pub(super) fn new(limit: usize) -> Gate {
        Gate {
            limit: limit.max(1),
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a place; `urgency`: greater goes first.
    pub(super) async fn enter(&self, urgency: u32) -> Pass<'_> {
        let rx = {
            let mut st = self.lock();
            if st.running < self.limit {
                st.running += 1;
                return Pass(self);
            }
            let (go, rx) = oneshot::channel();
            st.arrivals += 1;
            let arrival = st.arrivals;
            st.waiting.push(Waiter {
                urgency,
                arrival,
                go,
            });
            rx
        };
        // The place is handed over by the one that leaves (`Pass::drop`).
        // Dropped while queued, the send to it fails and the place goes to
        // the next waiter; dropped after the send, `Queued` gives it back.
        let mut q = Queued {
            gate: self,
            rx: Some(rx),
        };
        if let Some(rx) = q.rx.as_mut() {
            let _ = rx.await;
        }
        q.rx = None;
        Pass(self)
    }

    /// Hands the place on to the most urgent waiter still waiting, or frees it.
    fn release(&self) {
        let mut st = self.lock();
        while let Some(w) = st.waiting.pop() {
            if w.go.send(()).is_ok() {
                return;
            }
        }
        st.running -= 1;
    }
}

/// A waiter's side of the queue while it waits.
struct Queued<'g> {
    gate: &'g Gate,
    rx: Option<oneshot::Receiver<()>>,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        if let Some(mut rx) = self.rx.take() {
            if rx.try_recv().is_ok() {
                self.gate.release();
            }
        }
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn the_most_urgent_waiter_goes_first_then_arrival_order() {
        let gate = Arc::new(Gate::new(1));
        let order = Arc::new(Mutex::new(vec![]));
        let first = gate.enter(0).await;
        let local = tokio::task::LocalSet::new();
        for (name, urgency) in [("leaf-a", 0), ("root", 5), ("leaf-b", 0), ("mid", 2)] {
            let (gate, order) = (gate.clone(), order.clone());
            local.spawn_local(async move {
                let _p = gate.enter(urgency).await;
                order.lock().unwrap().push(name);
            });
        }
        local
            .run_until(async {
                // Every waiter is queued before the place frees.
                tokio::task::yield_now().await;
                drop(first);
                for _ in 0..10 {
                    tokio::task::yield_now().await;
                }
            })
            .await;
        assert_eq!(*order.lock().unwrap(), ["root", "mid", "leaf-a", "leaf-b"]);
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_passes_its_place_on() {
        let gate = Gate::new(1);
        let p = gate.enter(0).await;
        {
            // Polled once (queued), then dropped.
            let mut quitter = Box::pin(gate.enter(9));
            assert!(futures_util::poll!(quitter.as_mut()).is_pending());
        }
        drop(p);
        // The place is free again, not lost to the one that left.
        let _p = gate.enter(0).await;
        let _q = tokio::time::timeout(std::time::Duration::from_millis(50), gate.enter(0)).await;
        assert!(_q.is_err(), "a limit of 1 lets one in");
    }

    #[tokio::test]
    async fn a_waiter_dropped_after_its_turn_came_gives_the_place_back() {
        let gate = Gate::new(1);
        let p = gate.enter(0).await;
        let mut late = Box::pin(gate.enter(0));
        assert!(futures_util::poll!(late.as_mut()).is_pending());
        drop(p); // the place is sent to `late`...
        drop(late); // ...which is dropped before it looks
        let free = tokio::time::timeout(std::time::Duration::from_millis(50), gate.enter(0)).await;
        assert!(free.is_ok(), "the place was lost");
    }
}
