//! The SDK's JSON: a parser to a small tree, a writer, and a serde data format over both, so
//! the wire types (`smart_protocol`'s token response and discovery document, the stored
//! session) keep their serde derives while the wasm carries one small parser instead of
//! serde_json's (about 60 KB of code there, with float formatting for its error messages).
//!
//! RFC 8259 strictly: no trailing commas, comments or control characters in strings; escapes
//! and surrogate pairs decoded; nesting limited to [`MAX_DEPTH`]; text after the value refused.
//! Numbers keep the text they were sent with, so a value read and written again is unchanged.
//! The tests compare every answer with serde_json's.

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{self, Serialize};
use std::fmt;

/// Deeper nesting is refused (serde_json's limit too), so hostile input cannot exhaust the stack.
pub const MAX_DEPTH: usize = 128;

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

impl Error {
    fn new(message: impl Into<String>) -> Error {
        Error(message.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Error {
        Error(msg.to_string())
    }
    // The default messages format the unexpected value (floats included); these do not.
    fn invalid_type(_: de::Unexpected<'_>, expected: &dyn de::Expected) -> Error {
        Error(format!("invalid type: expected {expected}"))
    }
    fn invalid_value(_: de::Unexpected<'_>, expected: &dyn de::Expected) -> Error {
        Error(format!("invalid value: expected {expected}"))
    }
    fn invalid_length(len: usize, expected: &dyn de::Expected) -> Error {
        Error(format!("invalid length {len}: expected {expected}"))
    }
    fn unknown_variant(variant: &str, _: &'static [&'static str]) -> Error {
        Error(format!("unknown variant `{variant}`"))
    }
    fn unknown_field(field: &str, _: &'static [&'static str]) -> Error {
        Error(format!("unknown field `{field}`"))
    }
    fn missing_field(field: &'static str) -> Error {
        Error(format!("missing field `{field}`"))
    }
    fn duplicate_field(field: &'static str) -> Error {
        Error(format!("duplicate field `{field}`"))
    }
}

impl ser::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Error {
        Error(msg.to_string())
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing

struct Parser<'a> {
    text: &'a [u8],
    at: usize,
}

impl Json {
    /// Parses one JSON text.
    pub fn parse(text: &str) -> Result<Json, Error> {
        let mut p = Parser { text: text.as_bytes(), at: 0 };
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

    /// An integer number (`3`, `-7`; not `3.0` or `1e3`).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Json::Number(n) => n.parse().ok(),
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
        if self.text[self.at..].starts_with(word.as_bytes()) {
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
                if depth >= MAX_DEPTH {
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
        Ok(Json::Number(String::from_utf8_lossy(&self.text[start..self.at]).into_owned()))
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
            out.extend_from_slice(&self.text[start..self.at]);
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
// Typed reading: a serde deserializer over the tree

/// Parses `text` into `T`.
pub fn from_str<T: de::DeserializeOwned>(text: &str) -> Result<T, Error> {
    from_json(&Json::parse(text)?)
}

/// Reads `T` from a parsed value.
pub fn from_json<'de, T: de::Deserialize<'de>>(json: &'de Json) -> Result<T, Error> {
    T::deserialize(json)
}

/// The newtype name by which [`Raw`] asks this format for the JSON text itself.
const RAW: &str = "$smart-edge::json::Raw";

/// A JSON value kept as its text (the server's token response, the ID token's claims, an
/// OperationOutcome): read and written by this format as the JSON it is, not as a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raw(String);

impl Raw {
    pub fn get(&self) -> &str {
        &self.0
    }

    /// The text of `json`.
    pub fn of(json: &Json) -> Raw {
        let mut out = String::new();
        json.write(&mut out);
        Raw(out)
    }

    /// Checks that `text` is JSON.
    pub fn parse(text: &str) -> Result<Raw, Error> {
        Json::parse(text).map(|json| Raw::of(&json))
    }
}

impl Serialize for Raw {
    fn serialize<S: ser::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_newtype_struct(RAW, &self.0)
    }
}

impl<'de> de::Deserialize<'de> for Raw {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Raw, D::Error> {
        struct RawVisitor;
        impl Visitor<'_> for RawVisitor {
            type Value = Raw;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("JSON")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Raw, E> {
                Ok(Raw(text.to_owned()))
            }
            fn visit_string<E: de::Error>(self, text: String) -> Result<Raw, E> {
                Ok(Raw(text))
            }
        }
        deserializer.deserialize_newtype_struct(RAW, RawVisitor)
    }
}

fn number<T: std::str::FromStr>(json: &Json, what: &dyn de::Expected) -> Result<T, Error> {
    match json {
        Json::Number(n) => n.parse().map_err(|_| Error(format!("number out of range: expected {what}"))),
        _ => Err(Error(format!("invalid type: expected {what}"))),
    }
}

macro_rules! integers {
    ($($method:ident $visit:ident $t:ty),*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            let n = number::<$t>(self, &visitor)?;
            visitor.$visit(n)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for &'de Json {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Json::Null => visitor.visit_unit(),
            Json::Bool(b) => visitor.visit_bool(*b),
            Json::Number(n) => {
                if let Ok(u) = n.parse::<u64>() {
                    visitor.visit_u64(u)
                } else if let Ok(i) = n.parse::<i64>() {
                    visitor.visit_i64(i)
                } else {
                    visitor.visit_f64(n.parse().map_err(|_| Error::new("bad number"))?)
                }
            }
            Json::String(s) => visitor.visit_borrowed_str(s),
            Json::Array(items) => visitor.visit_seq(Items(items.iter())),
            Json::Object(members) => visitor.visit_map(Members { members: members.iter(), value: None }),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Json::Bool(b) => visitor.visit_bool(*b),
            _ => Err(de::Error::invalid_type(de::Unexpected::Other("JSON"), &visitor)),
        }
    }

    integers!(deserialize_i8 visit_i8 i8, deserialize_i16 visit_i16 i16, deserialize_i32 visit_i32 i32, deserialize_i64 visit_i64 i64,
              deserialize_u8 visit_u8 u8, deserialize_u16 visit_u16 u16, deserialize_u32 visit_u32 u32, deserialize_u64 visit_u64 u64,
              deserialize_f32 visit_f32 f32, deserialize_f64 visit_f64 f64);

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Json::String(s) => visitor.visit_borrowed_str(s),
            _ => Err(de::Error::invalid_type(de::Unexpected::Other("JSON"), &visitor)),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Json::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, Error> {
        if name == RAW {
            let mut text = String::new();
            self.write(&mut text);
            return visitor.visit_string(text);
        }
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Json::Array(items) => visitor.visit_seq(Items(items.iter())),
            _ => Err(de::Error::invalid_type(de::Unexpected::Other("JSON"), &visitor)),
        }
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Json::Object(members) => visitor.visit_map(Members { members: members.iter(), value: None }),
            _ => Err(de::Error::invalid_type(de::Unexpected::Other("JSON"), &visitor)),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(self, _: &'static str, _: &'static [&'static str], visitor: V) -> Result<V::Value, Error> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(self, _: &'static str, _: &'static [&'static str], visitor: V) -> Result<V::Value, Error> {
        // Unit variants, written as strings: all the SDK's types use.
        match self {
            Json::String(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            _ => Err(de::Error::invalid_type(de::Unexpected::Other("JSON"), &visitor)),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! { char bytes byte_buf unit unit_struct tuple tuple_struct }
}

struct Items<'de>(std::slice::Iter<'de, Json>);

impl<'de> SeqAccess<'de> for Items<'de> {
    type Error = Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Error> {
        self.0.next().map(|item| seed.deserialize(item)).transpose()
    }
}

struct Members<'de> {
    members: std::slice::Iter<'de, (String, Json)>,
    value: Option<&'de Json>,
}

impl<'de> MapAccess<'de> for Members<'de> {
    type Error = Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        let Some((key, value)) = self.members.next() else { return Ok(None) };
        self.value = Some(value);
        seed.deserialize(de::value::BorrowedStrDeserializer::new(key)).map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        seed.deserialize(self.value.take().unwrap_or(&Json::Null))
    }
}

// ---------------------------------------------------------------------------------------------
// Typed writing: a serde serializer to compact JSON text

/// The compact JSON text of `value`.
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> Result<String, Error> {
    let mut writer = Writer { out: String::new(), raw: false };
    value.serialize(&mut writer)?;
    Ok(writer.out)
}

struct Writer {
    out: String,
    /// The next string is a [`Raw`] value's JSON text, written as is.
    raw: bool,
}

/// A sequence or a map on its way out: whether a comma is due.
pub struct Compound<'w> {
    writer: &'w mut Writer,
    first: bool,
}

impl Compound<'_> {
    fn comma(&mut self) {
        if !std::mem::take(&mut self.first) {
            self.writer.out.push(',');
        }
    }
}

fn unsupported(what: &str) -> Error {
    Error(format!("{what} cannot be written as JSON by the SDK"))
}

macro_rules! write_integers {
    ($($method:ident $t:ty),*) => {$(
        fn $method(self, v: $t) -> Result<(), Error> {
            self.out.push_str(&v.to_string());
            Ok(())
        }
    )*};
}

impl<'w> ser::Serializer for &'w mut Writer {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'w>;
    type SerializeTuple = Compound<'w>;
    type SerializeTupleStruct = Compound<'w>;
    type SerializeTupleVariant = ser::Impossible<(), Error>;
    type SerializeMap = Compound<'w>;
    type SerializeStruct = Compound<'w>;
    type SerializeStructVariant = ser::Impossible<(), Error>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.out.push_str(if v { "true" } else { "false" });
        Ok(())
    }

    write_integers!(serialize_i8 i8, serialize_i16 i16, serialize_i32 i32, serialize_i64 i64, serialize_u8 u8, serialize_u16 u16, serialize_u32 u32, serialize_u64 u64);

    fn serialize_f32(self, _: f32) -> Result<(), Error> {
        Err(unsupported("a float"))
    }
    fn serialize_f64(self, _: f64) -> Result<(), Error> {
        Err(unsupported("a float"))
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        if std::mem::take(&mut self.raw) {
            self.out.push_str(v);
        } else {
            write_str(&mut self.out, v);
        }
        Ok(())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), Error> {
        Err(unsupported("bytes"))
    }
    fn serialize_none(self) -> Result<(), Error> {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        self.out.push_str("null");
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Error> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<(), Error> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, name: &'static str, value: &T) -> Result<(), Error> {
        self.raw = name == RAW;
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(self, _: &'static str, _: u32, _: &'static str, _: &T) -> Result<(), Error> {
        Err(unsupported("an enum with data"))
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Compound<'w>, Error> {
        self.out.push('[');
        Ok(Compound { writer: self, first: true })
    }
    fn serialize_tuple(self, len: usize) -> Result<Compound<'w>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Compound<'w>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(self, _: &'static str, _: u32, _: &'static str, _: usize) -> Result<Self::SerializeTupleVariant, Error> {
        Err(unsupported("an enum with data"))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Compound<'w>, Error> {
        self.out.push('{');
        Ok(Compound { writer: self, first: true })
    }
    fn serialize_struct(self, _: &'static str, len: usize) -> Result<Compound<'w>, Error> {
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(self, _: &'static str, _: u32, _: &'static str, _: usize) -> Result<Self::SerializeStructVariant, Error> {
        Err(unsupported("an enum with data"))
    }
}

impl ser::SerializeSeq for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.comma();
        value.serialize(&mut *self.writer)
    }
    fn end(self) -> Result<(), Error> {
        self.writer.out.push(']');
        Ok(())
    }
}

impl ser::SerializeTuple for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<(), Error> {
        ser::SerializeSeq::end(self)
    }
}

impl ser::SerializeTupleStruct for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<(), Error> {
        ser::SerializeSeq::end(self)
    }
}

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.comma();
        let start = self.writer.out.len();
        key.serialize(&mut *self.writer)?;
        if !self.writer.out[start..].starts_with('"') {
            return Err(unsupported("a map key that is not a string"));
        }
        self.writer.out.push(':');
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        value.serialize(&mut *self.writer)
    }
    fn end(self) -> Result<(), Error> {
        self.writer.out.push('}');
        Ok(())
    }
}

impl ser::SerializeStruct for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Error> {
        self.comma();
        write_str(&mut self.writer.out, key);
        self.writer.out.push(':');
        value.serialize(&mut *self.writer)
    }
    fn end(self) -> Result<(), Error> {
        self.writer.out.push('}');
        Ok(())
    }
}
