//! Session state a borrower can leave behind (settings, role, `LISTEN`, advisory locks,
//! prepared statements, temporary tables, holdable cursors), learnt from the statements the
//! socket tap sees, and the reset that undoes exactly that on return.
//!
//! # Implementation details
//!
//! A [`Sniffer`] frames each direction of the protocol independently of the tap's own framer
//! and hands over the bodies of the few messages it needs: `Query` and `Parse` from the client
//! (the SQL text), `ParameterStatus` and `ReadyForQuery` from the server. [`classify`] lexes the
//! SQL (comments, quoted strings and identifiers, dollar quotes) into statements and looks at
//! each statement's first keywords; function calls that change session state (`set_config`,
//! the session-level advisory lock functions) are searched for anywhere in the raw text. The
//! classification is conservative: a false positive costs one reset round trip, a false
//! negative would leak state, so anything not understood (a `DO` block, an oversized message)
//! marks every kind.
//!
//! A `ParameterStatus` after the startup means a reported setting changed (`application_name`,
//! `TimeZone`, `DateStyle`, `session_authorization`, `is_superuser`, ...), whatever statement or
//! function changed it, so it marks the session as well.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

/// A kind of session state a borrower can change, each with its own reset statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SessionChange {
    /// A setting changed for the session: `SET` (without `LOCAL`), `set_config(.., false)`,
    /// `SET SESSION CHARACTERISTICS`. Reset with `RESET ALL`.
    Setting,
    /// `SET ROLE` or `SET SESSION AUTHORIZATION`: a privilege change. Reset with
    /// `SET SESSION AUTHORIZATION DEFAULT; RESET ROLE`.
    Role,
    /// `LISTEN`. Reset with `UNLISTEN *`.
    Listen,
    /// A session-level advisory lock (`pg_advisory_lock`, `pg_try_advisory_lock`, their
    /// `_shared` forms). Reset with `SELECT pg_advisory_unlock_all()`.
    AdvisoryLock,
    /// A statement prepared with SQL `PREPARE`. Reset with `DEALLOCATE ALL`, which also
    /// drops the connection's cached statements, so the statement caches are emptied too.
    PreparedStatement,
    /// A temporary table, view or sequence. Reset with `DISCARD TEMP`.
    TempTable,
    /// A cursor declared `WITH HOLD`. Reset with `CLOSE ALL`.
    HoldCursor,
}

impl SessionChange {
    /// Every kind, in the order of their bits (and of the reset statements).
    pub const ALL: [SessionChange; 7] = [
        SessionChange::Role,
        SessionChange::Setting,
        SessionChange::Listen,
        SessionChange::AdvisoryLock,
        SessionChange::PreparedStatement,
        SessionChange::TempTable,
        SessionChange::HoldCursor,
    ];

    pub(crate) const fn bit(self) -> u8 {
        match self {
            SessionChange::Role => 1,
            SessionChange::Setting => 2,
            SessionChange::Listen => 4,
            SessionChange::AdvisoryLock => 8,
            SessionChange::PreparedStatement => 16,
            SessionChange::TempTable => 32,
            SessionChange::HoldCursor => 64,
        }
    }

    /// The statement that undoes this kind of state.
    pub fn reset_statement(self) -> &'static str {
        match self {
            // First: the settings of a superuser may be reset only by that user.
            SessionChange::Role => "SET SESSION AUTHORIZATION DEFAULT; RESET ROLE",
            SessionChange::Setting => "RESET ALL",
            SessionChange::Listen => "UNLISTEN *",
            SessionChange::AdvisoryLock => "SELECT pg_advisory_unlock_all()",
            SessionChange::PreparedStatement => "DEALLOCATE ALL",
            SessionChange::TempTable => "DISCARD TEMP",
            SessionChange::HoldCursor => "CLOSE ALL",
        }
    }

    /// A short name (`setting`, `role`, `listen`, `advisory_lock`, `prepare`, `temp_table`,
    /// `hold_cursor`).
    pub fn name(self) -> &'static str {
        match self {
            SessionChange::Setting => "setting",
            SessionChange::Role => "role",
            SessionChange::Listen => "listen",
            SessionChange::AdvisoryLock => "advisory_lock",
            SessionChange::PreparedStatement => "prepare",
            SessionChange::TempTable => "temp_table",
            SessionChange::HoldCursor => "hold_cursor",
        }
    }

    fn index(self) -> usize {
        self.bit().trailing_zeros() as usize
    }
}

/// Every kind's bit.
pub(crate) const ALL_BITS: u8 = 127;

/// The kinds in `bits`.
pub(crate) fn kinds(bits: u8) -> impl Iterator<Item = SessionChange> {
    SessionChange::ALL
        .into_iter()
        .filter(move |k| bits & k.bit() != 0)
}

/// The one simple query that resets the kinds in `bits` (`None` when there are none).
pub(crate) fn reset_sql(bits: u8) -> Option<String> {
    let parts: Vec<&str> = kinds(bits).map(SessionChange::reset_statement).collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// What the tap has learnt about the session's state since the last reset.
#[derive(Debug, Default)]
pub(crate) struct SessionState {
    dirty: AtomicU8,
    /// The startup's `ReadyForQuery` has been seen: later `ParameterStatus` messages are
    /// changes, not the initial report.
    started: AtomicBool,
    /// `Parse` messages naming their statement (not the unnamed one), since last taken.
    named_parses: AtomicU64,
}

impl SessionState {
    /// The kinds of state changed since the last [`clear`](Self::clear).
    pub(crate) fn dirty(&self) -> u8 {
        self.dirty.load(Ordering::Acquire)
    }

    /// Named `Parse` messages sent since the last call.
    pub(crate) fn take_named_parses(&self) -> u64 {
        self.named_parses.swap(0, Ordering::Relaxed)
    }

    pub(crate) fn clear(&self) {
        self.dirty.store(0, Ordering::Release);
    }

    fn mark(&self, bits: u8) {
        if bits != 0 {
            self.dirty.fetch_or(bits, Ordering::AcqRel);
        }
    }

    /// A complete client message body (or its first [`CAPTURE_LIMIT`] bytes, `cut`).
    pub(crate) fn on_client(&self, kind: u8, body: &[u8], cut: bool) {
        if cut {
            self.mark(ALL_BITS);
            return;
        }
        let sql = match kind {
            b'Q' => body,
            // Parse: statement name, NUL, query, NUL, parameter types.
            b'P' => match body.iter().position(|&b| b == 0) {
                Some(i) => {
                    if i > 0 {
                        self.named_parses.fetch_add(1, Ordering::Relaxed);
                    }
                    &body[i + 1..]
                }
                None => return,
            },
            _ => return,
        };
        let end = sql.iter().position(|&b| b == 0).unwrap_or(sql.len());
        self.mark(classify(&sql[..end]));
    }

    /// A complete server message body.
    pub(crate) fn on_server(&self, kind: u8, body: &[u8]) {
        match kind {
            b'Z' => self.started.store(true, Ordering::Release),
            b'S' if self.started.load(Ordering::Acquire) => {
                let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
                match &body[..end] {
                    // Server state, not session state.
                    b"in_hot_standby" | b"default_transaction_read_only" => {}
                    b"session_authorization" | b"is_superuser" => {
                        self.mark(SessionChange::Role.bit())
                    }
                    _ => self.mark(SessionChange::Setting.bit()),
                }
            }
            _ => {}
        }
    }
}

/// Per-manager counts of the session state borrowers left behind (see
/// [`PostgresManager::session_stats`](crate::PostgresManager::session_stats)).
#[derive(Debug, Default)]
pub(crate) struct SessionCounters {
    by_kind: [AtomicU64; 7],
    resets: AtomicU64,
    named_statements: AtomicU64,
}

impl SessionCounters {
    /// A return with the kinds in `bits` changed, reset (`reset`) or only counted.
    pub(crate) fn record(&self, bits: u8, reset: bool) {
        for k in kinds(bits) {
            self.by_kind[k.index()].fetch_add(1, Ordering::Relaxed);
        }
        if reset {
            self.resets.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn named_statements(&self, n: u64) {
        if n > 0 {
            self.named_statements.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub(crate) fn snapshot(&self) -> SessionStats {
        SessionStats {
            by_kind: std::array::from_fn(|i| self.by_kind[i].load(Ordering::Relaxed)),
            resets: self.resets.load(Ordering::Relaxed),
            named_statements: self.named_statements.load(Ordering::Relaxed),
        }
    }
}

/// How often borrowers left session state behind, by kind, and how many state resets the
/// manager ran for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SessionStats {
    by_kind: [u64; 7],
    /// Returns that needed a session-state reset (one round trip each).
    pub resets: u64,
    /// Named prepared statements sent under
    /// [`StatementMode::Unnamed`](crate::StatementMode::Unnamed) (counted in that mode only).
    pub named_statements: u64,
}

impl SessionStats {
    /// Connections returned with this kind of state changed.
    pub fn count(&self, kind: SessionChange) -> u64 {
        self.by_kind[kind.index()]
    }

    /// `(kind, count)` for every kind.
    pub fn iter(&self) -> impl Iterator<Item = (SessionChange, u64)> + '_ {
        SessionChange::ALL.into_iter().map(|k| (k, self.count(k)))
    }
}

/// Bodies longer than this are not kept: the message marks every kind (conservative).
pub(crate) const CAPTURE_LIMIT: usize = 256 * 1024;

/// Frames one direction of the protocol and hands over the bodies of chosen message types.
#[derive(Debug)]
pub(crate) struct Sniffer {
    typed: bool,
    wanted: &'static [u8],
    header: [u8; 5],
    have: usize,
    body_left: usize,
    kind: Option<u8>,
    body: Vec<u8>,
    cut: bool,
}

impl Sniffer {
    /// `typed`: messages carry a type byte (false for the client side, whose first message,
    /// the startup packet, has none). `wanted`: the types whose bodies are handed over.
    pub(crate) fn new(typed: bool, wanted: &'static [u8]) -> Self {
        Sniffer {
            typed,
            wanted,
            header: [0; 5],
            have: 0,
            body_left: 0,
            kind: None,
            body: Vec::new(),
            cut: false,
        }
    }

    /// Feeds bytes; calls `on_body(type, body, cut)` for every complete wanted message.
    pub(crate) fn feed(&mut self, mut bytes: &[u8], on_body: &mut impl FnMut(u8, &[u8], bool)) {
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let n = self.body_left.min(bytes.len());
                if self.kind.is_some() && !self.cut {
                    let room = CAPTURE_LIMIT - self.body.len();
                    if n > room {
                        self.cut = true;
                    } else {
                        self.body.extend_from_slice(&bytes[..n]);
                    }
                }
                self.body_left -= n;
                bytes = &bytes[n..];
                if self.body_left == 0 {
                    self.finish(on_body);
                }
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
                let h = &self.header;
                (Some(h[0]), u32::from_be_bytes([h[1], h[2], h[3], h[4]]))
            } else {
                self.typed = true;
                let h = &self.header;
                (None, u32::from_be_bytes([h[0], h[1], h[2], h[3]]))
            };
            self.body_left = (len as usize).saturating_sub(4);
            self.kind = kind.filter(|k| self.wanted.contains(k));
            if self.body_left == 0 {
                self.finish(on_body);
            }
        }
    }

    fn finish(&mut self, on_body: &mut impl FnMut(u8, &[u8], bool)) {
        if let Some(kind) = self.kind.take() {
            on_body(kind, &self.body, self.cut);
        }
        self.cut = false;
        self.body.clear();
        if self.body.capacity() > 64 * 1024 {
            self.body.shrink_to(4096);
        }
    }
}

/// The kinds of session state the SQL text (one or more statements) may change.
pub(crate) fn classify(sql: &[u8]) -> u8 {
    let mut bits = 0;
    // `set_config('role', ..)` is a `SET ROLE`, which `RESET ALL` leaves alone: reset both.
    if contains_ci(sql, b"set_config") {
        bits |= SessionChange::Setting.bit() | SessionChange::Role.bit();
    }
    // pg_advisory_lock, pg_try_advisory_lock and their _shared forms (not the _xact_ ones).
    if contains_ci(sql, b"advisory_lock") {
        bits |= SessionChange::AdvisoryLock.bit();
    }
    if contains_ci(sql, b"pg_temp") {
        bits |= SessionChange::TempTable.bit();
    }
    let mut stmt = Statement::default();
    let mut i = 0;
    let n = sql.len();
    while i < n {
        let c = sql[i];
        match c {
            b';' => {
                bits |= stmt.bits();
                stmt = Statement::default();
                i += 1;
            }
            b'-' if sql.get(i + 1) == Some(&b'-') => {
                while i < n && sql[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if sql.get(i + 1) == Some(&b'*') => {
                let mut depth = 0usize;
                while i < n {
                    if sql[i] == b'/' && sql.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if sql[i] == b'*' && sql.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'\'' => {
                // E'..' strings take backslash escapes.
                let escapes = i > 0
                    && matches!(sql[i - 1], b'e' | b'E')
                    && (i < 2 || !(sql[i - 2].is_ascii_alphanumeric() || sql[i - 2] == b'_'));
                i += 1;
                while i < n {
                    match sql[i] {
                        b'\\' if escapes => i += 2,
                        b'\'' if sql.get(i + 1) == Some(&b'\'') => i += 2,
                        b'\'' => {
                            i += 1;
                            break;
                        }
                        _ => i += 1,
                    }
                }
                stmt.other();
            }
            b'"' => {
                i += 1;
                while i < n {
                    if sql[i] == b'"' {
                        if sql.get(i + 1) == Some(&b'"') {
                            i += 2;
                            continue;
                        }
                        i += 1;
                        break;
                    }
                    i += 1;
                }
                stmt.other();
            }
            b'$' => {
                // `$tag$ ... $tag$` (tag possibly empty), or a parameter `$1`.
                let mut j = i + 1;
                while j < n && (sql[j].is_ascii_alphanumeric() || sql[j] == b'_') {
                    j += 1;
                }
                let tag_ok =
                    j < n && sql[j] == b'$' && !sql.get(i + 1).is_some_and(|b| b.is_ascii_digit());
                if tag_ok {
                    let tag = &sql[i..=j];
                    i = j + 1;
                    match find(&sql[i..], tag) {
                        Some(k) => i += k + tag.len(),
                        None => i = n,
                    }
                } else {
                    i = j;
                }
                stmt.other();
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 => {
                let start = i;
                while i < n
                    && (sql[i].is_ascii_alphanumeric()
                        || sql[i] == b'_'
                        || sql[i] == b'$'
                        || sql[i] >= 0x80)
                {
                    i += 1;
                }
                stmt.word(&sql[start..i]);
            }
            c if c.is_ascii_whitespace() => i += 1,
            _ => {
                stmt.other();
                i += 1;
            }
        }
    }
    bits | stmt.bits()
}

/// The first keywords of one statement and the words of interest seen in it.
#[derive(Default)]
struct Statement {
    /// The first words, upper-cased (at most 24 bytes each).
    words: [[u8; 24]; 3],
    count: usize,
    /// Tokens seen (words and others); keywords count only while they lead.
    tokens: usize,
    temp: bool,
    hold: bool,
}

impl Statement {
    fn word(&mut self, w: &[u8]) {
        if self.tokens == self.count && self.count < self.words.len() {
            let slot = &mut self.words[self.count];
            for (d, s) in slot.iter_mut().zip(w.iter()) {
                *d = s.to_ascii_uppercase();
            }
            self.count += 1;
        }
        self.tokens += 1;
        if w.eq_ignore_ascii_case(b"temp") || w.eq_ignore_ascii_case(b"temporary") {
            self.temp = true;
        }
        if w.eq_ignore_ascii_case(b"hold") {
            self.hold = true;
        }
    }

    fn other(&mut self) {
        self.tokens += 1;
    }

    fn is(&self, i: usize, kw: &[u8]) -> bool {
        i < self.count && {
            let w = &self.words[i];
            let len = w.iter().position(|&b| b == 0).unwrap_or(w.len());
            &w[..len] == kw
        }
    }

    fn bits(&self) -> u8 {
        if self.count == 0 {
            return 0;
        }
        let mut bits = 0;
        if self.is(0, b"SET") {
            bits |= if self.is(1, b"LOCAL")
                || self.is(1, b"TRANSACTION")
                || self.is(1, b"CONSTRAINTS")
            {
                0
            } else if self.is(1, b"ROLE")
                || self.is(1, b"SESSION_AUTHORIZATION")
                || (self.is(1, b"SESSION") && (self.is(2, b"AUTHORIZATION") || self.is(2, b"ROLE")))
            {
                SessionChange::Role.bit()
            } else {
                SessionChange::Setting.bit()
            };
        } else if self.is(0, b"LISTEN") {
            bits |= SessionChange::Listen.bit();
        } else if self.is(0, b"PREPARE") && !self.is(1, b"TRANSACTION") {
            bits |= SessionChange::PreparedStatement.bit();
        } else if self.is(0, b"DECLARE") && self.hold {
            bits |= SessionChange::HoldCursor.bit();
        } else if self.is(0, b"DO") {
            bits |= ALL_BITS;
        }
        if self.temp && (self.is(0, b"CREATE") || self.is(0, b"SELECT") || self.is(0, b"WITH")) {
            bits |= SessionChange::TempTable.bit();
        }
        bits
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds_of(sql: &str) -> Vec<SessionChange> {
        kinds(classify(sql.as_bytes())).collect()
    }

    use SessionChange::*;

    #[test]
    fn session_statements_are_classified() {
        assert_eq!(kinds_of("SET search_path = a"), [Setting]);
        assert_eq!(
            kinds_of("  /* x */ -- y\n set statement_timeout to 5"),
            [Setting]
        );
        assert_eq!(kinds_of("SET SESSION work_mem = '1MB'"), [Setting]);
        assert_eq!(kinds_of("set role r"), [Role]);
        assert_eq!(kinds_of("SET SESSION ROLE r"), [Role]);
        assert_eq!(kinds_of("SET SESSION AUTHORIZATION u"), [Role]);
        assert_eq!(
            kinds_of("SELECT set_config('a.b', '1', false)"),
            [Role, Setting]
        );
        assert_eq!(kinds_of("SET role = r"), [Role]);
        assert_eq!(kinds_of("SET session_authorization = u"), [Role]);
        assert_eq!(kinds_of("select pg_advisory_lock(1)"), [AdvisoryLock]);
        assert_eq!(
            kinds_of("SELECT pg_try_advisory_lock_shared(1, 2)"),
            [AdvisoryLock]
        );
        assert_eq!(kinds_of("LISTEN ch"), [Listen]);
        assert_eq!(kinds_of("PREPARE p(int) AS SELECT $1"), [PreparedStatement]);
        assert_eq!(kinds_of("CREATE TEMP TABLE t (v int)"), [TempTable]);
        assert_eq!(
            kinds_of("create global temporary table t (v int)"),
            [TempTable]
        );
        assert_eq!(kinds_of("CREATE TABLE pg_temp.t (v int)"), [TempTable]);
        assert_eq!(kinds_of("SELECT 1 INTO TEMP t"), [TempTable]);
        assert_eq!(
            kinds_of("DECLARE c CURSOR WITH HOLD FOR SELECT 1"),
            [HoldCursor]
        );
        assert_eq!(kinds_of("DO $$ BEGIN END $$").len(), 7);
        // Only an E'' string takes backslash escapes: here the string ends at the backslash.
        assert_eq!(kinds_of("SELECT date '2020-01-01\\'; SET ROLE x'"), [Role]);
    }

    #[test]
    fn multi_statement_queries_are_scanned_statement_by_statement() {
        assert_eq!(
            kinds_of("SELECT 1; SET search_path = x; LISTEN c;"),
            [Setting, Listen]
        );
        assert_eq!(
            kinds_of("BEGIN; SET LOCAL statement_timeout = 1; COMMIT"),
            []
        );
    }

    #[test]
    fn clean_statements_and_quoted_text_are_not_session_state() {
        for sql in [
            "",
            "SELECT 1",
            "SET LOCAL search_path = a",
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            "SET CONSTRAINTS ALL DEFERRED",
            "PREPARE TRANSACTION 'x'",
            "SELECT pg_advisory_xact_lock(1)",
            "SELECT 'SET ROLE x; LISTEN y'",
            "SELECT \"listen\" FROM t",
            "SELECT $q$ ; SET ROLE x $q$",
            "SELECT E'\\'; SET ROLE x'",
            "-- SET ROLE x\nSELECT 1",
            "/* /* SET ROLE x */ */ SELECT 1",
            "INSERT INTO t (temp) VALUES ($1)",
            "DECLARE c CURSOR FOR SELECT 1",
            "UPDATE t SET v = 1",
        ] {
            assert_eq!(kinds_of(sql), [], "{sql:?}");
        }
    }

    #[test]
    fn reset_sql_names_each_kind_once_role_first() {
        assert_eq!(reset_sql(0), None);
        assert_eq!(
            reset_sql(Setting.bit() | Role.bit()).unwrap(),
            "SET SESSION AUTHORIZATION DEFAULT; RESET ROLE; RESET ALL"
        );
    }

    #[test]
    fn sniffer_hands_over_bodies_across_splits() {
        let mut stream = Vec::new();
        let startup = [0u8, 3, 0, 0, b'u', 0, b'x', 0, 0];
        stream.extend_from_slice(&((startup.len() + 4) as u32).to_be_bytes());
        stream.extend_from_slice(&startup);
        for (k, body) in [
            (b'Q', &b"SET ROLE r\0"[..]),
            (b'S', b""),
            (b'P', b"s0\0LISTEN c\0\0\0"),
            (b'B', b"xx"),
        ] {
            stream.push(k);
            stream.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
            stream.extend_from_slice(body);
        }
        for chunk in [1, 2, 3, 7, 100] {
            let s = SessionState::default();
            let mut sn = Sniffer::new(false, b"QP");
            let mut seen = Vec::new();
            for part in stream.chunks(chunk) {
                sn.feed(part, &mut |k, b, cut| {
                    seen.push(k);
                    s.on_client(k, b, cut)
                });
            }
            assert_eq!(seen, b"QP", "chunk {chunk}");
            assert_eq!(s.dirty(), Role.bit() | Listen.bit(), "chunk {chunk}");
        }
    }

    #[test]
    fn parameter_status_marks_only_after_startup() {
        let s = SessionState::default();
        s.on_server(b'S', b"TimeZone\0UTC\0");
        assert_eq!(s.dirty(), 0, "initial report");
        s.on_server(b'Z', b"I");
        s.on_server(b'S', b"in_hot_standby\0off\0");
        assert_eq!(s.dirty(), 0, "server state");
        s.on_server(b'S', b"is_superuser\0off\0");
        assert_eq!(s.dirty(), Role.bit());
        s.on_server(b'S', b"application_name\0x\0");
        assert_eq!(s.dirty(), Role.bit() | Setting.bit());
        s.clear();
        assert_eq!(s.dirty(), 0);
    }

    #[test]
    fn oversized_messages_mark_everything() {
        let s = SessionState::default();
        s.on_client(b'Q', b"SELECT", true);
        assert_eq!(s.dirty(), ALL_BITS);
    }
}
