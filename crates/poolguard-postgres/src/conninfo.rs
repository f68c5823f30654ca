//! Connection strings as text: redaction of credentials and diagnosis of parse errors.
//!
//! Both follow the grammar tokio-postgres parses (the `key=value` form, with `'quoted'`
//! values and backslash escapes, and the `postgres://` / `postgresql://` URL form), but
//! lean to the safe side wherever the text is ambiguous: anything that could be part of a
//! password is hidden.

use std::fmt::Write as _;
use std::str::FromStr;

/// What replaces a secret.
const MASK: &str = "***";

/// Returns `connection_string` with every credential replaced by `***`, for logs, errors and
/// status output.
///
/// Handles both forms tokio-postgres accepts:
///
/// - URL: the password of the user info (`postgres://user:***@host/db`) and `password` in the
///   query string (`?password=***`);
/// - `key=value`: `password=***`, quoted (`password='***'` becomes `password=***`) or not.
///
/// Keys are matched case-insensitively and any key containing `password` is hidden. When the
/// string is malformed, the text after a password key that cannot be told apart from the
/// password (an unquoted value with a space, an unterminated quote) is hidden too. A string
/// without credentials comes back unchanged.
///
/// ```
/// use poolguard_postgres::redact_connection_string;
///
/// assert_eq!(
///     redact_connection_string("postgres://app:s3cret@db.internal/app?sslmode=require"),
///     "postgres://app:***@db.internal/app?sslmode=require"
/// );
/// assert_eq!(
///     redact_connection_string("host=db user=app password='s3 cret' dbname=app"),
///     "host=db user=app password=*** dbname=app"
/// );
/// ```
pub fn redact_connection_string(connection_string: &str) -> String {
    let s = connection_string;
    let redacted = match url_body(s) {
        Some(body) => redact_url(s, body),
        None => redact_kv(s),
    };
    // Catch-all for text the grammar does not reach (nested in another value, after a
    // stray character): any `password = value` left is masked.
    let redacted = mask_assignments(&redacted);
    // Backstop: whatever tokio-postgres would take as the password must not survive, in
    // whatever form it was written.
    match tokio_postgres::Config::from_str(s) {
        Ok(c) => match c.get_password().map(String::from_utf8_lossy) {
            Some(pw) if !pw.is_empty() && redacted.contains(&*pw) => redacted.replace(&*pw, MASK),
            _ => redacted,
        },
        Err(_) => redacted,
    }
}

/// Masks the value of every `...password = value` in `s`, wherever it is: quoted (up to the
/// closing quote) or not (up to whitespace or `&`).
fn mask_assignments(s: &str) -> String {
    let lower = s.to_ascii_lowercase();
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut at = 0;
    let mut search = 0;
    while let Some(found) = lower[search..].find("password") {
        let mut i = search + found + "password".len();
        search = i;
        let skip_ws = |mut i: usize| {
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            i
        };
        i = skip_ws(i);
        if i >= b.len() || b[i] != b'=' {
            continue;
        }
        i = skip_ws(i + 1);
        let start = i;
        if s[start..].starts_with(MASK) {
            search = start + MASK.len();
            continue;
        }
        if i < b.len() && b[i] == b'\'' {
            i += 1;
            while i < b.len() && b[i] != b'\'' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i = (i + 1).min(b.len());
        } else {
            while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'&' {
                i += 1;
            }
        }
        // Only ASCII bytes were stepped on as delimiters, but a backslash may have skipped
        // into a multi-byte character: move to the next character boundary.
        while i < b.len() && !s.is_char_boundary(i) {
            i += 1;
        }
        if i > start {
            out.push_str(&s[at..start]);
            out.push_str(MASK);
            at = i;
        }
        search = i.max(search);
    }
    out.push_str(&s[at..]);
    out
}

fn is_secret_key(key: &str) -> bool {
    key.to_ascii_lowercase().contains("password")
}

/// The text after `postgres://` or `postgresql://`, if `s` is a URL.
fn url_body(s: &str) -> Option<usize> {
    ["postgres://", "postgresql://"]
        .iter()
        .find(|p| s.starts_with(*p))
        .map(|p| p.len())
}

/// Where the user info of a URL ends (the `@`), erring on the side of a longer password: the
/// last `@` before the query string, which starts at the first `?` after the first `@`.
fn userinfo_end(body: &str) -> Option<usize> {
    let first = body.find('@')?;
    let query = body[first..].find('?').map_or(body.len(), |q| first + q);
    body[..query].rfind('@')
}

fn redact_url(s: &str, body_start: usize) -> String {
    let body = &s[body_start..];
    let mut out = String::with_capacity(s.len());
    out.push_str(&s[..body_start]);
    let rest = match userinfo_end(body) {
        Some(at) => {
            let creds = &body[..at];
            match creds.find(':') {
                Some(colon) => {
                    out.push_str(&creds[..=colon]);
                    out.push_str(MASK);
                }
                None => out.push_str(creds),
            }
            &body[at..]
        }
        None => body,
    };
    match rest.find('?') {
        Some(q) => {
            out.push_str(&rest[..=q]);
            for (i, param) in rest[q + 1..].split('&').enumerate() {
                if i > 0 {
                    out.push('&');
                }
                match param.split_once('=') {
                    Some((key, _)) if is_secret_key(&percent_decode(key)) => {
                        out.push_str(key);
                        out.push('=');
                        out.push_str(MASK);
                    }
                    _ => out.push_str(param),
                }
            }
        }
        None => out.push_str(rest),
    }
    out
}

fn percent_decode(s: &str) -> String {
    String::from_utf8_lossy(&percent_decode_bytes(s)).into_owned()
}

/// One `key = value` of the `key=value` form.
#[derive(Debug)]
struct Pair<'a> {
    key: &'a str,
    /// Byte range of the value as written (quotes included).
    raw: (usize, usize),
    /// The value with quotes and escapes removed.
    value: String,
}

/// Why the `key=value` form did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KvProblem {
    /// A keyword with no `=` after it.
    MissingEquals,
    /// `key=` with nothing after it.
    MissingValue,
    /// A `'` that is never closed.
    Unterminated,
}

#[derive(Debug)]
struct KvError<'a> {
    key: &'a str,
    problem: KvProblem,
    /// The key belongs to the text of a password (it is one, or follows one directly).
    secret: bool,
}

/// Splits the `key=value` form as tokio-postgres does. Parsing resumes after an error (at
/// the next whitespace) so that the pairs after it can still be redacted; `hidden` gets the
/// byte ranges that must be masked although they are not a password value.
fn split_kv<'a>(s: &'a str) -> (Vec<Pair<'a>>, Option<KvError<'a>>, Vec<(usize, usize)>) {
    let b = s.as_bytes();
    let ws = |i: usize| s[i..].chars().next().is_some_and(char::is_whitespace);
    let skip_ws = |mut i: usize| {
        while i < b.len() && ws(i) {
            i += s[i..].chars().next().map_or(1, char::len_utf8);
        }
        i
    };
    let next_char = |i: usize| s[i..].chars().next().map_or(1, char::len_utf8);
    let mut pairs: Vec<Pair<'a>> = Vec::new();
    let mut error: Option<KvError<'a>> = None;
    let mut hidden = Vec::new();
    let mut i = 0;
    loop {
        i = skip_ws(i);
        let key_start = i;
        while i < b.len() && !ws(i) && b[i] != b'=' {
            i += next_char(i);
        }
        if i == key_start {
            if i < b.len() {
                // A stray `=`: tokio-postgres stops reading here and ignores the rest, which
                // is still scanned so that a password in it is hidden.
                i += 1;
                continue;
            }
            break;
        }
        let key = &s[key_start..i];
        // A word right after a password value may be the rest of an unquoted password.
        let after_secret = pairs.last().is_some_and(|p| is_secret_key(p.key));
        let fail = |problem: KvProblem, error: &mut Option<KvError<'a>>| {
            if error.is_none() {
                *error = Some(KvError {
                    key,
                    problem,
                    secret: is_secret_key(key) || after_secret,
                });
            }
        };
        i = skip_ws(i);
        if i >= b.len() || b[i] != b'=' {
            fail(KvProblem::MissingEquals, &mut error);
            // A secret key without `=`, or a word right after an unquoted password (a
            // password with a space): what follows may be the password.
            if is_secret_key(key) {
                hidden.push((key_start + key.len(), s.len()));
                break;
            }
            if after_secret {
                hidden.push((key_start, s.len()));
                break;
            }
            continue;
        }
        i = skip_ws(i + 1);
        let value_start = i;
        let mut value = String::new();
        if i < b.len() && b[i] == b'\'' {
            i += 1;
            let mut closed = false;
            while i < b.len() {
                let c = s[i..].chars().next().unwrap_or('\0');
                i += c.len_utf8();
                match c {
                    '\'' => {
                        closed = true;
                        break;
                    }
                    '\\' if i < b.len() => {
                        let c2 = s[i..].chars().next().unwrap_or('\0');
                        i += c2.len_utf8();
                        value.push(c2);
                    }
                    _ => value.push(c),
                }
            }
            if !closed {
                fail(KvProblem::Unterminated, &mut error);
                hidden.push((value_start, s.len()));
                break;
            }
        } else {
            while i < b.len() && !ws(i) {
                let c = s[i..].chars().next().unwrap_or('\0');
                i += c.len_utf8();
                if c == '\\' {
                    if i < b.len() {
                        let c2 = s[i..].chars().next().unwrap_or('\0');
                        i += c2.len_utf8();
                        value.push(c2);
                    }
                } else {
                    value.push(c);
                }
            }
            if value.is_empty() {
                fail(KvProblem::MissingValue, &mut error);
                continue;
            }
        }
        pairs.push(Pair {
            key,
            raw: (value_start, i),
            value,
        });
    }
    (pairs, error, hidden)
}

fn redact_kv(s: &str) -> String {
    let (pairs, _, hidden) = split_kv(s);
    let mut ranges: Vec<(usize, usize)> = pairs
        .iter()
        .filter(|p| is_secret_key(p.key))
        .map(|p| p.raw)
        .chain(hidden)
        .collect();
    ranges.sort_unstable();
    let mut out = String::with_capacity(s.len());
    let mut at = 0;
    for (start, end) in ranges {
        if start < at {
            continue;
        }
        out.push_str(&s[at..start]);
        out.push_str(MASK);
        at = end;
    }
    out.push_str(&s[at..]);
    out
}

/// What the settings of one connection-string key must look like.
fn expected(key: &str) -> Option<&'static str> {
    Some(match key {
        "port" => "a port number (0-65535), or a comma-separated list with one port per host",
        "hostaddr" => "an IP address such as 127.0.0.1, comma-separated for several hosts",
        "host" => "a host name, an IP address or a Unix socket directory",
        "sslmode" => "disable, prefer or require",
        "sslnegotiation" => "postgres or direct",
        "connect_timeout" | "tcp_user_timeout" | "keepalives_idle" | "keepalives_interval" => {
            "a whole number of seconds"
        }
        "keepalives" => "0 (off) or 1 (on)",
        "keepalives_retries" => "a whole number",
        "target_session_attrs" => "any, read-write or read-only",
        "channel_binding" => "disable, prefer or require",
        "load_balance_hosts" => "disable or random",
        "user" | "dbname" => "valid UTF-8 (percent-encoded in a URL)",
        _ => return None,
    })
}

/// The keys tokio-postgres knows.
const KEYS: &str = "host, hostaddr, port, user, password, dbname, options, application_name, \
     sslmode, sslnegotiation, connect_timeout, tcp_user_timeout, keepalives, keepalives_idle, \
     keepalives_interval, keepalives_retries, target_session_attrs, channel_binding, \
     load_balance_hosts";

/// Shows a user-written value in a message, shortened; a value that redaction hides (part of
/// a password) is not shown.
fn show(value: &str, redacted: &str) -> String {
    if !redacted.contains(value) {
        return "(hidden: it may be part of a password)".into();
    }
    let mut v: String = value.chars().take(64).collect();
    if v.len() < value.len() {
        v.push('…');
    }
    format!("`{v}`")
}

/// Checks one setting alone; `Some(reason)` when tokio-postgres refuses it.
fn check_param(key: &str, value: &str, redacted: &str) -> Option<String> {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('\'');
    for c in value.chars() {
        if c == '\'' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('\'');
    let err = tokio_postgres::Config::from_str(&format!("{key}={quoted}")).err()?;
    let cause = std::error::Error::source(&err).map(ToString::to_string);
    let unknown = cause
        .as_deref()
        .is_some_and(|c| c.starts_with("unknown option"));
    Some(if unknown {
        format!("unknown option `{key}` (the supported keys are {KEYS})")
    } else if is_secret_key(key) {
        format!("invalid value for `{key}`")
    } else {
        let mut m = format!("invalid value {} for `{key}`", show(value, redacted));
        if let Some(e) = expected(key) {
            let _ = write!(m, ": expected {e}");
        }
        m
    })
}

/// Why tokio-postgres refused `s`: the offending key (when there is one) and a message that
/// names it, says what is wrong and never contains a password.
pub(crate) fn diagnose(s: &str, error: &tokio_postgres::Error) -> (Option<String>, String) {
    let redacted = redact_connection_string(s);
    let (key, reason) = diagnose_raw(s, error, &redacted);
    match key {
        // A "key" that redaction hides is a piece of a password.
        Some(k)
            if !redacted.contains(&k)
                && !matches!(k.as_str(), "host" | "port" | "user" | "dbname" | "password") =>
        {
            (Some("password".into()), PASSWORD_TEXT.into())
        }
        key => (key, reason),
    }
}

/// The reason given when the text around a password does not parse.
const PASSWORD_TEXT: &str = "the text around a password is not a `key=value` pair: quote a \
     password that contains spaces or quotes (password='...', with \\' and \\\\ inside)";

fn diagnose_raw(
    s: &str,
    error: &tokio_postgres::Error,
    redacted: &str,
) -> (Option<String>, String) {
    if let Some(body) = url_body(s) {
        if let Some(found) = diagnose_url(&s[body..], redacted) {
            return found;
        }
    } else {
        let (pairs, kv_error, _) = split_kv(s);
        if let Some(e) = kv_error {
            if e.secret {
                return (Some("password".into()), PASSWORD_TEXT.into());
            }
            let why = match e.problem {
                KvProblem::MissingEquals => format!(
                    "`{}` is not a `key=value` pair (expected `key=value` pairs separated by \
                     spaces, such as `host=127.0.0.1 user=postgres`, or a postgres:// URL)",
                    e.key
                ),
                KvProblem::MissingValue => {
                    format!(
                        "`{}=` has no value (quote an empty value: {}='')",
                        e.key, e.key
                    )
                }
                KvProblem::Unterminated => {
                    format!("the quoted value of `{}` has no closing `'`", e.key)
                }
            };
            return (Some(e.key.to_owned()), why);
        }
        for p in &pairs {
            if let Some(why) = check_param(p.key, &p.value, redacted) {
                return (Some(p.key.to_owned()), why);
            }
        }
    }
    // Not pinned down: tokio-postgres's own cause, without any quoted text that redaction
    // hides.
    let cause =
        std::error::Error::source(error).map_or_else(|| error.to_string(), |c| c.to_string());
    let mut safe = String::new();
    for (i, part) in cause.split('`').enumerate() {
        if i > 0 {
            safe.push('`');
        }
        let quoted = i % 2 == 1;
        safe.push_str(if quoted && !redacted.contains(part) {
            "(hidden)"
        } else {
            part
        });
    }
    (None, safe)
}

fn diagnose_url(body: &str, redacted: &str) -> Option<(Option<String>, String)> {
    let utf8 = |key: &str, raw: &str| -> Option<(Option<String>, String)> {
        let ok = std::str::from_utf8(&percent_decode_bytes(raw)).is_ok();
        (!ok).then(|| {
            (
                Some(key.to_owned()),
                format!("the `{key}` part of the URL is not valid UTF-8 after percent-decoding"),
            )
        })
    };
    let mut rest = body;
    if let Some(at) = body.find('@') {
        let creds = &body[..at];
        let user = creds.split(':').next().unwrap_or("");
        if let Some(found) = utf8("user", user) {
            return Some(found);
        }
        rest = &body[at + 1..];
    }
    let host_end = rest.find(['/', '?']).unwrap_or(rest.len());
    for chunk in rest[..host_end].split(',').filter(|c| !c.is_empty()) {
        let port = if let Some(v6) = chunk.strip_prefix('[') {
            match v6.find(']') {
                None => {
                    return Some((
                        Some("host".into()),
                        format!(
                            "the IPv6 address in {} has no closing `]`",
                            show(chunk, redacted)
                        ),
                    ))
                }
                Some(end) => {
                    let tail = &v6[end + 1..];
                    match tail.strip_prefix(':') {
                        Some(p) => Some(p),
                        None if tail.is_empty() => None,
                        None => {
                            return Some((
                                Some("host".into()),
                                format!(
                                    "unexpected text after the IPv6 address in {}",
                                    show(chunk, redacted)
                                ),
                            ))
                        }
                    }
                }
            }
        } else {
            chunk.split_once(':').map(|(_, p)| p)
        };
        if let Some(p) = port {
            if let Some(why) = check_param("port", &percent_decode(p), redacted) {
                return Some((Some("port".into()), why));
            }
        }
    }
    let rest = &rest[host_end..];
    let (path, query) = match rest.find('?') {
        Some(q) => (&rest[..q], Some(&rest[q + 1..])),
        None => (rest, None),
    };
    if let Some(found) = utf8("dbname", path.trim_start_matches('/')) {
        return Some(found);
    }
    for param in query.into_iter().flat_map(|q| q.split('&')) {
        match param.split_once('=') {
            None => {
                let key = if is_secret_key(param) {
                    "password".to_owned()
                } else {
                    param.to_owned()
                };
                return Some((
                    Some(key.clone()),
                    format!("query parameter `{key}` has no `=value`"),
                ));
            }
            Some((key, value)) => {
                let key = percent_decode(key);
                if key == "host" {
                    continue;
                }
                if let Some(why) = check_param(&key, &percent_decode(value), redacted) {
                    return Some((Some(key), why));
                }
            }
        }
    }
    None
}

fn percent_decode_bytes(s: &str) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}
