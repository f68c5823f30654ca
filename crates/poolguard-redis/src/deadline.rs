//! The per-command deadline of `query_timeout`, extended by a blocking command's own timeout.
//!
//! `BLPOP k 5` legitimately takes five seconds; a `query_timeout` of one second must not cut
//! it off. Its deadline is its block time plus `query_timeout` (the allowance for the server
//! and the network). A command told to block for good (`BLPOP k 0`, `XREAD BLOCK 0`,
//! `WAIT n 0`) gets no deadline: the caller asked for that, and bounds it itself.

use std::io;
use std::time::Duration;

use redis::{Arg, Cmd, RedisError};

/// How long a command may block on the server by its own arguments.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Block {
    /// Not a blocking command (or its timeout argument is invalid: the server refuses it at
    /// once).
    No,
    /// Blocks for at most this long.
    For(Duration),
    /// Blocks until its condition is met (timeout `0`).
    Forever,
}

impl Block {
    fn then(self, other: Block) -> Block {
        match (self, other) {
            (Block::Forever, _) | (_, Block::Forever) => Block::Forever,
            (Block::No, b) | (b, Block::No) => b,
            (Block::For(a), Block::For(b)) => Block::For(a.saturating_add(b)),
        }
    }
}

fn simple_args(cmd: &Cmd) -> impl Iterator<Item = &[u8]> {
    cmd.args_iter().filter_map(|a| match a {
        Arg::Simple(b) => Some(b),
        _ => None,
    })
}

/// Seconds as Redis reads them for `BLPOP` and friends (a decimal since Redis 6).
fn seconds(arg: &[u8]) -> Block {
    let parsed = std::str::from_utf8(arg)
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok());
    match parsed {
        Some(0.0) => Block::Forever,
        Some(s) if s > 0.0 => Duration::try_from_secs_f64(s).map_or(Block::Forever, Block::For),
        _ => Block::No,
    }
}

/// Milliseconds, for `XREAD BLOCK` and `WAIT`.
fn millis(arg: &[u8]) -> Block {
    let parsed = std::str::from_utf8(arg)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    match parsed {
        Some(0) => Block::Forever,
        Some(ms) => Block::For(Duration::from_millis(ms)),
        None => Block::No,
    }
}

/// The block time a command asks for.
pub(crate) fn block_of(cmd: &Cmd) -> Block {
    let args: Vec<&[u8]> = simple_args(cmd).collect();
    let Some((name, rest)) = args.split_first() else {
        return Block::No;
    };
    let name = String::from_utf8_lossy(name).to_ascii_uppercase();
    match name.as_str() {
        // ... key [key ...] timeout / source destination [where where] timeout
        "BLPOP" | "BRPOP" | "BZPOPMIN" | "BZPOPMAX" | "BRPOPLPUSH" | "BLMOVE" => {
            rest.last().map_or(Block::No, |t| seconds(t))
        }
        // timeout numkeys key ...
        "BLMPOP" | "BZMPOP" => rest.first().map_or(Block::No, |t| seconds(t)),
        // [COUNT n] [BLOCK ms] ... STREAMS ...
        "XREAD" | "XREADGROUP" => {
            let mut it = rest.iter();
            while let Some(a) = it.next() {
                if a.eq_ignore_ascii_case(b"STREAMS") {
                    break;
                }
                if a.eq_ignore_ascii_case(b"BLOCK") {
                    return it.next().map_or(Block::No, |t| millis(t));
                }
            }
            Block::No
        }
        // WAIT numreplicas timeout / WAITAOF numlocal numreplicas timeout
        "WAIT" | "WAITAOF" => rest.last().map_or(Block::No, |t| millis(t)),
        _ => Block::No,
    }
}

/// The deadline of a request made of `cmds`, or `None` for no deadline.
pub(crate) fn deadline<'a>(
    query_timeout: Option<Duration>,
    cmds: impl IntoIterator<Item = &'a Cmd>,
) -> Option<Duration> {
    let limit = query_timeout?;
    let block = cmds
        .into_iter()
        .fold(Block::No, |acc, cmd| acc.then(block_of(cmd)));
    match block {
        Block::No => Some(limit),
        Block::For(d) => Some(limit.saturating_add(d)),
        Block::Forever => None,
    }
}

/// The error of a request that outran its deadline: an I/O timeout, so it is fatal and
/// `is_timeout()` holds. Names the command, never its arguments (they may hold secrets).
pub(crate) fn timed_out(command: &str, limit: Duration, query_timeout: Duration) -> RedisError {
    let extra = limit.saturating_sub(query_timeout);
    let what = if extra.is_zero() {
        format!("query_timeout ({query_timeout:?})")
    } else {
        format!("query_timeout ({query_timeout:?}) plus its own block time ({extra:?})")
    };
    RedisError::from(io::Error::new(
        io::ErrorKind::TimedOut,
        format!(
            "Redis did not answer {command} within {what}; the connection is discarded \
             (raise query_timeout if such commands are legitimately slow)"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(args: &[&str]) -> Cmd {
        let mut c = redis::cmd(args[0]);
        for a in &args[1..] {
            c.arg(*a);
        }
        c
    }

    #[test]
    fn block_times_are_read_from_the_right_argument() {
        let s = Duration::from_secs;
        assert_eq!(block_of(&cmd(&["blpop", "a", "b", "5"])), Block::For(s(5)));
        assert_eq!(block_of(&cmd(&["BRPOP", "a", "0"])), Block::Forever);
        assert_eq!(
            block_of(&cmd(&["BLMOVE", "a", "b", "LEFT", "RIGHT", "0.5"])),
            Block::For(Duration::from_millis(500))
        );
        assert_eq!(
            block_of(&cmd(&["BLMPOP", "2", "1", "k", "LEFT"])),
            Block::For(s(2))
        );
        assert_eq!(
            block_of(&cmd(&[
                "XREAD", "COUNT", "1", "BLOCK", "1500", "STREAMS", "s", "$"
            ])),
            Block::For(Duration::from_millis(1500))
        );
        // A key named BLOCK after STREAMS is a key, not the option.
        assert_eq!(
            block_of(&cmd(&["XREAD", "STREAMS", "BLOCK", "0"])),
            Block::No
        );
        assert_eq!(block_of(&cmd(&["WAIT", "1", "0"])), Block::Forever);
        assert_eq!(block_of(&cmd(&["GET", "k"])), Block::No);
        assert_eq!(block_of(&cmd(&["BLPOP", "k", "-1"])), Block::No);
        assert_eq!(block_of(&cmd(&["BLPOP", "k", "soon"])), Block::No);
    }

    #[test]
    fn deadline_adds_the_block_time_and_exempts_blocking_for_good() {
        let q = Some(Duration::from_secs(1));
        let get = cmd(&["GET", "k"]);
        let blpop = cmd(&["BLPOP", "k", "5"]);
        let forever = cmd(&["BLPOP", "k", "0"]);
        assert_eq!(deadline(None, [&get]), None);
        assert_eq!(deadline(q, [&get]), q);
        assert_eq!(deadline(q, [&blpop]), Some(Duration::from_secs(6)));
        assert_eq!(
            deadline(q, [&get, &blpop, &blpop]),
            Some(Duration::from_secs(11))
        );
        assert_eq!(deadline(q, [&get, &forever]), None);
    }

    #[test]
    fn the_timeout_error_is_a_fatal_timeout_naming_no_arguments() {
        let e = timed_out("BLPOP", Duration::from_secs(6), Duration::from_secs(1));
        assert!(e.is_timeout());
        assert_eq!(
            crate::error::classify(&e),
            poolguard::conn::ErrorClass::Fatal
        );
        assert!(e.to_string().contains("query_timeout (1s) plus"), "{e}");
    }
}
