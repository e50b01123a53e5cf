//! Prompt resumption of requests that wait on other threads.
//!
//! An HTTP worker runs its connections as tasks of a tokio `LocalSet`. A task woken from
//! another thread (an actor's reply, the journal's "written") goes to the set's remote queue,
//! which the set serves only when its local queue is empty or on every 31st task. Under load
//! the local queue, fed by the sockets, is never empty, so a request waiting on the broker
//! actors or the journal waits behind every new request ready on its worker, each time it
//! waits: a decision waits three times, and the tail grows with the number of connections.
//!
//! [`resume_locally`] gives requests already under way precedence over new ones. The wrapped
//! future's wake-ups go to one relay task per worker: the first schedules the relay (a single
//! entry in the remote queue however many requests are woken), and the relay, running on the
//! worker, polls each woken request on the spot, in the order they were woken, then wakes its
//! connection only to write the answer.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use parking_lot::Mutex;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

/// Most wake-ups the relay takes from its channel at a time (tokio's cooperative budget makes it
/// yield to the worker's other tasks after 128 takes).
const RELAY_BATCH: usize = 256;

/// A request the relay can poll.
trait Advance {
    fn advance(&self);
}

/// One worker's relay: its sender and the requests it may poll, by key.
struct Relay {
    tx: UnboundedSender<u64>,
    pending: RefCell<HashMap<u64, Rc<dyn Advance>>>,
    next_key: std::cell::Cell<u64>,
}

thread_local! {
    /// This worker's relay, started on first use.
    static RELAY: RefCell<Option<Rc<Relay>>> = const { RefCell::new(None) };
}

/// This thread's relay; starts the relay task on first use. Call inside a `LocalSet` (an
/// actix-rt arbiter or system).
fn relay() -> Rc<Relay> {
    RELAY.with(|r| {
        let mut r = r.borrow_mut();
        if let Some(relay) = r.as_ref().filter(|relay| !relay.tx.is_closed()) {
            return relay.clone();
        }
        let (tx, mut rx) = unbounded_channel::<u64>();
        let relay = Rc::new(Relay { tx, pending: RefCell::new(HashMap::new()), next_key: std::cell::Cell::new(0) });
        let me = Rc::downgrade(&relay);
        actix_rt::spawn(async move {
            let mut batch = Vec::with_capacity(RELAY_BATCH);
            while rx.recv_many(&mut batch, RELAY_BATCH).await > 0 {
                let Some(relay) = me.upgrade() else { break };
                for key in batch.drain(..) {
                    let request = relay.pending.borrow().get(&key).cloned();
                    if let Some(request) = request {
                        request.advance();
                    }
                }
            }
        });
        *r = Some(relay.clone());
        relay
    })
}

/// The waker a wrapped future is polled with. It may be woken from any thread: it hands the
/// request's key to the relay, or, once the relay is gone (the worker is stopping), wakes the
/// connection's task, which then polls the request itself.
struct Hop {
    key: u64,
    relay: UnboundedSender<u64>,
    task: Mutex<Option<Waker>>,
}

impl Wake for Hop {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.relay.send(self.key).is_err() {
            if let Some(w) = self.task.lock().as_ref() {
                w.wake_by_ref();
            }
        }
    }
}

/// The wrapped request, shared by the connection's task and the relay (same thread).
struct Request<F: Future> {
    fut: RefCell<Option<Pin<Box<tokio::task::Unconstrained<F>>>>>,
    out: RefCell<Option<F::Output>>,
    hop: Arc<Hop>,
    waker: Waker,
    span: tracing::Span,
    relay: Rc<Relay>,
}

impl<F: Future> Request<F> {
    /// Polls the request unless it is done or already being polled; true once it is done.
    fn poll_inner(&self) -> bool {
        let Ok(mut slot) = self.fut.try_borrow_mut() else { return false };
        let Some(fut) = slot.as_mut() else { return true };
        let _entered = self.span.enter();
        match fut.as_mut().poll(&mut Context::from_waker(&self.waker)) {
            Poll::Ready(v) => {
                *slot = None;
                *self.out.borrow_mut() = Some(v);
                self.relay.pending.borrow_mut().remove(&self.hop.key);
                true
            }
            Poll::Pending => false,
        }
    }
}

impl<F: Future> Advance for Request<F> {
    fn advance(&self) {
        if self.poll_inner() {
            if let Some(w) = self.hop.task.lock().as_ref() {
                w.wake_by_ref();
            }
        }
    }
}

/// A future whose progress after its first poll is driven by its worker's relay.
pub struct ResumeLocally<F: Future + 'static> {
    request: Rc<Request<F>>,
}

/// Wraps `fut` (see the module doc). Call on an actix-rt worker, inside the request's span.
pub fn resume_locally<F: Future + 'static>(fut: F) -> ResumeLocally<F> {
    let relay = relay();
    let key = relay.next_key.get();
    relay.next_key.set(key.wrapping_add(1));
    let hop = Arc::new(Hop { key, relay: relay.tx.clone(), task: Mutex::new(None) });
    let request = Rc::new(Request {
        fut: RefCell::new(Some(Box::pin(tokio::task::unconstrained(fut)))),
        out: RefCell::new(None),
        waker: Waker::from(hop.clone()),
        hop,
        span: tracing::Span::current(),
        relay: relay.clone(),
    });
    relay.pending.borrow_mut().insert(key, request.clone());
    ResumeLocally { request }
}

impl<F: Future + 'static> Future for ResumeLocally<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let r = &self.request;
        {
            let mut task = r.hop.task.lock();
            if !task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        // The first poll runs here; later ones run in the relay, but polling again is harmless
        // and keeps the request moving if the relay has stopped.
        r.poll_inner();
        match r.out.borrow_mut().take() {
            Some(v) => Poll::Ready(v),
            None => Poll::Pending,
        }
    }
}

impl<F: Future + 'static> Drop for ResumeLocally<F> {
    fn drop(&mut self) {
        // A request dropped before its end (the client went away) leaves the relay too.
        self.request.relay.pending.borrow_mut().remove(&self.request.hop.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[actix_rt::test]
    async fn a_future_woken_from_another_thread_completes_through_the_relay() {
        for i in 0..100u32 {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let t = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_micros(50));
                tx.send(i).unwrap();
            });
            let got = tokio::time::timeout(Duration::from_secs(10), resume_locally(rx)).await;
            assert_eq!(got.expect("woken within 10 s").unwrap(), i);
            t.join().unwrap();
        }
        assert!(relay().pending.borrow().is_empty(), "finished requests leave the relay");
    }

    #[actix_rt::test]
    async fn the_relay_task_resumes_the_request_not_the_connection_task() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let connection = actix_rt::spawn(async move {
            // Runs up to the await in this task, and after it in whichever task polls it then.
            let resumed_in = resume_locally(async move {
                rx.await.unwrap();
                tokio::task::try_id()
            })
            .await;
            (tokio::task::id(), resumed_in)
        });
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1));
            tx.send(()).unwrap();
        });
        let (own, resumed_in) = tokio::time::timeout(Duration::from_secs(10), connection).await.expect("woken within 10 s").unwrap();
        t.join().unwrap();
        assert!(resumed_in.is_some_and(|id| id != own), "resumed in {resumed_in:?}, the connection's task is {own:?}");
    }

    #[actix_rt::test]
    async fn a_future_woken_on_its_own_thread_completes() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        actix_rt::spawn(async move {
            actix_rt::time::sleep(Duration::from_millis(2)).await;
            tx.send(7).unwrap();
        });
        let got = tokio::time::timeout(Duration::from_secs(10), resume_locally(rx)).await;
        assert_eq!(got.expect("woken within 10 s").unwrap(), 7);
    }

    #[actix_rt::test]
    async fn a_dropped_request_leaves_the_relay() {
        let (_tx, rx) = tokio::sync::oneshot::channel::<u32>();
        let timed_out = tokio::time::timeout(Duration::from_millis(5), resume_locally(rx)).await;
        assert!(timed_out.is_err());
        assert!(relay().pending.borrow().is_empty());
    }
}
