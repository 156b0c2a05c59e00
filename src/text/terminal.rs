//! Text from files and folders on its way to a terminal. Class names (folder names, or a
//! checkpoint's `strata.classes`), paths and model names are written by whoever made the data;
//! printed raw, an escape sequence in one can recolour the terminal, move the cursor or retitle
//! the window, and a `\r` or `\n` can overwrite or forge a line of the report. Every human
//! output escapes them through [`escape_control`]; JSON output is escaped by serde already.

use std::borrow::Cow;

/// `text` with every control character (C0, DEL, C1) and every bidirectional-override character
/// written as a visible escape, as Rust's `{:?}` writes them: `\n`, `\r`, `\t`, `\0`,
/// `\u{1b}`, `\u{202e}`. Other text, backslashes included, is unchanged and not copied.
pub fn escape_control(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_terminal_control) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_terminal_control(c) {
            escaped.extend(c.escape_debug());
        } else {
            escaped.push(c);
        }
    }
    Cow::Owned(escaped)
}

/// Whether [`escape_control`] escapes `c`: a control character, or one that reorders the text
/// around it (the "Trojan source" embeddings, overrides and isolates). Either changes what a
/// reader sees rather than showing itself.
pub fn is_terminal_control(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_visible_escapes() {
        assert_eq!(escape_control("dog\u{1b}[31mred"), "dog\\u{1b}[31mred");
        assert_eq!(escape_control("a\rb\nc\td\0"), "a\\rb\\nc\\td\\0");
        assert_eq!(escape_control("\u{7f}\u{9b}"), "\\u{7f}\\u{9b}");
        assert_eq!(escape_control("abc\u{202e}gpj.exe"), "abc\\u{202e}gpj.exe");
    }

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        for text in ["cat", "Ankle_boot", "café 猫", "C:\\data\\cats", ""] {
            assert!(matches!(escape_control(text), Cow::Borrowed(same) if same == text));
        }
    }
}
