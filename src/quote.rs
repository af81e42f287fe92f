//! Quoting values in error messages the way Prometheus does (Go's `%q` verb), so a
//! message the frontend writes is word for word the one the querier would write.
//!
//! The rules of Go's `strconv.Quote`: printable characters (Unicode letters, marks,
//! numbers, punctuation and symbols, and the ASCII space) are kept as they are, marks
//! included, so a combining accent stays attached to its letter; `"` and `\` get a
//! backslash; `\a \b \f \n \r \t \v` are written so; other control characters below
//! U+0020 and U+007F as `\xNN`; any other character as `\uNNNN` or `\UNNNNNNNN`; and each
//! byte that is not part of valid UTF-8 as `\xNN`. Hex digits are lower case.
//!
//! "Printable" is read from the Unicode tables of the `regex` crate, which may be a
//! newer Unicode version than the querier's Go release: a character assigned since then
//! is kept as is here and escaped there.

use std::sync::LazyLock;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Characters Go's `strconv.IsPrint` accepts, besides the ASCII space.
static PRINTABLE: LazyLock<Option<regex::Regex>> =
    LazyLock::new(|| regex::Regex::new(r"^[\p{L}\p{M}\p{N}\p{P}\p{S}]$").ok());

/// `value` quoted like Go's `fmt.Sprintf("%q", value)`.
pub fn go_quote(value: impl AsRef<[u8]>) -> String {
    let bytes = value.as_ref();
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            push_char(&mut out, c);
        }
        for &b in chunk.invalid() {
            push_hex_byte(&mut out, b);
        }
    }
    out.push('"');
    out
}

fn push_char(out: &mut String, c: char) {
    match c {
        '"' => out.push_str("\\\""),
        '\\' => out.push_str("\\\\"),
        ' '..='~' => out.push(c),
        '\u{7}' => out.push_str("\\a"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{b}' => out.push_str("\\v"),
        '\0'..='\u{1f}' | '\u{7f}' => push_hex_byte(out, c as u8),
        _ if is_printable(c) => out.push(c),
        _ => {
            let (prefix, digits) = if (c as u32) < 0x10000 {
                ("\\u", 4)
            } else {
                ("\\U", 8)
            };
            out.push_str(prefix);
            for shift in (0..digits).rev() {
                out.push(HEX[((c as u32) >> (shift * 4)) as usize & 0xf] as char);
            }
        }
    }
}

fn push_hex_byte(out: &mut String, b: u8) {
    out.push_str("\\x");
    out.push(HEX[(b >> 4) as usize] as char);
    out.push(HEX[(b & 0xf) as usize] as char);
}

fn is_printable(c: char) -> bool {
    let mut buf = [0u8; 4];
    PRINTABLE
        .as_ref()
        .is_some_and(|re| re.is_match(c.encode_utf8(&mut buf)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected values are what Go's `fmt.Sprintf("%q", s)` prints.
    #[test]
    fn quotes_like_go() {
        let cases: &[(&[u8], &str)] = &[
            (b"", r#""""#),
            (b"plain 1h", r#""plain 1h""#),
            (b"a\"b\\c", r#""a\"b\\c""#),
            (b"x\x01", r#""x\x01""#),
            (b"\x00\x1f\x7f", r#""\x00\x1f\x7f""#),
            (b"\x07\x08\x0c\n\r\t\x0b", r#""\a\b\f\n\r\t\v""#),
            (b"\xff", r#""\xff""#),
            (b"a\xe2\x80z", r#""a\xe2\x80z""#),
            (b"\xed\xa0\x80", r#""\xed\xa0\x80""#),
            ("\u{80}".as_bytes(), r#""\u0080""#),
            ("\u{a0}".as_bytes(), r#""\u00a0""#),
            ("\u{ad}".as_bytes(), r#""\u00ad""#),
            ("\u{200b}".as_bytes(), r#""\u200b""#),
            ("\u{2028}".as_bytes(), r#""\u2028""#),
            ("\u{feff}".as_bytes(), r#""\ufeff""#),
            ("\u{e000}".as_bytes(), r#""\ue000""#),
            ("\u{f0000}".as_bytes(), r#""\U000f0000""#),
            ("\u{e0001}".as_bytes(), r#""\U000e0001""#),
            ("e\u{301}".as_bytes(), "\"e\u{301}\""),
            ("é€日本😀".as_bytes(), "\"é€日本😀\""),
            ("\u{fffd}".as_bytes(), "\"\u{fffd}\""),
            ("<&>".as_bytes(), r#""<&>""#),
        ];
        for (input, want) in cases {
            assert_eq!(go_quote(input), *want, "{input:?}");
        }
    }
}
