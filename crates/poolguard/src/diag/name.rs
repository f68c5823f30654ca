//! The one rule for the names of pools and reclaimers.
//!
//! A name labels a pool in stats, traces, doctor findings and metrics, and a reclaimer's name
//! also names its threads. The same rule holds for every engine, so a name that one accepts
//! the others accept too.

use std::fmt;

/// The longest name accepted, in bytes.
pub const MAX_NAME_BYTES: usize = 128;

/// Why a name was refused: what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameError {
    /// The name was empty.
    Empty,
    /// The name was longer than [`MAX_NAME_BYTES`].
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The name held a control character (a NUL byte, a newline, ...).
    ControlChar {
        /// Byte offset of the first such character.
        at: usize,
    },
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => write!(
                f,
                "the name is empty; give a short label such as \"http-buffers\", or leave the name unset for a generated one"
            ),
            NameError::TooLong { len } => write!(
                f,
                "the name is {len} bytes long; the limit is {MAX_NAME_BYTES} bytes: use a shorter label"
            ),
            NameError::ControlChar { at } => write!(
                f,
                "the name holds a control character at byte {at} (NUL, newline, tab...); names label metrics, log lines and threads: remove it"
            ),
        }
    }
}

impl std::error::Error for NameError {}

/// Checks a user-supplied name against the rule: 1 to [`MAX_NAME_BYTES`] bytes of UTF-8 with
/// no control characters.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong { len: name.len() });
    }
    if let Some((at, _)) = name.char_indices().find(|(_, c)| c.is_control()) {
        return Err(NameError::ControlChar { at });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_labels_and_type_names() {
        for ok in [
            "scratch",
            "pg-main",
            "alloc::vec::Vec<u8>",
            "é",
            &"x".repeat(128),
        ] {
            assert_eq!(validate_name(ok), Ok(()), "{ok:?}");
        }
    }

    #[test]
    fn refuses_empty_long_and_control_characters() {
        assert_eq!(validate_name(""), Err(NameError::Empty));
        assert_eq!(
            validate_name(&"x".repeat(129)),
            Err(NameError::TooLong { len: 129 })
        );
        assert_eq!(validate_name("a\0b"), Err(NameError::ControlChar { at: 1 }));
        assert_eq!(validate_name("ab\n"), Err(NameError::ControlChar { at: 2 }));
        assert!(validate_name("a\0b")
            .unwrap_err()
            .to_string()
            .contains("byte 1"));
    }
}
