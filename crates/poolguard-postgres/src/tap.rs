//! A transparent socket wrapper that follows the PostgreSQL wire protocol's framing to learn,
//! without any extra round trip, whether the session is inside a transaction.
//!
//! # Implementation details
//!
//! Every backend message is `type byte, u32 length (counting itself), body`. The server ends
//! the answer to every client `Query` (`Q`), `Sync` (`S`) and `FunctionCall` (`F`), and the
//! startup exchange, with one `ReadyForQuery` (`Z`) whose one-byte body is the transaction
//! status: `I` idle, `T` in a transaction block, `E` in a failed transaction block.
//!
//! The read half skips bodies and records the status byte of each `Z`; the write half counts
//! `Q`/`S`/`F` messages (the first client message, the startup packet, has no type byte).
//! When `ready_for_query == requests + 1` every request written so far has been answered and
//! the last status byte is the session's status. Anything else means a request is in flight
//! (typically a query future dropped by a cancelled caller), and the state is unknown.
//!
//! One exception keeps a prepared-by-SQL-string query cheap: tokio-postgres closes the statement
//! it prepared for `query("...", ..)` with a `Close` + `Sync` batch sent as the statement drops,
//! so the connection comes back with that batch unanswered. A batch made only of `Close`
//! messages cannot open a transaction (outside a transaction block an error in it is rolled
//! back by its `Sync`), so when every request up to the last other one is answered and the
//! last status was `I`, the session is known idle with close-only batches still in flight.
//!
//! The parsers only ever look at lengths and type bytes; they never buffer, so the cost is a
//! few comparisons per message.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::Notify;

use crate::session_state::{SessionState, Sniffer};

/// What the tap has learnt about the session; shared by the socket (owned by the connection
/// task) and the pooled connection.
#[derive(Debug)]
pub(crate) struct TapState {
    /// `Q`, `S` and `F` messages written to the server. Written by the connection task only.
    requests: AtomicU64,
    /// The trailing run of close-only batches: requests `close_start + 1 ..= close_end` ended
    /// batches made only of `Close` messages. Meaningful only while `close_end == requests`.
    /// Stored before `requests` is advanced. Written by the connection task only.
    close_start: AtomicU64,
    /// See `close_start`.
    close_end: AtomicU64,
    /// `ReadyForQuery` messages received. Incremented after `status` is stored.
    ready: AtomicU64,
    /// Status byte of the last `ReadyForQuery` (`0` before the first one).
    status: AtomicU8,
    /// Wake-ups of the connection task, counted by its waker (see [`WakeCounter`]). A client
    /// request is pushed into the task's channel and then wakes it, so a count ahead of
    /// `processed` means a request may be queued but not yet written to the socket.
    wakes: AtomicU64,
    /// The `wakes` value read just before the connection task's last completed poll;
    /// `u64::MAX` until the first poll (a request sent before it woke nobody).
    processed: AtomicU64,
    /// The server sent a FATAL/PANIC error or closed the socket: the session is over.
    dead: AtomicBool,
    /// Error responses rejecting a prepared statement (SQLSTATE 0A000 or 26000), which
    /// make the statement cache start afresh (see `statement_cache`).
    stale_statements: AtomicU64,
    /// Notified after a completed poll of the connection task while a [`TapState::settled`]
    /// call is waiting (`settling > 0`), so it can wait for an unknown status to become known.
    progress: Notify,
    /// [`TapState::settled`] rounds in progress (each counted from just after it created its
    /// `progress` future until it returns or looks again); the connection task notifies
    /// `progress` only while this is non-zero (see [`TapState::wake_settlers`] for why no
    /// notification is lost).
    settling: AtomicUsize,
    /// Request timing, for the query timeout (`None`: not timed).
    timing: Option<Timing>,
    /// Session state changed by the borrower (see [`crate::session_state`]).
    pub(crate) session: SessionState,
}

/// When the request at the head of the line started waiting; kept only with a query timeout.
/// Written by the connection task only (both socket halves and the watchdog live there).
#[derive(Debug, Default)]
struct Timing {
    /// Since when the oldest unanswered request has been waiting: since it was written, or
    /// since the answer to the request before it (`None`: nothing unanswered).
    busy_since: Mutex<Option<tokio::time::Instant>>,
    /// Notified when the session goes from nothing unanswered to a request in flight.
    became_busy: Notify,
    /// The query timeout expired: the connection was closed.
    expired: AtomicBool,
}

/// The session's transaction status as the wire protocol last reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxStatus {
    /// Every request answered, not in a transaction block.
    Idle,
    /// Every request answered, inside a transaction block (`T`) or a failed one (`E`).
    InTransaction,
    /// A request is still unanswered (or the startup never finished): unknown.
    Unknown,
}

impl Default for TapState {
    fn default() -> Self {
        TapState::new(false)
    }
}

impl TapState {
    /// A fresh tap; `timed` keeps the request timing [`watchdog`] needs.
    pub(crate) fn new(timed: bool) -> Self {
        TapState {
            timing: timed.then(Timing::default),
            requests: AtomicU64::new(0),
            close_start: AtomicU64::new(0),
            close_end: AtomicU64::new(0),
            ready: AtomicU64::new(0),
            status: AtomicU8::new(0),
            wakes: AtomicU64::new(0),
            processed: AtomicU64::new(u64::MAX),
            dead: AtomicBool::new(false),
            stale_statements: AtomicU64::new(0),
            progress: Notify::new(),
            settling: AtomicUsize::new(0),
            session: SessionState::default(),
        }
    }

    /// Whether a request written to the socket is still unanswered.
    fn unanswered(&self) -> bool {
        self.ready.load(Ordering::Acquire) <= self.requests.load(Ordering::Acquire)
    }

    /// Updates the head-of-line clock: a request written when nothing was unanswered starts
    /// it; an answer stops it, or restarts it for the next unanswered request.
    fn retime(&self, answer: bool, was_busy: bool) {
        let Some(t) = &self.timing else { return };
        let busy = self.unanswered();
        let mut since = t.busy_since.lock().unwrap_or_else(|p| p.into_inner());
        if answer {
            *since = busy.then(tokio::time::Instant::now);
        } else if busy && !was_busy {
            *since = Some(tokio::time::Instant::now());
            t.became_busy.notify_one();
        }
    }

    /// Marks the session as ended by the query timeout.
    pub(crate) fn expire(&self) {
        if let Some(t) = &self.timing {
            t.expired.store(true, Ordering::Release);
        }
        self.dead.store(true, Ordering::Release);
        self.progress.notify_waiters();
    }

    /// Whether the query timeout ended this session.
    pub(crate) fn expired(&self) -> bool {
        self.timing
            .as_ref()
            .is_some_and(|t| t.expired.load(Ordering::Acquire))
    }
}

/// Returns once a request has waited `limit` for its answer (counted from when it was written,
/// or from the answer to the request before it). Never returns when the tap is not timed.
pub(crate) async fn watchdog(state: &TapState, limit: std::time::Duration) {
    let Some(t) = &state.timing else {
        return std::future::pending().await;
    };
    loop {
        let since = *t.busy_since.lock().unwrap_or_else(|p| p.into_inner());
        match since {
            None => t.became_busy.notified().await,
            Some(start) => {
                // A limit too long to add to the clock (`Duration::MAX`) never expires.
                let Some(deadline) = start.checked_add(limit) else {
                    return std::future::pending().await;
                };
                tokio::time::sleep_until(deadline).await;
                if *t.busy_since.lock().unwrap_or_else(|p| p.into_inner()) == Some(start) {
                    return;
                }
            }
        }
    }
}

impl TapState {
    pub(crate) fn status(&self) -> TxStatus {
        // A wake-up not yet followed by a full poll of the connection task: a request may be
        // sitting in the channel (typically from a query future dropped right after sending).
        let wakes = self.wakes.load(Ordering::SeqCst);
        if self.processed.load(Ordering::SeqCst) != wakes {
            return TxStatus::Unknown;
        }
        // `ready` is incremented with Release after `status` is stored; read it first.
        let ready = self.ready.load(Ordering::Acquire);
        let requests = self.requests.load(Ordering::Acquire);
        if ready != requests + 1 {
            // Unanswered requests: if they are all close-only batches sent after the answer
            // to the last other request, and that left the session idle, it is still idle.
            let close_end = self.close_end.load(Ordering::Acquire);
            let close_start = self.close_start.load(Ordering::Acquire);
            if close_end == requests
                && ready > close_start
                && self.status.load(Ordering::Acquire) == b'I'
            {
                return TxStatus::Idle;
            }
            return TxStatus::Unknown;
        }
        match self.status.load(Ordering::Acquire) {
            b'I' => TxStatus::Idle,
            b'T' | b'E' => TxStatus::InTransaction,
            _ => TxStatus::Unknown,
        }
    }
}

impl TapState {
    /// Waits until every request sent so far is answered (or the session ends), then returns
    /// the status. Callers bound it with a timeout (the pool's `reset_timeout`); dropping
    /// the future at any await is safe (the `settling` count is restored by a guard).
    pub(crate) async fn settled(&self) -> TxStatus {
        loop {
            // Order matters (see `wake_settlers`): the `Notified` is created first, then this
            // waiter is counted, then the status is read.
            let notified = self.progress.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let _counted = Settling::enter(&self.settling);
            match self.status() {
                TxStatus::Unknown if !self.is_dead() => notified.await,
                s => return s,
            }
        }
    }

    /// Called by the connection task after each completed poll, once `processed` is stored:
    /// wakes the [`TapState::settled`] calls, and costs one load when there are none.
    ///
    /// No wake-up is lost. Every change that can turn an unknown status into a known one
    /// (a `ReadyForQuery`, the end of the session, `processed` catching up with `wakes`) is
    /// made inside a poll of the connection task (the socket is only read from there), except
    /// [`TapState::expire`], which notifies unconditionally. Each poll's changes are
    /// followed by the `SeqCst` store of `processed` (P), then by the `SeqCst` load of
    /// `settling` here (L). A waiter creates its `Notified` (N), then counts itself with a
    /// `SeqCst` read-modify-write of `settling` (C), then reads the status, starting with a
    /// `SeqCst` load of `processed` (R). The `SeqCst` operations have one total order, which
    /// agrees with program order, so P < L and C < R in it. Either:
    /// - L reads C's write or a later one. Every write to `settling` is a read-modify-write,
    ///   so C heads a release sequence that L (an acquire load) reads from: C
    ///   synchronizes-with L, hence N happens-before the `notify_waiters` call below, and a
    ///   `Notified` receives every `notify_waiters` call made after it was created (tokio's
    ///   documented guarantee). The count read includes this waiter unless its guard has
    ///   already been dropped, which only happens after this round of the waiter is over
    ///   (it returned, or it loops and its next round starts the argument again).
    /// - or L reads a value older than C: then L < C in the total order, so P < L < C < R,
    ///   and R reads P's value or a later one; a `SeqCst` store is a release and R an
    ///   acquire, so everything the poll did before P (the `ReadyForQuery`, `dead`) is
    ///   visible to the status read that follows R, and the waiter does not sleep.
    fn wake_settlers(&self) {
        if self.settling.load(Ordering::SeqCst) > 0 {
            self.progress.notify_waiters();
        }
    }

    /// Records one client message of type `kind`; `close_only` is the writer's "the batch so
    /// far is only `Close` messages" flag.
    fn on_client_message(&self, kind: u8, close_only: &mut bool) {
        match kind {
            b'Q' | b'S' | b'F' => {
                let was_busy = self.timing.is_some() && self.unanswered();
                let n = self.requests.load(Ordering::Relaxed) + 1;
                // A `Sync` ending a batch of only `Close`s extends (or starts) the trailing
                // close-only run; `Q`, `F` and other batches end it (by leaving `close_end`
                // behind `requests`). Published before the count that makes it visible.
                if kind == b'S' && *close_only {
                    if self.close_end.load(Ordering::Relaxed) != n - 1 {
                        self.close_start.store(n - 1, Ordering::Release);
                    }
                    self.close_end.store(n, Ordering::Release);
                }
                self.requests.store(n, Ordering::Release);
                if self.timing.is_some() {
                    self.retime(false, was_busy);
                }
                *close_only = true;
            }
            b'C' => {}
            _ => *close_only = false,
        }
    }

    /// Whether the server ended the session (FATAL error or end of stream).
    pub(crate) fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Acquire)
    }

    /// Error responses with SQLSTATE 0A000 or 26000 received so far.
    pub(crate) fn stale_statement_errors(&self) -> u64 {
        self.stale_statements.load(Ordering::Acquire)
    }
}

/// Counts one [`TapState::settled`] round in `settling` while it lives.
struct Settling<'a>(&'a AtomicUsize);

impl<'a> Settling<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Settling(count)
    }
}

impl Drop for Settling<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The waker the connection task is polled with: it counts wake-ups, then forwards them.
///
/// The forwarded-to waker (the task's) is written only by [`drive`], which keeps its own
/// copy and takes the lock only when the task's waker changes (in practice once, at the
/// first poll); so a poll takes no lock, and a wake-up takes the lock uncontended.
#[derive(Debug)]
pub(crate) struct WakeCounter {
    state: Arc<TapState>,
    inner: Mutex<Option<Waker>>,
}

impl WakeCounter {
    pub(crate) fn new(state: Arc<TapState>) -> Arc<Self> {
        Arc::new(WakeCounter {
            state,
            inner: Mutex::new(None),
        })
    }
}

impl Wake for WakeCounter {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.state.wakes.fetch_add(1, Ordering::SeqCst);
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = &*inner {
            w.wake_by_ref();
        }
    }
}

/// Drives `fut` (the tokio-postgres connection) with a [`WakeCounter`] waker, recording in
/// `processed` the wake count each completed poll started from.
pub(crate) async fn drive<F: Future + Unpin>(mut fut: F, counter: Arc<WakeCounter>) -> F::Output {
    let waker = Waker::from(Arc::clone(&counter));
    // The waker last stored in `counter.inner`; only this closure writes it, so while the
    // task's waker would wake the same task the slot needs no look (and no lock).
    let mut forwarded: Option<Waker> = None;
    std::future::poll_fn(move |cx| {
        if !forwarded.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            let w = cx.waker().clone();
            *counter.inner.lock().unwrap_or_else(|p| p.into_inner()) = Some(w.clone());
            forwarded = Some(w);
        }
        let seen = counter.state.wakes.load(Ordering::SeqCst);
        let res = Pin::new(&mut fut).poll(&mut Context::from_waker(&waker));
        counter.state.processed.store(seen, Ordering::SeqCst);
        counter.state.wake_settlers();
        res
    })
    .await
}

/// Incremental framing of one direction of the protocol.
#[derive(Debug)]
struct Framer {
    /// Whether messages carry a leading type byte (false only for the client's startup packet).
    typed: bool,
    header: [u8; 5],
    /// Header bytes collected so far.
    have: usize,
    /// Body bytes of the current message still to skip.
    body_left: usize,
    /// The current message is a `Z` whose status byte has not been seen yet.
    want_status: bool,
    /// The start of the current `E` (ErrorResponse) body, to spot FATAL/PANIC severities.
    error_head: Option<([u8; ERROR_HEAD], usize)>,
    /// ErrorResponses seen whose SQLSTATE says a prepared statement was rejected.
    stale_statement_errors: u64,
}

/// Bytes of an ErrorResponse body looked at: the severity fields come first, then the
/// SQLSTATE (after a localized severity, which may be long).
const ERROR_HEAD: usize = 64;
/// Of those, the bytes searched for the severity.
const SEVERITY_HEAD: usize = 24;

/// Whether the start of an ErrorResponse body has the SQLSTATE field (`C`, always after
/// another field) 0A000 (a cached plan whose result type changed) or 26000 (no such
/// prepared statement).
fn is_stale_statement_error(head: &[u8]) -> bool {
    [&b"\0C0A000\0"[..], b"\0C26000\0"]
        .iter()
        .any(|pat| head.windows(pat.len()).any(|w| w == *pat))
}

/// Whether the start of an ErrorResponse body carries a FATAL or PANIC severity (the
/// non-localized `V` field, or the `S` field on servers older than 9.6).
fn is_fatal_error(head: &[u8]) -> bool {
    [&b"VFATAL\0"[..], b"VPANIC\0", b"SFATAL\0", b"SPANIC\0"]
        .iter()
        .any(|pat| head.windows(pat.len()).any(|w| w == *pat))
}

impl Framer {
    fn new(typed: bool) -> Self {
        Framer {
            typed,
            header: [0; 5],
            have: 0,
            body_left: 0,
            want_status: false,
            error_head: None,
            stale_statement_errors: 0,
        }
    }

    /// Feeds bytes; calls `on_type` with each message's type byte once its header is complete
    /// and `on_status` with the first body byte of each `Z`.
    fn feed(
        &mut self,
        mut bytes: &[u8],
        on_type: &mut impl FnMut(u8),
        on_status: &mut impl FnMut(u8),
        on_fatal: &mut impl FnMut(),
    ) {
        while !bytes.is_empty() {
            if self.body_left > 0 {
                if self.want_status {
                    on_status(bytes[0]);
                    self.want_status = false;
                }
                let n = self.body_left.min(bytes.len());
                if let Some((head, len)) = &mut self.error_head {
                    let take = (ERROR_HEAD - *len).min(n);
                    head[*len..*len + take].copy_from_slice(&bytes[..take]);
                    *len += take;
                    if *len == ERROR_HEAD || n == self.body_left {
                        if is_fatal_error(&head[..(*len).min(SEVERITY_HEAD)]) {
                            on_fatal();
                        }
                        if is_stale_statement_error(&head[..*len]) {
                            self.stale_statement_errors += 1;
                        }
                        self.error_head = None;
                    }
                }
                self.body_left -= n;
                bytes = &bytes[n..];
                continue;
            }
            let header_len = if self.typed { 5 } else { 4 };
            let n = (header_len - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have < header_len {
                continue;
            }
            self.have = 0;
            let (kind, len) = if self.typed {
                let len = u32::from_be_bytes([
                    self.header[1],
                    self.header[2],
                    self.header[3],
                    self.header[4],
                ]);
                (Some(self.header[0]), len)
            } else {
                self.typed = true;
                (
                    None,
                    u32::from_be_bytes([
                        self.header[0],
                        self.header[1],
                        self.header[2],
                        self.header[3],
                    ]),
                )
            };
            self.body_left = (len as usize).saturating_sub(4);
            if let Some(kind) = kind {
                on_type(kind);
                self.want_status = kind == b'Z' && self.body_left > 0;
                if kind == b'E' && self.body_left > 0 {
                    self.error_head = Some(([0; ERROR_HEAD], 0));
                }
            }
        }
    }
}

/// The raw socket under a pooled connection.
pub(crate) enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
    /// An encrypted stream (feature `tls`); the tap sits above the encryption.
    #[cfg(feature = "tls")]
    Tls(Box<dyn crate::tls::TlsIo>),
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Socket::Tcp(s) => f.debug_tuple("Tcp").field(s).finish(),
            Socket::Unix(s) => f.debug_tuple("Unix").field(s).finish(),
            #[cfg(feature = "tls")]
            Socket::Tls(_) => f.write_str("Tls(..)"),
        }
    }
}

/// A socket whose traffic updates a [`TapState`].
#[derive(Debug)]
pub(crate) struct TapStream {
    socket: Socket,
    state: Arc<TapState>,
    reads: Framer,
    writes: Framer,
    /// The client batch written since the last `Sync` holds only `Close` messages.
    close_only: bool,
    /// The SQL text the client sends, and the server's setting reports.
    sniff: (Sniffer, Sniffer),
}

impl TapStream {
    pub(crate) fn new(socket: Socket, state: Arc<TapState>) -> Self {
        TapStream {
            socket,
            state,
            reads: Framer::new(true),
            writes: Framer::new(false),
            close_only: true,
            sniff: (Sniffer::new(true, b"SZ"), Sniffer::new(false, b"QP")),
        }
    }
}

impl AsyncRead for TapStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let res = match &mut this.socket {
            Socket::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(feature = "tls")]
            Socket::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        };
        match &res {
            Poll::Ready(Ok(())) if buf.filled().len() == before => {
                this.state.dead.store(true, Ordering::Release)
            }
            Poll::Ready(Ok(())) => {
                let state = &this.state;
                this.sniff
                    .0
                    .feed(&buf.filled()[before..], &mut |k, body, _| {
                        state.session.on_server(k, body)
                    });
                this.reads.feed(
                    &buf.filled()[before..],
                    &mut |_| {},
                    &mut |status| {
                        state.status.store(status, Ordering::Release);
                        state.ready.fetch_add(1, Ordering::Release);
                        if state.timing.is_some() {
                            state.retime(true, true);
                        }
                        // Waiters are woken by `drive` when this poll ends.
                    },
                    &mut || state.dead.store(true, Ordering::Release),
                );
                let stale = this.reads.stale_statement_errors;
                if stale != state.stale_statements.load(Ordering::Relaxed) {
                    state.stale_statements.store(stale, Ordering::Release);
                }
            }
            Poll::Ready(Err(_)) => {
                // Waiters are woken by `drive` when this poll ends.
                this.state.dead.store(true, Ordering::Release)
            }
            Poll::Pending => {}
        }
        res
    }
}

impl AsyncWrite for TapStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let res = match &mut this.socket {
            Socket::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_write(cx, buf),
            #[cfg(feature = "tls")]
            Socket::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        };
        if let Poll::Ready(Ok(n)) = res {
            let (state, close_only) = (&this.state, &mut this.close_only);
            this.sniff.1.feed(&buf[..n], &mut |k, body, cut| {
                state.session.on_client(k, body, cut)
            });
            this.writes.feed(
                &buf[..n],
                &mut |kind| state.on_client_message(kind, close_only),
                &mut |_| {},
                &mut || {},
            );
        }
        res
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.socket {
            Socket::Tcp(s) => Pin::new(s).poll_flush(cx),
            Socket::Unix(s) => Pin::new(s).poll_flush(cx),
            #[cfg(feature = "tls")]
            Socket::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.socket {
            Socket::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Socket::Unix(s) => Pin::new(s).poll_shutdown(cx),
            #[cfg(feature = "tls")]
            Socket::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![kind];
        v.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn framer_finds_status_bytes_across_arbitrary_splits() {
        let mut stream = Vec::new();
        stream.extend(msg(b'R', &[0, 0, 0, 0]));
        stream.extend(msg(b'Z', b"I"));
        stream.extend(msg(b'D', &[9; 300]));
        stream.extend(msg(b'C', b"INSERT 0 1\0"));
        stream.extend(msg(b'Z', b"T"));
        stream.extend(msg(b'Z', b"E"));
        stream.extend(msg(b'E', b"SERROR\0VERROR\0C22012\0Mdivision by zero\0\0"));
        stream.extend(msg(
            b'E',
            b"SFATAL\0VFATAL\0C57P01\0Mterminating connection\0\0",
        ));
        stream.extend(msg(b'N', b"SWARNING\0VWARNING\0\0"));
        for chunk in [1, 2, 3, 5, 7, 64, 1000] {
            let mut f = Framer::new(true);
            let mut types = Vec::new();
            let mut statuses = Vec::new();
            let mut fatal = 0;
            for part in stream.chunks(chunk) {
                f.feed(
                    part,
                    &mut |t| types.push(t),
                    &mut |s| statuses.push(s),
                    &mut || fatal += 1,
                );
            }
            assert_eq!(types, b"RZDCZZEEN", "chunk {chunk}");
            assert_eq!(statuses, b"ITE", "chunk {chunk}");
            assert_eq!(fatal, 1, "chunk {chunk}");
            assert_eq!(f.stale_statement_errors, 0, "chunk {chunk}");
        }
    }

    #[test]
    fn framer_counts_errors_rejecting_a_prepared_statement() {
        let mut stream = Vec::new();
        stream.extend(msg(
            b'E',
            b"SERROR\0VERROR\0C0A000\0Mcached plan must not change result type\0\0",
        ));
        // A long localized severity pushes the code far from the start.
        stream.extend(msg(
            b'E',
            "S\u{41e}\u{428}\u{418}\u{411}\u{41a}\u{410}\0VERROR\0C26000\0Mprepared statement \"s1\" does not exist\0\0".as_bytes(),
        ));
        // Other codes, and the code's digits in a message, do not count.
        stream.extend(msg(b'E', b"SERROR\0VERROR\0C22012\0MC26000\0\0"));
        stream.extend(msg(b'Z', b"I"));
        for chunk in [1, 2, 7, 1000] {
            let mut f = Framer::new(true);
            for part in stream.chunks(chunk) {
                f.feed(part, &mut |_| {}, &mut |_| {}, &mut || {});
            }
            assert_eq!(f.stale_statement_errors, 2, "chunk {chunk}");
        }
    }

    #[test]
    fn write_framer_skips_the_untyped_startup_packet() {
        let mut stream = Vec::new();
        let startup = [0u8, 3, 0, 0, b'u', b's', b'e', b'r', 0, b'Q', 0];
        stream.extend_from_slice(&((startup.len() + 4) as u32).to_be_bytes());
        stream.extend_from_slice(&startup);
        stream.extend(msg(b'Q', b"BEGIN\0"));
        stream.extend(msg(b'P', b"\0SELECT 1\0\0\0"));
        stream.extend(msg(b'S', b""));
        let mut f = Framer::new(false);
        let mut types = Vec::new();
        for part in stream.chunks(3) {
            f.feed(part, &mut |t| types.push(t), &mut |_| {}, &mut || {});
        }
        assert_eq!(types, b"QPS");
    }

    #[test]
    fn status_is_unknown_while_a_request_is_unanswered() {
        let s = TapState::default();
        s.processed.store(0, Ordering::SeqCst);
        assert_eq!(s.status(), TxStatus::Unknown, "before startup completes");
        s.status.store(b'I', Ordering::Release);
        s.ready.fetch_add(1, Ordering::Release);
        assert_eq!(s.status(), TxStatus::Idle);
        s.requests.fetch_add(1, Ordering::Release);
        assert_eq!(s.status(), TxStatus::Unknown, "query in flight");
        s.status.store(b'T', Ordering::Release);
        s.ready.fetch_add(1, Ordering::Release);
        assert_eq!(s.status(), TxStatus::InTransaction);
        s.wakes.fetch_add(1, Ordering::SeqCst);
        assert_eq!(
            s.status(),
            TxStatus::Unknown,
            "connection task woken, not yet run"
        );
    }

    #[test]
    fn close_only_batches_after_an_idle_status_leave_the_session_idle() {
        let s = TapState::default();
        s.processed.store(0, Ordering::SeqCst);
        let answer = |status: u8| {
            s.status.store(status, Ordering::Release);
            s.ready.fetch_add(1, Ordering::Release);
        };
        let mut close_only = true;
        answer(b'I'); // startup
                      // query("SELECT 1", ..): Parse/Describe/Sync, then Bind/Execute/Sync, then the
                      // statement's Close/Sync when it drops.
        for k in *b"PDS" {
            s.on_client_message(k, &mut close_only);
        }
        assert_eq!(s.status(), TxStatus::Unknown, "prepare in flight");
        answer(b'I');
        for k in *b"BES" {
            s.on_client_message(k, &mut close_only);
        }
        for k in *b"CS" {
            s.on_client_message(k, &mut close_only);
        }
        assert_eq!(
            s.status(),
            TxStatus::Unknown,
            "execute unanswered, close behind it"
        );
        answer(b'I');
        assert_eq!(
            s.status(),
            TxStatus::Idle,
            "only the close is unanswered, after I"
        );
        answer(b'I');
        assert_eq!(s.status(), TxStatus::Idle, "all answered");

        // Inside a transaction a pending close does not make the status known.
        s.on_client_message(b'Q', &mut close_only); // BEGIN
        answer(b'T');
        for k in *b"CS" {
            s.on_client_message(k, &mut close_only);
        }
        assert_eq!(s.status(), TxStatus::Unknown, "close pending after T");
        answer(b'T');
        assert_eq!(s.status(), TxStatus::InTransaction);
        s.on_client_message(b'Q', &mut close_only); // COMMIT
        answer(b'I');

        // A batch mixing Close with anything else is a real request.
        for k in *b"CPS" {
            s.on_client_message(k, &mut close_only);
        }
        assert_eq!(s.status(), TxStatus::Unknown, "close + parse in flight");
        answer(b'I');
        // A real request behind a close-only batch keeps the status unknown.
        for k in *b"CS" {
            s.on_client_message(k, &mut close_only);
        }
        s.on_client_message(b'Q', &mut close_only);
        assert_eq!(s.status(), TxStatus::Unknown, "query behind the close");
        answer(b'I');
        assert_eq!(s.status(), TxStatus::Unknown, "query still unanswered");
        answer(b'T');
        assert_eq!(s.status(), TxStatus::InTransaction, "the query was BEGIN");
    }

    /// A stand-in for the tokio-postgres connection under [`drive`]: each status byte
    /// received over the channel is one `ReadyForQuery`, applied inside a poll as the real
    /// socket's are. The channel wakes it through the [`WakeCounter`] waker.
    struct FakeConnection {
        state: Arc<TapState>,
        answers: tokio::sync::mpsc::UnboundedReceiver<u8>,
    }

    impl Future for FakeConnection {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            loop {
                match self.answers.poll_recv(cx) {
                    Poll::Ready(Some(status)) => {
                        self.state.status.store(status, Ordering::Release);
                        self.state.ready.fetch_add(1, Ordering::Release);
                    }
                    Poll::Ready(None) => return Poll::Ready(()),
                    Poll::Pending => return Poll::Pending,
                }
            }
        }
    }

    /// A tap whose startup is answered (idle), driven by a [`FakeConnection`] task.
    fn driven_tap() -> (
        Arc<TapState>,
        tokio::sync::mpsc::UnboundedSender<u8>,
        tokio::task::JoinHandle<()>,
    ) {
        let state = Arc::new(TapState::default());
        state.status.store(b'I', Ordering::Release);
        state.ready.store(1, Ordering::Release);
        let (tx, answers) = tokio::sync::mpsc::unbounded_channel();
        let conn = FakeConnection {
            state: Arc::clone(&state),
            answers,
        };
        let task = tokio::spawn(drive(conn, WakeCounter::new(Arc::clone(&state))));
        (state, tx, task)
    }

    /// Lets the other tasks of the current-thread runtime run until `cond` holds (a bounded
    /// number of turns, each of which runs every ready task).
    async fn run_until(what: &str, cond: impl Fn() -> bool) {
        for _ in 0..1000 {
            if cond() {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("never happened: {what}");
    }

    /// Every `settled` waiter is woken by the connection task's progress: none is left
    /// parked (with the paused clock, a lost wake-up would leave the runtime idle, the clock
    /// would jump to the timeout and the test would fail at once). Waiters cancelled while
    /// parked give their count back, and with nobody settling the task notifies nobody.
    #[tokio::test(start_paused = true)]
    async fn settled_waiters_are_all_woken_and_counted_out() {
        use std::time::Duration;
        use tokio::time::timeout;
        let (s, tx, task) = driven_tap();
        // Let the connection task run its first poll: `processed` catches up with `wakes`.
        run_until("first poll", || s.status() == TxStatus::Idle).await;
        assert_eq!(
            timeout(Duration::from_secs(60), s.settled()).await,
            Ok(TxStatus::Idle),
            "a known status returns at once"
        );
        assert_eq!(s.settling.load(Ordering::SeqCst), 0);

        // Nobody settling: the task's polls notify nobody (a `Notified` created before them
        // is left pending).
        let mut close_only = true;
        {
            let stray = s.progress.notified();
            tokio::pin!(stray);
            stray.as_mut().enable();
            s.on_client_message(b'Q', &mut close_only);
            tx.send(b'I').expect("connection task alive");
            run_until("answer applied", || s.status() == TxStatus::Idle).await;
            assert!(
                stray
                    .as_mut()
                    .poll(&mut Context::from_waker(Waker::noop()))
                    .is_pending(),
                "nobody settling, nobody notified"
            );
        }

        // Two requests written (BEGIN; SELECT 1), none answered yet.
        s.on_client_message(b'Q', &mut close_only);
        s.on_client_message(b'Q', &mut close_only);
        let waiters: Vec<_> = (0..8)
            .map(|_| {
                let s = Arc::clone(&s);
                tokio::spawn(async move { s.settled().await })
            })
            .collect();
        let cancelled = {
            let s = Arc::clone(&s);
            tokio::spawn(async move { s.settled().await })
        };
        run_until("9 waiters counted", || {
            s.settling.load(Ordering::SeqCst) == 9
        })
        .await;
        cancelled.abort();
        assert!(cancelled.await.is_err_and(|e| e.is_cancelled()));
        assert_eq!(
            s.settling.load(Ordering::SeqCst),
            8,
            "a cancelled waiter is counted out"
        );

        tx.send(b'T').expect("connection task alive"); // BEGIN answered
        run_until("BEGIN answered", || s.ready.load(Ordering::Acquire) == 3).await;
        // Give the woken waiters their turn to look again.
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
        assert!(
            waiters.iter().all(|w| !w.is_finished()),
            "one request still unanswered: everyone waits again"
        );
        assert_eq!(s.settling.load(Ordering::SeqCst), 8);

        tx.send(b'T').expect("connection task alive"); // SELECT 1 answered, in the block
        for w in waiters {
            let status = timeout(Duration::from_secs(60), w)
                .await
                .expect("every waiter is woken")
                .expect("waiter ran");
            assert_eq!(status, TxStatus::InTransaction);
        }
        assert_eq!(s.settling.load(Ordering::SeqCst), 0);

        // The end of the session wakes a waiter too.
        s.on_client_message(b'Q', &mut close_only);
        let waiter = {
            let s = Arc::clone(&s);
            tokio::spawn(async move { s.settled().await })
        };
        run_until("waiter counted", || s.settling.load(Ordering::SeqCst) == 1).await;
        s.dead.store(true, Ordering::Release);
        drop(tx); // the connection future ends; its last poll notifies
        let status = timeout(Duration::from_secs(60), waiter)
            .await
            .expect("woken by the session's end")
            .expect("waiter ran");
        assert_eq!(status, TxStatus::Unknown);
        task.await.expect("connection task");
    }

    /// The same on two worker threads, so the waiter's count-then-check races the
    /// connection task's store-then-load for real. A lost wake-up parks a waiter forever;
    /// the timeout only turns that hang into a failure (it is not a speed assertion: a
    /// round normally takes microseconds).
    #[test]
    fn settled_races_with_the_connection_task_without_losing_a_wakeup() {
        use std::time::Duration;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let (s, tx, task) = driven_tap();
            let mut close_only = true;
            for round in 0..2000u32 {
                s.on_client_message(b'Q', &mut close_only);
                let waiter = {
                    let s = Arc::clone(&s);
                    tokio::spawn(async move { s.settled().await })
                };
                // Vary which side starts first.
                if round % 3 == 0 {
                    tokio::task::yield_now().await;
                }
                tx.send(b'I').expect("connection task alive");
                let status = tokio::time::timeout(Duration::from_secs(30), waiter)
                    .await
                    .unwrap_or_else(|_| panic!("round {round}: waiter never woken"))
                    .expect("waiter ran");
                assert_eq!(status, TxStatus::Idle, "round {round}");
            }
            assert_eq!(s.settling.load(Ordering::SeqCst), 0);
            drop(tx);
            task.await.expect("connection task");
        });
    }

    #[tokio::test(start_paused = true)]
    async fn watchdog_times_the_oldest_unanswered_request() {
        use std::time::Duration;
        use tokio::time::{sleep, timeout, Instant};
        let s = TapState::new(true);
        let answer = |status: u8| {
            s.status.store(status, Ordering::Release);
            s.ready.fetch_add(1, Ordering::Release);
            s.retime(true, true);
        };
        answer(b'I'); // startup
        let limit = Duration::from_millis(100);
        let wd = watchdog(&s, limit);
        tokio::pin!(wd);
        assert!(
            timeout(Duration::from_secs(5), &mut wd).await.is_err(),
            "nothing in flight: never fires"
        );

        let mut close_only = true;
        let start = Instant::now();
        s.on_client_message(b'Q', &mut close_only);
        sleep(Duration::from_millis(60)).await;
        answer(b'I'); // answered in time
        s.on_client_message(b'Q', &mut close_only); // t = 60: a new request
        s.on_client_message(b'Q', &mut close_only); // pipelined behind it
        sleep(Duration::from_millis(60)).await;
        answer(b'I'); // t = 120: the first answered, the second's clock starts
        (&mut wd).await;
        assert_eq!(start.elapsed(), Duration::from_millis(220));

        let untimed = TapState::new(false);
        untimed.on_client_message(b'Q', &mut close_only);
        assert!(
            timeout(Duration::from_secs(5), watchdog(&untimed, limit))
                .await
                .is_err(),
            "an untimed tap has no watchdog"
        );
    }
}
