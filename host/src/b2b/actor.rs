//! A call's actor, polled in place: the task that received a message runs the call's state machine
//! itself, instead of queueing it for a task of the call's own and waking that.
//!
//! Why: the hand-over cost a wake-up per message and, with two worker threads, usually a notify of
//! the other thread (a futex) and a cache-cold poll there; one worker instead of two measured ~20%
//! less gateway CPU per call. Polled in place, a message is received, routed and acted on in one go,
//! as a Kamailio worker does. What outlasts a message continues on a task of its own: a wake-up that
//! finds the actor idle (a timer, a plugin hook yielding at its epoch tick) spawns one, so a slow
//! plugin holds the receive loop for at most one tick.
//!
//! The state machine (idle, running, notified, done) makes sure one thread polls the call at a time
//! and that nothing delivered or woken meanwhile is missed: whoever finds the actor running marks it
//! notified, and the poller polls again before letting go.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Wake, Waker};

use tracing::error;

use super::Inbound;

const IDLE: u8 = 0;
const RUNNING: u8 = 1;
const NOTIFIED: u8 = 2;
const DONE: u8 = 3;

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One call's future, its mailbox, and who polls it.
pub(crate) struct Actor {
    state: AtomicU8,
    fut: Mutex<Option<BoxFuture>>,
    queue: Arc<Queue>,
    runtime: tokio::runtime::Handle,
}

struct Queue {
    capacity: usize,
    inner: Mutex<QueueInner>,
}

struct QueueInner {
    items: VecDeque<Inbound>,
    closed: bool,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QueueInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Why a message was not delivered; it comes back to the caller.
pub(crate) enum Undelivered {
    /// The mailbox is full: the message is dropped (a UDP peer retransmits).
    Full,
    /// The actor has retired or stopped: route the message anew.
    Closed(Inbound),
}

/// The actor's end of its mailbox.
pub(crate) struct Mailbox {
    queue: Arc<Queue>,
}

impl Mailbox {
    /// The next message, or `None` once closed and empty. Pending registers no waker: every
    /// delivery polls the actor again.
    pub async fn recv(&mut self) -> Option<Inbound> {
        poll_fn(|_| {
            let mut q = self.queue.lock();
            match q.items.pop_front() {
                Some(m) => Poll::Ready(Some(m)),
                None if q.closed => Poll::Ready(None),
                None => Poll::Pending,
            }
        })
        .await
    }

    /// Refuses further messages (their senders route them anew) and returns those already queued.
    pub fn close(&mut self) -> VecDeque<Inbound> {
        let mut q = self.queue.lock();
        q.closed = true;
        std::mem::take(&mut q.items)
    }
}

impl Actor {
    /// An actor whose future `make` builds from its mailbox and a handle on the actor itself (weak:
    /// the actor owns the future). Nothing runs until the first [`Actor::run_here`] or delivery.
    /// Call from within the tokio runtime that is to run the actor's later wake-ups.
    pub fn new<F>(capacity: usize, make: impl FnOnce(Mailbox, Weak<Actor>) -> F) -> Arc<Self>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let queue = Arc::new(Queue {
            capacity,
            inner: Mutex::new(QueueInner {
                items: VecDeque::new(),
                closed: false,
            }),
        });
        Arc::new_cyclic(|me| {
            let mailbox = Mailbox {
                queue: queue.clone(),
            };
            // Unconstrained: tokio's cooperative budget belongs to whichever task polls the actor
            // in place; spent there, a timer would report pending and wake at once, forever.
            let fut: BoxFuture = Box::pin(tokio::task::unconstrained(make(mailbox, me.clone())));
            Self {
                state: AtomicU8::new(IDLE),
                fut: Mutex::new(Some(fut)),
                queue,
                runtime: tokio::runtime::Handle::current(),
            }
        })
    }

    /// Queues a message and, if the actor is idle, runs it here until it waits again.
    pub fn deliver(self: &Arc<Self>, inb: Inbound) -> Result<(), Undelivered> {
        {
            let mut q = self.queue.lock();
            if q.closed {
                return Err(Undelivered::Closed(inb));
            }
            if q.items.len() >= self.queue.capacity {
                return Err(Undelivered::Full);
            }
            q.items.push_back(inb);
        }
        self.run_here();
        Ok(())
    }

    /// Polls the actor on the calling task once, if nobody else is polling it; if it was woken
    /// meanwhile, it carries on on a task of its own rather than hold this one.
    pub fn run_here(self: &Arc<Self>) {
        if !self.claim() {
            return;
        }
        if self.poll_once() {
            return;
        }
        if self
            .state
            .compare_exchange(RUNNING, IDLE, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            self.state.store(RUNNING, Ordering::Release);
            self.runtime.spawn(Runner(self.clone()));
        }
    }

    /// Takes the right to poll (true), or leaves a note for whoever has it (false).
    fn claim(&self) -> bool {
        let mut s = self.state.load(Ordering::Acquire);
        loop {
            let next = match s {
                IDLE => RUNNING,
                RUNNING => NOTIFIED,
                _ => return false,
            };
            match self
                .state
                .compare_exchange_weak(s, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return s == IDLE,
                Err(actual) => s = actual,
            }
        }
    }

    /// Polls the future once with the actor's own waker; true when it finished (or panicked: the
    /// call is lost, the thread that polled it is not).
    fn poll_once(self: &Arc<Self>) -> bool {
        self.state.store(RUNNING, Ordering::Release);
        let waker = Waker::from(self.clone());
        let mut cx = Context::from_waker(&waker);
        let mut slot = self.fut.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(fut) = slot.as_mut() else {
            return true;
        };
        let done = match std::panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(&mut cx))) {
            Ok(p) => p.is_ready(),
            Err(_) => {
                error!("call actor panicked; the call is dropped");
                true
            }
        };
        if done {
            *slot = None;
            drop(slot);
            // Messages still routed here are routed anew (to the echoes, or as for no call).
            self.queue.lock().closed = true;
            self.state.store(DONE, Ordering::Release);
        }
        done
    }
}

impl Wake for Actor {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.claim() {
            self.runtime.spawn(Runner(self.clone()));
        }
    }
}

/// The task an actor runs on between messages, for as long as it keeps being woken.
struct Runner(Arc<Actor>);

impl Future for Runner {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let actor = &self.0;
        if actor.poll_once() {
            return Poll::Ready(());
        }
        match actor
            .state
            .compare_exchange(RUNNING, IDLE, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Poll::Ready(()),
            Err(_) => {
                // Woken while polled: poll again after the tasks already waiting on this thread.
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use bytes::Bytes;
    use callgate_sip::TransportKind;
    use callgate_sip::message::SipMessage;
    use callgate_sip::transport::Incoming;

    fn options(n: u32) -> Inbound {
        let raw = format!(
            "OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{n}\r\n\
             From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: c\r\n\
             CSeq: {n} OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        Incoming {
            msg: SipMessage::parse(Bytes::from(raw)).expect("valid"),
            source: "127.0.0.1:5070".parse().expect("addr"),
            transport: TransportKind::Udp,
            local: "127.0.0.1:5060".parse().expect("addr"),
        }
    }

    fn cseq(m: &Inbound) -> u32 {
        m.msg.cseq()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_delivery_runs_the_actor_in_place_in_order() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let actor = Actor::new(8, move |mut mb, _| async move {
            while let Some(m) = mb.recv().await {
                s.lock().unwrap().push(cseq(&m));
            }
        });
        for n in 1..=3 {
            assert!(actor.deliver(options(n)).is_ok());
            // No yield to the scheduler: the message was handled by the delivering task itself.
            assert_eq!(seen.lock().unwrap().last(), Some(&n));
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_timer_wake_continues_on_a_task_and_a_finished_actor_refuses_mail() {
        let fired = Arc::new(AtomicUsize::new(0));
        let f = fired.clone();
        let actor = Actor::new(8, move |mut mb, _| async move {
            let _first = mb.recv().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
            f.fetch_add(1, Ordering::SeqCst);
        });
        assert!(actor.deliver(options(1)).is_ok());
        assert_eq!(fired.load(Ordering::SeqCst), 0);
        for _ in 0..100 {
            if fired.load(Ordering::SeqCst) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(fired.load(Ordering::SeqCst), 1);
        assert!(matches!(
            actor.deliver(options(2)),
            Err(Undelivered::Closed(_))
        ));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_yielding_actor_lets_the_delivering_task_go_and_a_full_mailbox_says_so() {
        let steps = Arc::new(AtomicUsize::new(0));
        let s = steps.clone();
        let actor = Actor::new(1, move |mut mb, _| async move {
            let _first = mb.recv().await;
            for _ in 0..3 {
                s.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
            }
            std::future::pending::<()>().await;
        });
        assert!(actor.deliver(options(1)).is_ok());
        // One step in place; the yield handed the rest to a task of its own.
        assert_eq!(steps.load(Ordering::SeqCst), 1);
        assert!(actor.deliver(options(2)).is_ok());
        assert!(matches!(actor.deliver(options(3)), Err(Undelivered::Full)));
        for _ in 0..100 {
            if steps.load(Ordering::SeqCst) == 3 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(steps.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_panicking_actor_is_dropped_and_the_delivering_task_survives() {
        let actor = Actor::new(8, move |mut mb, _| async move {
            let _first = mb.recv().await;
            panic!("bug in a call");
        });
        assert!(actor.deliver(options(1)).is_ok());
        assert!(matches!(
            actor.deliver(options(2)),
            Err(Undelivered::Closed(_))
        ));
    }
}
