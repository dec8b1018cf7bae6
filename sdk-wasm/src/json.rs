//! The SDK's JSON: a parser to a small tree and a writer, instead of serde_json and serde's
//! generated visitors (together more than half of the wasm's code). The wire types are read
//! from the tree through `smart_protocol::fields` (the same types the server writes with
//! serde); what the SDK stores is built as a tree.
//!
//! RFC 8259 strictly: no trailing commas, comments or control characters in strings; escapes
//! and surrogate pairs decoded; nesting limited to [`MAX_DEPTH`]; text after the value refused.
//! Numbers keep the text they were sent with, so a value read and written again is unchanged.
//! The tests compare the parser's answers with serde_json's.

use smart_protocol::fields::Object;
use std::fmt;

/// Arrays and objects nest at most this deep (serde_json's limit too), so hostile input cannot
/// exhaust the stack.
pub const MAX_DEPTH: usize = 127;

/// A JSON value. Objects keep their members in order; a repeated name is kept twice and
/// [`Json::get`] answers the last, as serde_json's `Value` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Json {
    Null,
    Bool(bool),
    /// The number's text, as sent (already checked against the JSON grammar).
    Number(String),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

/// Why a text is not the JSON or the shape that was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

// ---------------------------------------------------------------------------------------------
// Parsing

struct Parser<'a> {
    source: &'a str,
    text: &'a [u8],
    at: usize,
}

impl Json {
    /// Parses one JSON text.
    pub fn parse(text: &str) -> Result<Json, Error> {
        let mut p = Parser { source: text, text: text.as_bytes(), at: 0 };
        let value = p.value(0)?;
        p.space();
        if p.at != p.text.len() {
            return Err(p.fail("text after the JSON value"));
        }
        Ok(value)
    }

    /// The member `key` of an object (the last one when it is repeated).
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(members) => members.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Json]> {
        match self {
            Json::Array(items) => Some(items),
            _ => None,
        }
    }

    /// An integer number (`3`, `-7`; not `3.0`, `1e3`, or `-0`, which JSON readers such as
    /// serde_json and JavaScript take for the float negative zero).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Json::Number(n) if n != "-0" => n.parse().ok(),
            _ => None,
        }
    }

    /// The compact JSON text.
    pub fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Number(n) => out.push_str(n),
            Json::String(s) => write_str(out, s),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Json::Object(members) => {
                out.push('{');
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_str(out, k);
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        self.write(&mut out);
        f.write_str(&out)
    }
}

impl Parser<'_> {
    fn fail(&self, what: &str) -> Error {
        Error(format!("{what} at byte {}", self.at))
    }

    fn space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.text.get(self.at) {
            self.at += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let hit = self.peek() == Some(byte);
        self.at += usize::from(hit);
        hit
    }

    fn word(&mut self, word: &str, value: Json) -> Result<Json, Error> {
        if self.source.get(self.at..).is_some_and(|rest| rest.starts_with(word)) {
            self.at += word.len();
            Ok(value)
        } else {
            Err(self.fail("not JSON"))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, Error> {
        self.space();
        match self.peek() {
            Some(b'n') => self.word("null", Json::Null),
            Some(b't') => self.word("true", Json::Bool(true)),
            Some(b'f') => self.word("false", Json::Bool(false)),
            Some(b'"') => self.string().map(Json::String),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(open @ (b'[' | b'{')) => {
                if depth + 1 > MAX_DEPTH {
                    return Err(self.fail("nested too deeply"));
                }
                self.at += 1;
                let close = if open == b'[' { b']' } else { b'}' };
                let (mut items, mut members) = (Vec::new(), Vec::new());
                self.space();
                if !self.eat(close) {
                    loop {
                        if open == b'[' {
                            items.push(self.value(depth + 1)?);
                        } else {
                            self.space();
                            if self.peek() != Some(b'"') {
                                return Err(self.fail("expected a member name"));
                            }
                            let key = self.string()?;
                            self.space();
                            if !self.eat(b':') {
                                return Err(self.fail("expected `:`"));
                            }
                            members.push((key, self.value(depth + 1)?));
                        }
                        self.space();
                        if self.eat(close) {
                            break;
                        }
                        if !self.eat(b',') {
                            return Err(self.fail("expected `,`"));
                        }
                    }
                }
                Ok(if open == b'[' { Json::Array(items) } else { Json::Object(members) })
            }
            _ => Err(self.fail("not JSON")),
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
        self.at - start
    }

    fn number(&mut self) -> Result<Json, Error> {
        let start = self.at;
        self.eat(b'-');
        match self.peek() {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.fail("bad number")),
        }
        if self.eat(b'.') && self.digits() == 0 {
            return Err(self.fail("bad number"));
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            if self.digits() == 0 {
                return Err(self.fail("bad number"));
            }
        }
        // Only ASCII was consumed.
        Ok(Json::Number(self.source.get(start..self.at).unwrap_or_default().to_owned()))
    }

    fn hex4(&mut self) -> Result<u32, Error> {
        let digits = self.text.get(self.at..self.at + 4).ok_or_else(|| self.fail("bad escape"))?;
        let mut n = 0;
        for &d in digits {
            n = n * 16 + (d as char).to_digit(16).ok_or_else(|| self.fail("bad escape"))?;
        }
        self.at += 4;
        Ok(n)
    }

    fn string(&mut self) -> Result<String, Error> {
        self.at += 1; // the opening quote
        let mut out = Vec::new();
        loop {
            let start = self.at;
            while let Some(&b) = self.text.get(self.at) {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.at += 1;
            }
            out.extend_from_slice(self.source.get(start..self.at).unwrap_or_default().as_bytes());
            match self.peek() {
                Some(b'"') => {
                    self.at += 1;
                    // The input is a &str and escapes produce whole characters.
                    return String::from_utf8(out).map_err(|_| self.fail("bad string"));
                }
                Some(b'\\') => {
                    self.at += 1;
                    let escaped = self.peek().ok_or_else(|| self.fail("bad escape"))?;
                    self.at += 1;
                    let c = match escaped {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let first = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&first) {
                                if !(self.eat(b'\\') && self.eat(b'u')) {
                                    return Err(self.fail("lone surrogate"));
                                }
                                let second = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&second) {
                                    return Err(self.fail("lone surrogate"));
                                }
                                0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
                            } else {
                                first
                            };
                            char::from_u32(code).ok_or_else(|| self.fail("lone surrogate"))?
                        }
                        _ => return Err(self.fail("bad escape")),
                    };
                    let mut buf = [0; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                _ => return Err(self.fail("unterminated string or control character")),
            }
        }
    }
}

fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(HEX[(c as usize) >> 4] as char);
                out.push(HEX[(c as usize) & 15] as char);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

// ---------------------------------------------------------------------------------------------
// Reading the wire types (`smart_protocol::fields`) and building values

impl Object for Json {
    fn text(&self, key: &str) -> Option<&str> {
        self.get(key)?.as_str()
    }
    fn integer(&self, key: &str) -> Option<i64> {
        self.get(key)?.as_i64()
    }
    fn boolean(&self, key: &str) -> Option<bool> {
        match self.get(key)? {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }
    fn object(&self, key: &str) -> Option<&dyn Object> {
        self.get(key).filter(|v| matches!(v, Json::Object(_))).map(|v| v as &dyn Object)
    }
    fn texts(&self, key: &str) -> Vec<String> {
        self.list(key).iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()
    }
    fn objects(&self, key: &str) -> Vec<&dyn Object> {
        self.list(key).iter().filter(|v| matches!(v, Json::Object(_))).map(|v| v as &dyn Object).collect()
    }
}

impl Json {
    /// The items of an array member; empty when absent or not an array.
    pub fn list(&self, key: &str) -> &[Json] {
        self.get(key).and_then(Json::as_array).unwrap_or_default()
    }

    /// A string member, owned.
    pub fn string(&self, key: &str) -> Option<String> {
        self.get(key)?.as_str().map(str::to_owned)
    }
}

impl From<&str> for Json {
    fn from(s: &str) -> Json {
        Json::String(s.to_owned())
    }
}

impl From<String> for Json {
    fn from(s: String) -> Json {
        Json::String(s)
    }
}

impl From<i64> for Json {
    fn from(n: i64) -> Json {
        Json::Number(n.to_string())
    }
}

impl From<bool> for Json {
    fn from(b: bool) -> Json {
        Json::Bool(b)
    }
}

impl<T: Into<Json>> From<Option<T>> for Json {
    fn from(v: Option<T>) -> Json {
        v.map_or(Json::Null, Into::into)
    }
}

impl From<Vec<String>> for Json {
    fn from(items: Vec<String>) -> Json {
        Json::Array(items.into_iter().map(Json::String).collect())
    }
}

/// An object from `(name, value)` pairs (`null` values included: the app sees every member).
pub fn object<const N: usize>(members: [(&str, Json); N]) -> Json {
    Json::Object(members.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_stops_where_serde_json_stops() {
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(Json::parse(&nested(MAX_DEPTH)).is_ok());
        assert!(Json::parse(&nested(MAX_DEPTH + 1)).is_err());
        assert!(Json::parse(&"[".repeat(100_000)).is_err());
    }

    #[test]
    fn minus_zero_is_not_an_integer() {
        assert_eq!(Json::parse("-0").unwrap().as_i64(), None);
        assert_eq!(Json::parse("-7").unwrap().as_i64(), Some(-7));
        assert_eq!(Json::parse("0").unwrap().as_i64(), Some(0));
    }

    #[test]
    fn trees_are_written_back_as_read() {
        let text = r#"{"a":[1,-2.5e3,true,null,"x\"\\\n\u0001é😀"],"b":{},"a":0}"#;
        let json = Json::parse(text).unwrap();
        assert_eq!(json.to_string(), text);
        assert_eq!(json.get("a").and_then(Json::as_i64), Some(0), "the last of a repeated name");
        assert_eq!(Json::parse(r#""\ud83d\ude00\/""#).unwrap(), Json::String("😀/".into()));
        for bad in ["", "01", "[1,]", "{\"a\" 1}", "\"\\ud800\"", "\"a\u{1}\"", "1 2", "nul", "-", "1.", "1e"] {
            assert!(Json::parse(bad).is_err(), "{bad:?}");
        }
    }
}
