//! Tracking of the per-connection session state a borrower can leave behind.
//!
//! Redis keeps `MULTI`, `WATCH`, `SELECT` and subscription state per connection. The pooled
//! connection sees every command it sends (it implements `ConnectionLike`), so it can tell,
//! without a round trip, what must be undone before the next borrower gets it.

/// Session state left by the borrowers of one connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Session {
    /// A `MULTI` was sent and no `EXEC`/`DISCARD` answer has come back.
    pub(crate) multi: bool,
    /// A `WATCH` was sent and no `EXEC`/`DISCARD`/`UNWATCH` answer has come back.
    pub(crate) watching: bool,
    /// A `SELECT` was sent: the database must be selected again.
    pub(crate) selected: bool,
    /// A command changed state that cannot be undone cheaply (subscriptions, `MONITOR`,
    /// `CLIENT REPLY`, `HELLO`, `AUTH`, `RESET`...): the connection is evicted on return.
    pub(crate) tainted: Option<&'static str>,
    /// A command failed with a fatal error (I/O, timeout, protocol): evict on return even if
    /// the borrower did not report it.
    pub(crate) failed: bool,
    /// Requests (commands or pipelines) handed to the connection whose reply has not been
    /// received: the caller dropped the future first (a timeout, a `select!`, an aborted
    /// task). The server may still be blocked in it (`BLPOP k 0`, `XREAD BLOCK`, `WAIT`) or
    /// still sending its reply; a command sent now would queue behind it. Such a connection
    /// is evicted on return.
    pub(crate) unanswered: u32,
}

/// Commands that leave state the manager does not undo; the connection is evicted instead.
const TAINTING: &[&str] = &[
    "SUBSCRIBE",
    "PSUBSCRIBE",
    "SSUBSCRIBE",
    "MONITOR",
    "HELLO",
    "AUTH",
    "RESET",
    "READONLY",
    "READWRITE",
];

fn upper(name: &[u8]) -> String {
    String::from_utf8_lossy(name).to_ascii_uppercase()
}

impl Session {
    /// Before a command is sent: state that may begin with it is assumed to have begun
    /// (if the caller is cancelled mid-flight, the server may still run it).
    pub(crate) fn before(&mut self, name: &[u8], sub: Option<&[u8]>) {
        let name = upper(name);
        match name.as_str() {
            "MULTI" => self.multi = true,
            "WATCH" => self.watching = true,
            "SELECT" => self.selected = true,
            "CLIENT" => {
                let sub = sub.map(upper).unwrap_or_default();
                if matches!(
                    sub.as_str(),
                    "REPLY" | "TRACKING" | "SETNAME" | "NO-EVICT" | "NO-TOUCH"
                ) {
                    self.tainted = Some("CLIENT subcommand");
                }
            }
            n => {
                if let Some(t) = TAINTING.iter().find(|t| **t == n) {
                    self.tainted = Some(t);
                }
            }
        }
    }

    /// After the server answered a command (with a value or an error): state that ends with
    /// it has ended.
    pub(crate) fn answered(&mut self, name: &[u8]) {
        match upper(name).as_str() {
            "EXEC" | "DISCARD" => {
                self.multi = false;
                self.watching = false;
            }
            "UNWATCH" if !self.multi => self.watching = false,
            _ => {}
        }
    }

    /// Whether a reply is still owed (see [`Session::unanswered`]).
    pub(crate) fn reply_owed(&self) -> bool {
        self.unanswered > 0
    }

    /// Whether returning the connection needs a round trip.
    pub(crate) fn is_dirty(&self) -> bool {
        self.multi || self.watching || self.selected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_is_open_until_exec_is_answered() {
        let mut s = Session::default();
        s.before(b"watch", None);
        s.before(b"multi", None);
        assert!(s.multi && s.watching);
        s.before(b"EXEC", None);
        assert!(s.multi, "EXEC sent but not answered: still open");
        s.answered(b"EXEC");
        assert!(!s.is_dirty());
    }

    #[test]
    fn unwatch_inside_multi_is_only_queued() {
        let mut s = Session::default();
        s.before(b"WATCH", None);
        s.before(b"MULTI", None);
        s.answered(b"UNWATCH");
        assert!(s.watching);
    }

    #[test]
    fn subscriptions_and_client_reply_taint() {
        let mut s = Session::default();
        s.before(b"client", Some(b"reply"));
        assert!(s.tainted.is_some());
        let mut s = Session::default();
        s.before(b"client", Some(b"getname"));
        s.before(b"get", None);
        assert_eq!(s.tainted, None);
        s.before(b"psubscribe", None);
        assert_eq!(s.tainted, Some("PSUBSCRIBE"));
    }
}
