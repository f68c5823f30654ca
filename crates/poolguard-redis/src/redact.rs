//! Connection strings with their secrets masked, for logs, errors and status output.

use redis::{ConnectionAddr, ConnectionInfo};

/// What replaces a secret.
const MASK: &str = "***";

/// Query parameters whose value is a secret (`redis+unix:///run/redis.sock?pass=...`).
const SECRET_PARAMS: &[&str] = &["pass", "password", "auth", "token"];

/// A connection URL with its password masked, safe to print:
/// `redis://user:secret@host:6379/0` becomes `redis://user:***@host:6379/0`,
/// `redis://:secret@host` becomes `redis://:***@host`, and a `pass=`/`password=` query
/// parameter (Unix-socket URLs) keeps its name but not its value. The user name, host, port
/// and database stay visible.
///
/// It works on malformed input too (a password with an unescaped `/` or `@`, a missing
/// scheme), erring on the side of masking more: everything between the first `:` after the
/// scheme and the last `@` is masked. It works for any `scheme://user:password@...` URL,
/// PostgreSQL's included.
///
/// ```
/// use poolguard_redis::redact_url;
///
/// assert_eq!(redact_url("redis://app:s3cret@10.0.0.5:6379/2"), "redis://app:***@10.0.0.5:6379/2");
/// assert_eq!(redact_url("redis+unix:///run/redis.sock?db=1&pass=s3cret"), "redis+unix:///run/redis.sock?db=1&pass=***");
/// assert_eq!(redact_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
/// ```
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let mut out = String::with_capacity(url.len());
    out.push_str(scheme);
    // The user info ends at the last '@' (a password may hold an unescaped '@' or '/').
    match rest.rfind('@') {
        Some(at) => {
            let info = &rest[..at];
            match info.find(':') {
                Some(colon) if colon + 1 < info.len() => {
                    out.push_str(&info[..=colon]);
                    out.push_str(MASK);
                }
                _ => out.push_str(info),
            }
            out.push_str(&rest[at..]);
        }
        None => out.push_str(rest),
    }
    // Secret query parameters, wherever the '?' is (it may precede an '@').
    match out.find('?') {
        Some(q) => {
            let params: Vec<String> = out[q + 1..].split('&').map(redact_param).collect();
            out.truncate(q + 1);
            out.push_str(&params.join("&"));
            out
        }
        None => out,
    }
}

fn redact_param(param: &str) -> String {
    match param.split_once('=') {
        Some((key, value))
            if !value.is_empty() && SECRET_PARAMS.iter().any(|s| key.eq_ignore_ascii_case(s)) =>
        {
            format!("{key}={MASK}")
        }
        _ => param.to_owned(),
    }
}

/// The address of `info` as a URL, password masked (`redis://user:***@host:port/db`).
pub(crate) fn address(info: &ConnectionInfo) -> String {
    let settings = info.redis_settings();
    let user = settings.username().unwrap_or("");
    let userinfo = match (user, settings.password()) {
        ("", None) => String::new(),
        (user, None) => format!("{user}@"),
        (user, Some(_)) => format!("{user}:{MASK}@"),
    };
    let db = settings.db();
    match info.addr() {
        ConnectionAddr::Unix(path) => {
            let mut url = format!("redis+unix://{}?db={db}", path.display());
            if !user.is_empty() {
                url.push_str(&format!("&user={user}"));
            }
            if settings.password().is_some() {
                url.push_str(&format!("&pass={MASK}"));
            }
            url
        }
        ConnectionAddr::Tcp(host, port) => {
            format!("redis://{userinfo}{}:{port}/{db}", host_of(host))
        }
        other => {
            let (host, port) = match other {
                ConnectionAddr::TcpTls { host, port, .. } => (host.as_str(), *port),
                _ => ("?", 0),
            };
            format!("rediss://{userinfo}{}:{port}/{db}", host_of(host))
        }
    }
}

/// An IPv6 host in brackets.
fn host_of(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked_and_the_rest_is_kept() {
        let cases = [
            ("redis://u:pw@h:6379/0", "redis://u:***@h:6379/0"),
            ("redis://:pw@h", "redis://:***@h"),
            ("redis://u@h/1", "redis://u@h/1"),
            ("redis://u:@h", "redis://u:@h"),
            ("redis://h:6379/0", "redis://h:6379/0"),
            (
                "rediss://u:p%40w@h:6380#insecure",
                "rediss://u:***@h:6380#insecure",
            ),
            // Unescaped '@' and '/' in the password: masked up to the last '@'.
            ("redis://u:p@ss/w@h:6379", "redis://u:***@h:6379"),
            ("u:pw@h:6379", "u:***@h:6379"),
            (
                "redis+unix:///tmp/r.sock?db=2&user=u&pass=pw",
                "redis+unix:///tmp/r.sock?db=2&user=u&pass=***",
            ),
            (
                "redis+unix:///tmp/r.sock?PASSWORD=pw",
                "redis+unix:///tmp/r.sock?PASSWORD=***",
            ),
            (
                "postgres://app:pw@db:5432/x?sslmode=disable",
                "postgres://app:***@db:5432/x?sslmode=disable",
            ),
            (
                "redis+unix:///s?pass=pw&user=a@b",
                "redis+unix:///s?pass=***&user=a@b",
            ),
            ("", ""),
            ("not a url", "not a url"),
        ];
        for (url, want) in cases {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }

    #[test]
    fn addresses_show_no_password() {
        use redis::IntoConnectionInfo;
        let cases = [
            (
                "redis://u:pw@127.0.0.1:6380/3",
                "redis://u:***@127.0.0.1:6380/3",
            ),
            ("redis://:pw@localhost", "redis://:***@localhost:6379/0"),
            ("redis://[::1]:6379", "redis://[::1]:6379/0"),
            (
                "redis+unix:///tmp/r.sock?db=1&pass=pw",
                "redis+unix:///tmp/r.sock?db=1&pass=***",
            ),
        ];
        for (url, want) in cases {
            let info = url.into_connection_info().unwrap();
            assert_eq!(address(&info), want, "{url}");
        }
    }
}
