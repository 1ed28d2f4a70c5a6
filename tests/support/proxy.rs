//! A TCP proxy in front of RabbitMQ that a test can cut, to play a lost connection or a
//! broker restart without disturbing the broker the other tests share.
//!
//! The proxy reads the AMQP 0-9-1 frames the client sends, so that a test can act at a
//! known point of the protocol instead of after a guessed delay:
//! [`Proxy::cut_at`] drops every connection when the client sends its n-th frame of
//! a method (the frame is not forwarded), and [`Proxy::hold_at`] stops forwarding there
//! and keeps the connection open, so the test can kill the client while it is blocked
//! at exactly that point. [`Proxy::wait_triggered`] tells the test that the point was
//! reached, and fails the test when it is not.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// AMQP 0-9-1 methods a client sends, as (class id, method id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    QueueDeclare,
    BasicQos,
    BasicConsume,
    BasicPublish,
    BasicGet,
    BasicAck,
    BasicNack,
    TxSelect,
    TxCommit,
    ConfirmSelect,
}

impl Method {
    fn ids(self) -> (u16, u16) {
        match self {
            Method::QueueDeclare => (50, 10),
            Method::BasicQos => (60, 10),
            Method::BasicConsume => (60, 20),
            Method::BasicPublish => (60, 40),
            Method::BasicGet => (60, 70),
            Method::BasicAck => (60, 80),
            Method::BasicNack => (60, 120),
            Method::TxSelect => (90, 10),
            Method::TxCommit => (90, 20),
            Method::ConfirmSelect => (85, 10),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Cut,
    Hold,
}

struct Trigger {
    method: Method,
    nth: u32,
    action: Action,
    seen: AtomicU32,
}

struct Inner {
    conns: Mutex<Vec<TcpStream>>,
    refusing: AtomicBool,
    trigger: Option<Trigger>,
    /// Set once the trigger fired (the n-th frame arrived).
    fired: Mutex<bool>,
    fired_cv: Condvar,
}

impl Inner {
    fn cut(&self) {
        self.refusing.store(true, Ordering::SeqCst);
        if let Ok(mut list) = self.conns.lock() {
            for s in list.drain(..) {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }

    fn fire(&self) {
        let mut f = self.fired.lock().unwrap_or_else(|p| p.into_inner());
        *f = true;
        self.fired_cv.notify_all();
    }
}

pub struct Proxy {
    pub port: u16,
    inner: Arc<Inner>,
}

impl Proxy {
    /// A proxy that forwards everything until [`Proxy::cut`].
    pub fn start() -> Self {
        Self::with_trigger(None)
    }

    /// A proxy that drops every connection (and refuses new ones) when the client sends
    /// its `nth` (1-based, counted over all connections) frame of `method`, before
    /// that frame reaches the broker.
    pub fn cut_at(method: Method, nth: u32) -> Self {
        Self::with_trigger(Some((method, nth, Action::Cut)))
    }

    /// A proxy that stops forwarding the client's frames (from its `nth` frame of
    /// `method` on, that frame included) while keeping the connections open: the client
    /// waits at that point until it is killed or the proxy dropped.
    pub fn hold_at(method: Method, nth: u32) -> Self {
        Self::with_trigger(Some((method, nth, Action::Hold)))
    }

    /// [`Proxy::hold_at`] in front of the broker on 127.0.0.1:`port` (a private node).
    pub fn hold_at_on(port: u16, method: Method, nth: u32) -> Self {
        Self::with_trigger_on(port, Some((method, nth, Action::Hold)))
    }

    fn with_trigger(trigger: Option<(Method, u32, Action)>) -> Self {
        Self::with_trigger_on(5672, trigger)
    }

    fn with_trigger_on(upstream_port: u16, trigger: Option<(Method, u32, Action)>) -> Self {
        assert!(
            trigger.is_none_or(|(_, nth, _)| nth >= 1),
            "frames are counted from 1"
        );
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let inner = Arc::new(Inner {
            conns: Mutex::default(),
            refusing: AtomicBool::new(false),
            trigger: trigger.map(|(method, nth, action)| Trigger {
                method,
                nth,
                action,
                seen: AtomicU32::new(0),
            }),
            fired: Mutex::new(false),
            fired_cv: Condvar::new(),
        });
        let i = inner.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if i.refusing.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(upstream) = TcpStream::connect(("127.0.0.1", upstream_port)) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let _ = (client.set_nodelay(true), upstream.set_nodelay(true));
                let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) else {
                    continue;
                };
                if let Ok(mut list) = i.conns.lock() {
                    list.push(c2.try_clone().expect("clone"));
                    list.push(u2.try_clone().expect("clone"));
                }
                let i2 = i.clone();
                std::thread::spawn(move || client_to_broker(client, upstream, &i2));
                pipe(u2, c2);
            }
        });
        Proxy { port, inner }
    }

    /// The AMQP URL through the proxy.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        self.inner.cut();
    }

    /// Whether the trigger fired.
    pub fn triggered(&self) -> bool {
        *self.inner.fired.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until the trigger fired; fails the test when it does not within `timeout`
    /// (the client never reached that point).
    pub fn wait_triggered(&self, timeout: Duration) {
        let t = self
            .inner
            .trigger
            .as_ref()
            .expect("wait_triggered needs a proxy made by cut_at or hold_at");
        let fired = self.inner.fired.lock().unwrap_or_else(|p| p.into_inner());
        let (fired, _) = self
            .inner
            .fired_cv
            .wait_timeout_while(fired, timeout, |f| !*f)
            .unwrap_or_else(|p| p.into_inner());
        assert!(
            *fired,
            "the client never sent frame #{} of {:?} through the proxy within {timeout:?} \
             (it saw {})",
            t.nth,
            t.method,
            t.seen.load(Ordering::SeqCst)
        );
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.inner.cut();
    }
}

/// Copies the client's bytes to the broker frame by frame, watching for the trigger.
fn client_to_broker(mut from: TcpStream, mut to: TcpStream, inner: &Inner) {
    let end = |to: &TcpStream| {
        let _ = to.shutdown(Shutdown::Both);
    };
    // The protocol header, "AMQP" 0 0 9 1.
    let mut header = [0u8; 8];
    if from.read_exact(&mut header).is_err() || to.write_all(&header).is_err() {
        return end(&to);
    }
    loop {
        // type (1), channel (2), size (4), payload (size), frame end (1).
        let mut head = [0u8; 7];
        if from.read_exact(&mut head).is_err() {
            return end(&to);
        }
        let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]) as usize;
        let mut frame = vec![0u8; 7 + size + 1];
        frame[..7].copy_from_slice(&head);
        let rest = &mut frame[7..];
        if from.read_exact(rest).is_err() {
            return end(&to);
        }
        if head[0] == 1
            && size >= 4
            && let Some(t) = &inner.trigger
        {
            let ids = (
                u16::from_be_bytes([rest[0], rest[1]]),
                u16::from_be_bytes([rest[2], rest[3]]),
            );
            if ids == t.method.ids() && t.seen.fetch_add(1, Ordering::SeqCst) + 1 == t.nth {
                match t.action {
                    Action::Cut => inner.cut(),
                    Action::Hold => {}
                }
                inner.fire();
                if t.action == Action::Hold {
                    // Swallow everything the client sends from now on; the connection
                    // stays open until the client dies or the proxy is dropped.
                    let _ = std::io::copy(&mut from, &mut std::io::sink());
                }
                return end(&to);
            }
        }
        // One write per frame: split writes stall on Nagle + delayed ACK.
        if to.write_all(&frame).is_err() {
            return end(&to);
        }
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Both);
    });
}
