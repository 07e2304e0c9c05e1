//! A spec's bytes as text YAML can read: UTF-8, and no control character
//! outside what YAML allows. Both are checked here, before the YAML parser,
//! so the error points at the byte's line and column (the parser names
//! neither for invalid UTF-8, and a byte offset for a NUL).

use std::path::Path;

use crate::diag::{Diagnostic, Loc, Source};

/// `bytes` (read from `path`) as text, or an error at the first byte that
/// is not UTF-8.
pub(super) fn decode(path: &Path, bytes: Vec<u8>) -> Result<String, Diagnostic> {
    match String::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(e) => {
            let at = e.utf8_error().valid_up_to();
            let bytes = e.into_bytes();
            let before = String::from_utf8_lossy(&bytes[..at]);
            let (line, col) = line_col(&before);
            let shown = Source { path: path.to_path_buf(), text: String::from_utf8_lossy(&bytes).into_owned().into() };
            Err(Diagnostic::new(format!(
                "{} is not UTF-8 text: byte 0x{:02x} at line {line}, column {col}",
                path.display(),
                bytes[at]
            ))
            .at(&shown, Some(Loc { line, col, width: 1 }))
            .hint("save the spec as UTF-8 (most editors: \"Save with encoding\")"))
        }
    }
}

/// The first character YAML does not allow in a file (a NUL, a C0 or C1
/// control other than tab, line feed, carriage return and next line), with
/// its line and column.
pub(super) fn control_char(text: &str) -> Option<(usize, usize, char)> {
    let (at, c) = text
        .char_indices()
        .find(|&(_, c)| (c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\u{85}')) || c == '\u{7f}')?;
    let (line, col) = line_col(&text[..at]);
    Some((line, col, c))
}

/// The 1-based line and column just after `before`.
fn line_col(before: &str) -> (usize, usize) {
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nul_and_a_control_character_are_located() {
        assert_eq!(control_char("flow: 1\nnodes:\n  a: {path: c\0d}\n"), Some((3, 14, '\0')));
        assert_eq!(control_char("a: \u{1b}[31m"), Some((1, 4, '\u{1b}')));
        assert_eq!(control_char("a: b\tc\r\nd: é\u{85}\n"), None, "tabs, CRLF, NEL and non-ASCII are fine");
    }

    #[test]
    fn invalid_utf8_is_located() {
        let d = decode(Path::new("s.yaml"), b"flow: 1\nnodes:\n  a: \xff\xfe\n".to_vec()).unwrap_err();
        assert!(d.message.contains("byte 0xff at line 3, column 6"), "{}", d.message);
        assert_eq!(decode(Path::new("s.yaml"), "é: 1".as_bytes().to_vec()).unwrap(), "é: 1");
    }
}
