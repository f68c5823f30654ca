//! A fault-injecting TCP proxy to put between a pool and a real server.
//!
//! [`FaultProxy`] listens on `127.0.0.1:<port>` and forwards every connection to the upstream
//! server, unless told to misbehave:
//!
//! - [`cut_all`](FaultProxy::cut_all): reset (RST) every live connection, both sides, the way a
//!   failover or a crashed middlebox does;
//! - [`refuse`](FaultProxy::refuse) / [`accept`](FaultProxy::accept): close the listening
//!   socket (new connections get `ECONNREFUSED`) and reopen it on the same port;
//! - [`blackhole`](FaultProxy::blackhole): keep every socket open but forward nothing, for live
//!   and new connections alike (a silent network cut: the
//!   handshake of new connections never completes, queries never get an answer);
//! - [`set_latency`](FaultProxy::set_latency): delay every forwarded chunk.
//!
//! The proxy owns its tasks: dropping it closes the listener and every connection.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// How forwarded traffic is disturbed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Disturbance {
    blackhole: bool,
    latency: Duration,
}

/// A TCP proxy with switchable faults. See the [module docs](self).
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    listener: Mutex<Option<JoinHandle<()>>>,
}

/// A live connection: its cut switch and its relay task.
type LiveConn = (oneshot::Sender<()>, JoinHandle<()>);

#[derive(Debug)]
struct Shared {
    upstream: SocketAddr,
    disturbance: watch::Sender<Disturbance>,
    /// Live connections: their cut switches and tasks. Entries are removed by the
    /// connection task when it ends.
    conns: Mutex<HashMap<u64, LiveConn>>,
    next_id: AtomicU64,
    accepted: AtomicU64,
    cut: AtomicU64,
}

impl FaultProxy {
    /// Starts a proxy on `127.0.0.1` (a free port) in front of `upstream`.
    pub async fn start(upstream: SocketAddr) -> io::Result<FaultProxy> {
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let addr = listener.local_addr()?;
        let (disturbance, _) = watch::channel(Disturbance::default());
        let shared = Arc::new(Shared {
            upstream,
            disturbance,
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            cut: AtomicU64::new(0),
        });
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(FaultProxy {
            addr,
            shared,
            listener: Mutex::new(Some(task)),
        })
    }

    /// The address clients should connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The proxied server.
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// Resets every live connection (RST to the client and to the server). Returns how many.
    pub fn cut_all(&self) -> usize {
        let conns: Vec<_> = self.shared.conns.lock().drain().collect();
        let n = conns.len();
        for (_, (cut, _task)) in conns {
            let _ = cut.send(());
        }
        self.shared.cut.fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    /// Closes the listening socket: new connections are refused until [`accept`](Self::accept).
    /// Live connections are left alone (combine with [`cut_all`](Self::cut_all) for an outage).
    /// Returns once the socket is closed.
    pub async fn refuse(&self) {
        let task = self.listener.lock().take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
    }

    /// Like [`refuse`](Self::refuse) without waiting: the listening socket closes as soon as
    /// its task is cancelled (a connect racing that may be reset instead of refused).
    pub fn refuse_now(&self) {
        if let Some(task) = self.listener.lock().take() {
            task.abort();
        }
    }

    /// Listens again on the same port (after [`refuse`](Self::refuse)); does nothing if
    /// already listening.
    pub fn accept(&self) -> io::Result<()> {
        let mut slot = self.listener.lock();
        if slot.as_ref().is_some_and(|t| !t.is_finished()) {
            return Ok(());
        }
        let listener = bind(self.addr)?;
        *slot = Some(tokio::spawn(accept_loop(
            listener,
            Arc::clone(&self.shared),
        )));
        Ok(())
    }

    /// Whether the proxy is listening.
    pub fn is_accepting(&self) -> bool {
        self.listener
            .lock()
            .as_ref()
            .is_some_and(|t| !t.is_finished())
    }

    /// Stops (or resumes) forwarding bytes on every connection, live and new; sockets stay open.
    pub fn blackhole(&self, on: bool) {
        self.shared.disturbance.send_modify(|d| d.blackhole = on);
    }

    /// Delays every forwarded chunk by `latency` (zero to stop).
    pub fn set_latency(&self, latency: Duration) {
        self.shared.disturbance.send_modify(|d| d.latency = latency);
    }

    /// Clears every fault: listening, forwarding, no latency.
    pub fn heal(&self) -> io::Result<()> {
        self.shared.disturbance.send_replace(Disturbance::default());
        self.accept()
    }

    /// Connections currently open through the proxy.
    pub fn live_connections(&self) -> usize {
        self.shared.conns.lock().len()
    }

    /// Connections accepted since the start.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// Connections reset by [`cut_all`](Self::cut_all) since the start.
    pub fn cut_count(&self) -> u64 {
        self.shared.cut.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(task) = self.listener.lock().take() {
            task.abort();
        }
        for (_, (_cut, task)) in self.shared.conns.lock().drain() {
            task.abort();
        }
    }
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(128)
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        shared.accepted.fetch_add(1, Ordering::Relaxed);
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (cut_tx, cut_rx) = oneshot::channel();
        // Register before the task can finish, so it always finds its own entry to remove.
        let mut conns = shared.conns.lock();
        let task = tokio::spawn(relay(client, Arc::clone(&shared), id, cut_rx));
        conns.insert(id, (cut_tx, task));
    }
}

/// Resets a socket: `SO_LINGER 0` then close sends RST instead of FIN.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

async fn relay(client: TcpStream, shared: Arc<Shared>, id: u64, mut cut: oneshot::Receiver<()>) {
    let mut faults = shared.disturbance.subscribe();
    let _ = client.set_nodelay(true);
    // A blackholed proxy accepts but does not even reach the server.
    loop {
        if !faults.borrow_and_update().blackhole {
            break;
        }
        tokio::select! {
            _ = &mut cut => return reset(client),
            r = faults.changed() => if r.is_err() { return },
        }
    }
    let upstream = tokio::select! {
        _ = &mut cut => return reset(client),
        r = TcpStream::connect(shared.upstream) => match r {
            Ok(s) => s,
            Err(_) => {
                // The server refused: refuse the client the same way (RST).
                shared.conns.lock().remove(&id);
                return reset(client);
            }
        },
    };
    let _ = upstream.set_nodelay(true);
    let (mut client, mut upstream) = (client, upstream);
    let mut up_buf = vec![0u8; 16 * 1024];
    let mut down_buf = vec![0u8; 16 * 1024];
    let outcome = 'relay: loop {
        let d = *faults.borrow_and_update();
        // Read one chunk from either side (nothing while blackholed).
        let (n, to_server) = tokio::select! {
            _ = &mut cut => break Outcome::Cut,
            r = faults.changed() => if r.is_err() { break Outcome::Closed } else { continue },
            r = client.read(&mut up_buf), if !d.blackhole => match r {
                Ok(0) | Err(_) => break Outcome::Closed,
                Ok(n) => (n, true),
            },
            r = upstream.read(&mut down_buf), if !d.blackhole => match r {
                Ok(0) | Err(_) => break Outcome::Closed,
                Ok(n) => (n, false),
            },
        };
        // The blackhole may have been switched on while this chunk was being read (the
        // switch and the data were ready at once): hold the chunk until it lifts, so nothing
        // sent after `blackhole(true)` returned gets through.
        while faults.borrow().blackhole {
            tokio::select! {
                biased;
                _ = &mut cut => break 'relay Outcome::Cut,
                r = faults.changed() => if r.is_err() { break 'relay Outcome::Closed },
            }
        }
        if !d.latency.is_zero() {
            tokio::select! {
                _ = &mut cut => break Outcome::Cut,
                _ = tokio::time::sleep(d.latency) => {}
            }
        }
        let write = async {
            if to_server {
                upstream.write_all(&up_buf[..n]).await
            } else {
                client.write_all(&down_buf[..n]).await
            }
        };
        tokio::select! {
            _ = &mut cut => break Outcome::Cut,
            r = write => if r.is_err() { break Outcome::Closed },
        }
    };
    match outcome {
        Outcome::Cut => {
            reset(client);
            reset(upstream);
        }
        Outcome::Closed => {
            shared.conns.lock().remove(&id);
            let _ = client.shutdown().await;
            let _ = upstream.shutdown().await;
        }
    }
}

enum Outcome {
    Cut,
    Closed,
}

/// The lab's fault switches, applied to a real server through the proxy: an outage is a
/// blackhole (new connects hang, open connections go silent), refusal closes the listener,
/// a restart refuses and resets every open connection, latency delays every chunk.
impl crate::sim::Faults for FaultProxy {
    fn set_outage(&self, down: bool) {
        self.blackhole(down);
    }

    fn set_extra_latency(&self, extra: Duration) {
        self.set_latency(extra);
    }

    fn set_refuse(&self, refuse: bool) {
        if refuse {
            self.refuse_now();
        } else if let Err(e) = self.accept() {
            tracing::warn!(error = %e, "fault proxy could not listen again");
        }
    }

    /// A restart as a proxy can fake one: connects refused and every open connection reset
    /// (the server's own restart message cannot be faked at this level).
    fn set_restarting(&self, restarting: bool) {
        self.set_refuse(restarting);
        if restarting {
            self.cut_all();
        }
    }
}
