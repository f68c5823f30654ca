//! Connection strings as the command prints them: the same string with every password
//! replaced by `***`, so nothing the command writes (progress lines, tables, errors) shows a
//! secret.
//!
//! Two forms are understood, the ones `--postgres` and `--redis` accept:
//! - URLs (`postgres://user:secret@host/db`, `redis://:secret@host`): the password of the
//!   user-info part, and `password=` / `pass=` query parameters;
//! - PostgreSQL `key=value` strings (`host=h password=secret`, `password='a b'`): the value of
//!   every `password` key, quoted or not.
//!
//! - anything else with an `@` (a mistyped URL): everything before the last `@`.
//!
//! The redaction works on text that did not parse too (that is when it is printed in an error
//! message), and errs towards hiding: a value it cannot delimit is hidden to the end.

/// What a hidden secret is replaced by.
const MASK: &str = "***";

/// `s` with every password replaced by `***`; everything else as given.
pub(crate) fn connection_string(s: &str) -> String {
    if s.contains("://") {
        url(s)
    } else if s.contains('=') {
        key_value(s)
    } else if let Some(at) = s.rfind('@') {
        // Neither form, but shaped like user info (a mistyped URL, `redis:/u:pw@host`):
        // everything before the host is hidden.
        format!("{MASK}{}", &s[at..])
    } else {
        s.to_owned()
    }
}

/// `scheme://user:pass@host/path?password=x&pass=y`: the user-info password and the query's
/// `password`/`pass` values.
fn url(s: &str) -> String {
    let start = s.find("://").map_or(0, |i| i + 3);
    let (head, rest) = s.split_at(start);
    // The user info ends at the last `@`: a password may itself hold an unescaped `@`, `/`,
    // `?` or `#`, so no delimiter before it can be trusted (an `@` in the query makes this
    // hide too much, never too little).
    let (userinfo, after) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at..]),
        None => (None, rest),
    };
    let mut out = String::from(head);
    if let Some(userinfo) = userinfo {
        match userinfo.split_once(':') {
            Some((user, _password)) => {
                out.push_str(user);
                out.push(':');
                out.push_str(MASK);
            }
            None => out.push_str(userinfo),
        }
    }
    match after.split_once('?') {
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            let (query, fragment) = match query.split_once('#') {
                Some((q, f)) => (q, Some(f)),
                None => (query, None),
            };
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if is_password_key(k) => format!("{k}={MASK}"),
                    _ => p.to_owned(),
                })
                .collect();
            out.push_str(&params.join("&"));
            if let Some(f) = fragment {
                out.push('#');
                out.push_str(f);
            }
        }
        None => out.push_str(after),
    }
    out
}

fn is_password_key(k: &str) -> bool {
    k.eq_ignore_ascii_case("password") || k.eq_ignore_ascii_case("pass")
}

/// libpq's `key = value` syntax: whitespace-separated pairs, optional whitespace around `=`,
/// values either bare (backslash escapes) or single-quoted (backslash escapes).
fn key_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    loop {
        // Whitespace between pairs, copied.
        let ws = rest.len() - rest.trim_start().len();
        out.push_str(&rest[..ws]);
        rest = &rest[ws..];
        if rest.is_empty() {
            return out;
        }
        // The key: up to whitespace or `=`.
        let key_len = rest
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(rest.len());
        let key = &rest[..key_len];
        out.push_str(key);
        rest = &rest[key_len..];
        // `=` with optional whitespace around it.
        let ws = rest.len() - rest.trim_start().len();
        if !rest[ws..].starts_with('=') {
            // Not a pair (garbage): the word is copied and the scan goes on.
            continue;
        }
        let eq_end = ws + 1;
        let ws2 = rest[eq_end..].len() - rest[eq_end..].trim_start().len();
        out.push_str(&rest[..eq_end + ws2]);
        rest = &rest[eq_end + ws2..];
        let value_len = value_len(rest);
        if key == "password" {
            out.push_str(MASK);
        } else {
            out.push_str(&rest[..value_len]);
        }
        rest = &rest[value_len..];
    }
}

/// Length of the value at the start of `s`: a quoted value up to its closing quote (or the
/// end, when unterminated), a bare one up to unescaped whitespace.
fn value_len(s: &str) -> usize {
    let mut chars = s.char_indices();
    let quoted = s.starts_with('\'');
    if quoted {
        chars.next();
    }
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '\'' if quoted => return i + 1,
            c if !quoted && c.is_whitespace() => return i,
            _ => {}
        }
    }
    s.len()
}

#[cfg(test)]
mod tests {
    use super::connection_string as r;

    #[test]
    fn url_passwords_are_hidden() {
        assert_eq!(
            r("postgres://u:S3cret@host:5432/db"),
            "postgres://u:***@host:5432/db"
        );
        assert_eq!(
            r("redis://:S3cret@127.0.0.1:6379/0"),
            "redis://:***@127.0.0.1:6379/0"
        );
        assert_eq!(r("rediss://user:S3cret@h"), "rediss://user:***@h");
        // Unescaped `@`, `/`, `:` and `?` inside the password.
        assert_eq!(
            r("postgres://u:p@s/s:w?d#@host/db"),
            "postgres://u:***@host/db"
        );
        // An `@` after the host: more is hidden than needed, nothing is shown that should not.
        assert_eq!(r("postgres://h:5432/db?x=a@b"), "postgres://h:***@b");
        assert_eq!(
            r("postgresql://host/db?user=u&password=S3cret&sslmode=disable#x"),
            "postgresql://host/db?user=u&password=***&sslmode=disable#x"
        );
        assert_eq!(
            r("redis+unix:///tmp/r.sock?db=1&pass=S3cret"),
            "redis+unix:///tmp/r.sock?db=1&pass=***"
        );
    }

    #[test]
    fn mistyped_urls_hide_their_user_info() {
        assert_eq!(r("redis:/:S3cret@host:6379"), "***@host:6379");
        assert_eq!(r("u:S3cret@host"), "***@host");
    }

    #[test]
    fn urls_without_a_password_are_unchanged() {
        for s in [
            "postgres://u@host/db",
            "postgres://host:5432/db?application_name=lab",
            "redis://127.0.0.1:6379/0",
            "redis://",
        ] {
            assert_eq!(r(s), s);
        }
    }

    #[test]
    fn key_value_passwords_are_hidden() {
        assert_eq!(
            r("host=h password=S3cret user=u"),
            "host=h password=*** user=u"
        );
        assert_eq!(r("password = S3cret"), "password = ***");
        assert_eq!(
            r("user=u password='S3 cr\\'et' dbname=d"),
            "user=u password=*** dbname=d"
        );
        assert_eq!(r("password=S3\\ cret port=1"), "password=*** port=1");
        // Unterminated quote: hidden to the end.
        assert_eq!(r("password='S3cret port=1"), "password=***");
        // Twice (the last one wins in libpq; both are secrets).
        assert_eq!(r("password=a1 password=b2"), "password=*** password=***");
    }

    #[test]
    fn key_value_strings_without_a_password_are_unchanged() {
        for s in [
            "host=127.0.0.1 port=5432 user=postgres dbname=test",
            "garbage",
            "",
            "  host = h  ",
            "passwordless=x",
        ] {
            assert_eq!(r(s), s);
        }
    }
}
