//! An oracle for the SDK's own JSON (`smart_edge_sdk::json`): what it reads, accepts, refuses
//! and writes is compared with serde_json's answer on generated input, and the wire types read
//! through its tree (`smart_protocol::fields::Object for Json`) are compared with the same
//! readers over serde_json's `Map` and with serde's derived `Deserialize`. Written from RFC 8259,
//! serde_json's documented behaviour and `fields.rs`'s documented contract, against the public
//! API only.
//!
//! One difference is allowed: a number outside f64's range (`1e400`) fits RFC 8259's grammar
//! (§6 leaves the range to implementations); serde_json without `arbitrary_precision` refuses it
//! ("number out of range"), `Json` keeps it as its text. [`accepted_alike`] excludes exactly that
//! case: `Json` accepted, serde_json refused with that error, and `Json` holds a number that is
//! infinite as an f64.
//!
//! `Json` keeps each number's text; [`to_value`] hands that text to serde_json, so trees compare
//! exactly. Only where serde_json reads back its own float output (`to_string` then `from_str`,
//! best-effort without `float_roundtrip`) may two floats be a few ULPs apart ([`same`]).
#![cfg(not(target_arch = "wasm32"))]

use std::cell::Cell;
use std::fmt::Debug;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::{TestCaseError, TestRunner};
use serde_json::{Map, Number, Value};
use smart_edge_sdk::json::{self, Json};
use smart_protocol::discovery::SmartConfiguration;
use smart_protocol::fields::{Missing, Object};
use smart_protocol::jose::RawHeader;
use smart_protocol::token::TokenResponse;

/// Cases per property: the whole file stays within a few seconds in a debug build.
const CASES: u32 = 256;

fn config() -> ProptestConfig {
    ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() }
}

// ---------------------------------------------------------------------------------------------
// Generators

const SPECIAL_CHARS: &[char] = &[
    '"',
    '\\',
    '/',
    '\0',
    '\u{8}',
    '\u{c}',
    '\n',
    '\r',
    '\t',
    '\u{b}',
    '\u{1f}',
    '\u{7f}',
    '\u{80}',
    '\u{a0}',
    'é',
    'ß',
    '\u{2028}',
    '\u{2029}',
    '\u{feff}',
    '\u{fffd}',
    '\u{ffff}',
    '\u{d7ff}',
    '\u{e000}',
    '\u{10000}',
    '😀',
    '\u{10ffff}',
];

fn arb_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => proptest::char::range(' ', '~'),
        3 => select(SPECIAL_CHARS),
        1 => proptest::char::range('\0', '\u{1f}'),
        2 => any::<char>(),
    ]
}

fn arb_string() -> impl Strategy<Value = String> {
    vec(arb_char(), 0..10).prop_map(String::from_iter)
}

const I64S: &[i64] = &[0, 1, -1, i64::MIN, i64::MIN + 1, i64::MAX];
const U64S: &[u64] = &[i64::MAX as u64 + 1, u64::MAX - 1, u64::MAX];
const F64S: &[f64] = &[0.0, -0.0, 0.1, 1.5, 1e21, 1e22, 1e300, 1e-300, 5e-324, f64::MIN_POSITIVE, f64::MAX, f64::MIN, f64::EPSILON];

fn arb_integer() -> BoxedStrategy<Number> {
    prop_oneof![
        any::<i64>().prop_map(Number::from),
        any::<u64>().prop_map(Number::from),
        select(I64S).prop_map(Number::from),
        select(U64S).prop_map(Number::from),
    ]
    .boxed()
}

fn arb_number() -> BoxedStrategy<Number> {
    prop_oneof![
        4 => arb_integer(),
        2 => any::<f64>().prop_filter_map("not finite", Number::from_f64),
        1 => (-1_000_000i32..1_000_000, 0i32..7)
            .prop_map(|(m, e)| Number::from_f64(f64::from(m) / 10f64.powi(e)).unwrap()),
        1 => select(F64S).prop_map(|f| Number::from_f64(f).unwrap()),
    ]
    .boxed()
}

/// Any `serde_json::Value`, nested a few levels.
fn arb_value() -> BoxedStrategy<Value> {
    arb_value_of(arb_number())
}

/// A `Value` with integers only: what the SDK writes (its writer refuses floats by design).
fn arb_integer_value() -> BoxedStrategy<Value> {
    arb_value_of(arb_integer())
}

fn arb_value_of(numbers: BoxedStrategy<Number>) -> BoxedStrategy<Value> {
    let leaf = prop_oneof![Just(Value::Null), any::<bool>().prop_map(Value::Bool), numbers.prop_map(Value::Number), arb_string().prop_map(Value::String),];
    leaf.prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..5).prop_map(Value::Array),
            vec((arb_string(), inner), 0..5).prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
    .boxed()
}

/// One character as a JSON string literal may spell it: itself, its short escape (`\n`, `\/`),
/// or `\uXXXX` (a surrogate pair beyond the BMP), in either case of hex digit.
fn spell(c: char, how: u8, upper: bool, literal: &mut String) {
    let short = match c {
        '"' => Some("\\\""),
        '\\' => Some("\\\\"),
        '/' => Some("\\/"),
        '\u{8}' => Some("\\b"),
        '\u{c}' => Some("\\f"),
        '\n' => Some("\\n"),
        '\r' => Some("\\r"),
        '\t' => Some("\\t"),
        _ => None,
    };
    let bare = c != '"' && c != '\\' && c >= ' ';
    if how == 0 && bare {
        literal.push(c);
        return;
    }
    if let (1, Some(s)) = (how, short) {
        literal.push_str(s);
        return;
    }
    let mut units = [0u16; 2];
    for unit in c.encode_utf16(&mut units) {
        literal.push_str(&if upper { format!("\\u{unit:04X}") } else { format!("\\u{unit:04x}") });
    }
}

/// A JSON string literal with mixed spellings, and the string it stands for.
fn arb_escaped() -> impl Strategy<Value = (String, String)> {
    vec((arb_char(), 0u8..3, any::<bool>()), 0..12).prop_map(|chars| {
        let mut literal = String::from("\"");
        let mut decoded = String::new();
        for (c, how, upper) in chars {
            spell(c, how, upper, &mut literal);
            decoded.push(c);
        }
        literal.push('"');
        (literal, decoded)
    })
}

const NUMBER_TEXTS: &[&str] = &[
    "0",
    "-0",
    "-0.0",
    "0.0",
    "1",
    "-1",
    "0.5",
    "1.0",
    "1e2",
    "1E2",
    "1e+2",
    "1e-2",
    "2e0",
    "65535",
    "65536",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "1e308",
    "1.7976931348623157e308",
    "4.9e-324",
    "1e-400",
    "123456789012345678901234567890",
];

/// A number in RFC 8259 §6's grammar, within f64's range.
fn arb_number_text() -> BoxedStrategy<String> {
    prop_oneof![
        3 => "-?(0|[1-9][0-9]{0,20})(\\.[0-9]{1,4})?([eE][-+]?[0-9]{1,2})?",
        1 => select(NUMBER_TEXTS).prop_map(str::to_owned),
    ]
    .boxed()
}

fn arb_ws() -> BoxedStrategy<String> {
    prop_oneof![4 => Just(String::new()), 1 => "[ \t\n\r]{1,3}"].boxed()
}

/// A member name's literal (a known name, or any string in mixed spellings) and the name.
fn arb_named_key() -> BoxedStrategy<(String, String)> {
    prop_oneof![
        2 => select(names()).prop_map(|n| (format!("\"{n}\""), n.to_owned())),
        1 => arb_escaped(),
    ]
    .boxed()
}

fn arb_key() -> BoxedStrategy<String> {
    arb_named_key().prop_map(|(literal, _)| literal).boxed()
}

/// A known member name, usually as itself, sometimes with escapes (`"\u0061lg"`).
fn spelled(name: &'static str) -> BoxedStrategy<String> {
    let escaped = vec((0u8..3, any::<bool>()), name.chars().count()).prop_map(move |hows| {
        let mut literal = String::from("\"");
        for (c, (how, upper)) in name.chars().zip(hows) {
            spell(c, how, upper, &mut literal);
        }
        literal.push('"');
        literal
    });
    prop_oneof![6 => Just(format!("\"{name}\"")), 1 => escaped].boxed()
}

/// A valid JSON text as a person or another library might write it: insignificant whitespace,
/// any number spelling, escapes, repeated member names.
fn arb_text() -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("false".to_owned()),
        arb_number_text(),
        arb_escaped().prop_map(|(literal, _)| literal),
    ];
    let tree = leaf.prop_recursive(4, 40, 5, |inner| {
        let item = (arb_ws(), inner, arb_ws()).prop_map(|(a, v, b)| format!("{a}{v}{b}"));
        prop_oneof![
            (vec(item.clone(), 0..5), arb_ws()).prop_map(|(items, ws)| if items.is_empty() { format!("[{ws}]") } else { format!("[{}]", items.join(",")) }),
            (vec((arb_ws(), arb_key(), arb_ws(), item), 0..5), arb_ws()).prop_map(|(members, ws)| {
                if members.is_empty() {
                    format!("{{{ws}}}")
                } else {
                    let members: Vec<String> = members.into_iter().map(|(a, k, b, v)| format!("{a}{k}{b}:{v}")).collect();
                    format!("{{{}}}", members.join(","))
                }
            }),
        ]
    });
    (arb_ws(), tree, arb_ws()).prop_map(|(a, v, b)| format!("{a}{v}{b}")).boxed()
}

// ---------------------------------------------------------------------------------------------
// Comparisons

/// `json` as serde_json's `Value`; each number read by serde_json from the text `Json` kept.
fn to_value(json: &Json) -> Value {
    match json {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(text) => serde_json::from_str(text).unwrap_or_else(|e| panic!("Json kept the number {text:?}; serde_json: {e}")),
        Json::String(s) => Value::String(s.clone()),
        Json::Array(items) => Value::Array(items.iter().map(to_value).collect()),
        // Inserted in order: a repeated name keeps its last value, as serde_json's `Value` does.
        Json::Object(members) => Value::Object(members.iter().map(|(k, v)| (k.clone(), to_value(v))).collect()),
    }
}

/// The accessors answer as `Value`'s do.
fn accessors_agree(json: &Json, value: &Value) -> Result<(), TestCaseError> {
    prop_assert_eq!(json.as_str(), value.as_str());
    prop_assert_eq!(json.as_i64(), value.as_i64(), "as_i64 of {}", json);
    prop_assert_eq!(json.as_array().map(<[Json]>::len), value.as_array().map(Vec::len));
    if let (Some(items), Some(values)) = (json.as_array(), value.as_array()) {
        for (item, value) in items.iter().zip(values) {
            accessors_agree(item, value)?;
        }
    }
    match value.as_object() {
        Some(members) => {
            for (key, member) in members {
                let found = json.get(key);
                prop_assert!(found.is_some(), "get({:?}) of {}", key, json);
                accessors_agree(found.unwrap(), member)?;
                let string = json.string(key);
                prop_assert_eq!(string.as_deref(), member.as_str());
                prop_assert_eq!(json.list(key).len(), member.as_array().map_or(0, Vec::len));
            }
            prop_assert_eq!(json.get("\u{0}not a member").is_some(), members.contains_key("\u{0}not a member"));
            prop_assert!(json.list("\u{0}not a member").is_empty(), "list of a missing member");
        }
        None => prop_assert!(json.get("").is_none() && json.get("a").is_none() && json.list("a").is_empty() && json.string("a").is_none()),
    }
    Ok(())
}

/// Equal, except that two floats may be a few ULPs apart: serde_json without `float_roundtrip`
/// parses floats "best-effort" (its Cargo feature's documentation), not correctly rounded.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => match (x.is_f64() && y.is_f64(), x.as_f64(), y.as_f64()) {
            (true, Some(x), Some(y)) => x == y || (x.signum() == y.signum() && x.to_bits().abs_diff(y.to_bits()) <= 8),
            _ => false,
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y)),
        (Value::Object(x), Value::Object(y)) => x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w))),
        _ => a == b,
    }
}

/// Every member name in `value` (at any depth), the names the wire types know, and two that
/// nothing has.
fn keys_of(value: &Value) -> Vec<String> {
    fn walk(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            Value::Object(members) => {
                for (k, v) in members {
                    out.push(k.clone());
                    walk(v, out);
                }
            }
            _ => {}
        }
    }
    let mut out: Vec<String> = names().into_iter().map(str::to_owned).collect();
    out.push("\u{0}not a member".to_owned());
    walk(value, &mut out);
    out.sort_unstable();
    out.dedup();
    out
}

/// The `Object` methods of two objects answer alike for every key, and so do the objects they
/// hand out (`object`, `objects`), `depth` levels down.
fn objects_agree(ours: &dyn Object, theirs: &dyn Object, keys: &[String], depth: usize, text: &str) -> Result<(), TestCaseError> {
    for key in keys {
        let k = key.as_str();
        prop_assert_eq!(ours.text(k), theirs.text(k), "text({:?}) in {:?}", k, text);
        prop_assert_eq!(ours.integer(k), theirs.integer(k), "integer({:?}) in {:?}", k, text);
        prop_assert_eq!(ours.boolean(k), theirs.boolean(k), "boolean({:?}) in {:?}", k, text);
        prop_assert_eq!(ours.texts(k), theirs.texts(k), "texts({:?}) in {:?}", k, text);
        let (a, b) = (ours.object(k), theirs.object(k));
        prop_assert_eq!(a.is_some(), b.is_some(), "object({:?}) in {:?}", k, text);
        let (a_items, b_items) = (ours.objects(k), theirs.objects(k));
        prop_assert_eq!(a_items.len(), b_items.len(), "objects({:?}) in {:?}", k, text);
        if depth > 0 {
            if let (Some(a), Some(b)) = (a, b) {
                objects_agree(a, b, keys, depth - 1, text)?;
            }
            for (a, b) in a_items.into_iter().zip(b_items) {
                objects_agree(a, b, keys, depth - 1, text)?;
            }
        }
    }
    Ok(())
}

/// The JWS header as a comparable tuple (`RawHeader` has no `PartialEq`).
type Header = (String, Option<String>, Option<String>);

fn header(h: RawHeader) -> Header {
    (h.alg, h.typ, h.kid)
}

/// `json` (read from `text`) and serde_json's reading of the same text answer alike through
/// `Object`, and the wire types read from them are equal: checks the `Json` adapter against
/// `Map`'s.
fn trees_read_alike(json: &Json, value: &Value, text: &str) -> Result<(), TestCaseError> {
    match value.as_object() {
        Some(map) => {
            prop_assert!(matches!(json, Json::Object(_)), "{:?}", text);
            objects_agree(json, map, &keys_of(value), 4, text)?;
            prop_assert_eq!(TokenResponse::read(json), TokenResponse::read(map), "{:?}", text);
            prop_assert_eq!(SmartConfiguration::read(json), SmartConfiguration::read(map), "{:?}", text);
            prop_assert_eq!(RawHeader::read(json).map(header), RawHeader::read(map).map(header), "{:?}", text);
        }
        // Not an object: no member at all.
        None => {
            prop_assert!(!matches!(json, Json::Object(_)), "{:?}", text);
            prop_assert_eq!(TokenResponse::read(json), Err(Missing("access_token")));
            prop_assert_eq!(SmartConfiguration::read(json), Err(Missing("token_endpoint")));
            prop_assert!(json.text("alg").is_none() && json.objects("fhirContext").is_empty());
        }
    }
    Ok(())
}

/// `text` is valid JSON: `Json` reads the tree serde_json reads, its accessors and `Object`
/// methods agree, and what it writes back serde_json reads as the same tree. Returns the written
/// text.
fn reads_like_serde_json(text: &str) -> Result<String, TestCaseError> {
    let expected: Value = serde_json::from_str(text).map_err(|e| TestCaseError::fail(format!("generator bug, {text:?}: {e}")))?;
    let json = Json::parse(text).map_err(|e| TestCaseError::fail(format!("Json::parse({text:?}) refused valid JSON: {e}")))?;
    prop_assert_eq!(&to_value(&json), &expected, "Json::parse({:?})", text);
    accessors_agree(&json, &expected)?;
    trees_read_alike(&json, &expected, text)?;

    let mut written = String::new();
    json.write(&mut written);
    prop_assert_eq!(&json.to_string(), &written, "Display and write differ");
    let reread: Value = serde_json::from_str(&written).map_err(|e| TestCaseError::fail(format!("{text:?} was written as {written:?}, not JSON: {e}")))?;
    prop_assert_eq!(&reread, &expected, "{:?} was written as {:?}", text, written);
    let again = Json::parse(&written).map_err(|e| TestCaseError::fail(format!("Json refused its own {written:?}: {e}")))?;
    prop_assert_eq!(&again, &json, "written {:?} reads as another tree", written);
    Ok(written)
}

/// A number in `json` that is infinite as an f64 (`1e400`): the one allowed difference.
fn beyond_f64(json: &Json) -> bool {
    match json {
        Json::Number(text) => text.parse::<f64>().is_ok_and(f64::is_infinite),
        Json::Array(items) => items.iter().any(beyond_f64),
        Json::Object(members) => members.iter().any(|(_, v)| beyond_f64(v)),
        _ => false,
    }
}

/// `Json::parse` and serde_json accept and refuse the same texts (and agree on what they accept,
/// down to what the wire types read from it).
fn accepted_alike(text: &str) -> Result<(), TestCaseError> {
    let ours = Json::parse(text);
    let theirs = serde_json::from_str::<Value>(text);
    match (&ours, &theirs) {
        (Ok(json), Ok(value)) => {
            prop_assert_eq!(&to_value(json), value, "Json::parse({:?})", text);
            trees_read_alike(json, value, text)?;
        }
        (Err(e), Err(_)) => prop_assert!(!e.to_string().is_empty()),
        // The documented exception: a number beyond f64, which serde_json refuses.
        (Ok(json), Err(e)) if beyond_f64(json) && e.to_string().starts_with("number out of range") => {}
        _ => prop_assert!(false, "Json::parse({:?}) = {:?}, serde_json: {:?}", text, ours, theirs),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 1. Reading valid JSON and writing it back

proptest! {
    #![proptest_config(config())]

    #[test]
    fn serde_json_output_reads_and_writes_back(value in arb_value(), pretty in any::<bool>()) {
        let text = if pretty { serde_json::to_string_pretty(&value) } else { serde_json::to_string(&value) }.unwrap();
        let written = reads_like_serde_json(&text)?;
        let reread = serde_json::from_str::<Value>(&written).unwrap();
        prop_assert!(same(&reread, &value), "{:?} was written as {:?}, read back as {:?}", value, written, reread);
    }

    #[test]
    fn escaped_strings_decode((literal, decoded) in arb_escaped()) {
        prop_assert_eq!(&serde_json::from_str::<String>(&literal).unwrap(), &decoded, "generator bug");
        let json = Json::parse(&literal).map_err(|e| TestCaseError::fail(format!("{literal:?}: {e}")))?;
        prop_assert_eq!(json.as_str(), Some(decoded.as_str()), "{:?}", literal);
        reads_like_serde_json(&literal)?;

        // The same literal as a member name and inside an array.
        let object = format!("{{\"x\":0,{literal}:[{literal}]}}");
        let json = Json::parse(&object).map_err(|e| TestCaseError::fail(format!("{object:?}: {e}")))?;
        let member = json.get(&decoded).and_then(Json::as_array).and_then(<[Json]>::first).and_then(Json::as_str);
        prop_assert_eq!(member, Some(decoded.as_str()), "{:?}", object);
        prop_assert_eq!(json.texts(&decoded), vec![decoded.clone()], "{:?}", object);
        prop_assert_eq!(json.list(&decoded).len(), 1);
        reads_like_serde_json(&object)?;
        // And as a member's value.
        let object = format!("{{{literal}:{literal}}}");
        let json = Json::parse(&object).map_err(|e| TestCaseError::fail(format!("{object:?}: {e}")))?;
        prop_assert_eq!(json.text(&decoded), Some(decoded.as_str()), "{:?}", object);
        prop_assert_eq!(json.string(&decoded), Some(decoded.clone()), "{:?}", object);
        reads_like_serde_json(&object)?;
    }

    #[test]
    fn hand_written_texts_read_and_write_back(text in arb_text()) {
        reads_like_serde_json(&text)?;
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Accepting and refusing alike

const SNIPPETS: &[&str] = &[
    "\"",
    "\\",
    ",",
    ":",
    "[",
    "]",
    "{",
    "}",
    "0",
    "01",
    "00",
    "-",
    "-0",
    ".",
    ".5",
    "5.",
    "e",
    "E+",
    "1e",
    "+",
    "+1",
    " ",
    "\t",
    "\n",
    "\r",
    "\u{0}",
    "\u{1f}",
    "\u{7f}",
    "\u{a0}",
    "\u{feff}",
    "\u{b}",
    "\u{c}",
    "\u{2028}",
    "/",
    "//",
    "/*x*/",
    "#",
    "\\u",
    "\\u12",
    "\\ud800",
    "\\udc00",
    "\\ud83d\\ude00",
    "\\x41",
    "\\'",
    "\\0",
    "\\U0041",
    "\\u+041",
    "true",
    "tru",
    "nul",
    "True",
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    "-1e400",
    "0x10",
    "é",
    "😀",
    "[]",
    "{}",
    "\"\"",
    "null",
    "'a'",
    ",]",
    ",}",
    "[1,]",
    "{\"a\":1,}",
    "\"a\":",
    "1 2",
];

#[derive(Debug, Clone)]
enum Edit {
    Delete(Index),
    Insert(Index, &'static str),
    Replace(Index, &'static str),
    Truncate(Index),
    TrailingComma(Index),
    Append(&'static str),
    Prepend(&'static str),
}

fn arb_edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        2 => any::<Index>().prop_map(Edit::Delete),
        3 => (any::<Index>(), select(SNIPPETS)).prop_map(|(i, s)| Edit::Insert(i, s)),
        2 => (any::<Index>(), select(SNIPPETS)).prop_map(|(i, s)| Edit::Replace(i, s)),
        1 => any::<Index>().prop_map(Edit::Truncate),
        1 => any::<Index>().prop_map(Edit::TrailingComma),
        1 => select(SNIPPETS).prop_map(Edit::Append),
        1 => select(SNIPPETS).prop_map(Edit::Prepend),
    ]
}

fn apply(mut text: String, edits: &[Edit]) -> String {
    for edit in edits {
        let bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
        let at = |i: &Index| bounds[i.index(bounds.len())];
        // The start and end of one character, if there is any.
        let char_at = |i: &Index| {
            let starts = &bounds[..bounds.len() - 1];
            (!starts.is_empty()).then(|| {
                let k = i.index(starts.len());
                (bounds[k], bounds[k + 1])
            })
        };
        match edit {
            Edit::Delete(i) => {
                if let Some((start, end)) = char_at(i) {
                    text.replace_range(start..end, "");
                }
            }
            Edit::Replace(i, s) => match char_at(i) {
                Some((start, end)) => text.replace_range(start..end, s),
                None => text.push_str(s),
            },
            Edit::Insert(i, s) => text.insert_str(at(i), s),
            Edit::Truncate(i) => text.truncate(at(i)),
            Edit::TrailingComma(i) => {
                let closers: Vec<usize> = text.match_indices([']', '}']).map(|(p, _)| p).collect();
                match closers.len() {
                    0 => text.push(','),
                    n => text.insert(closers[i.index(n)], ','),
                }
            }
            Edit::Append(s) => text.push_str(s),
            Edit::Prepend(s) => text.insert_str(0, s),
        }
    }
    text
}

fn arb_base() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => arb_text(),
        1 => arb_value().prop_map(|v| serde_json::to_string(&v).unwrap()),
        1 => arb_value().prop_map(|v| serde_json::to_string_pretty(&v).unwrap()),
    ]
}

const STRING_PIECES: &[&str] = &[
    "\\", "u", "U", "d800", "D800", "dc00", "DBFF", "DFFF", "d83d", "de00", "0041", "00", "e9", "+041", "\"", "n", "t", "b", "/", "'", "x", "0", "\u{0}",
    "\u{1f}", "\t", "\n", "\u{7f}", "\u{a0}", "é", "😀", "a",
];

const WORDS: &[&str] = &["inf", "-inf", "infinity", "NaN", "nan", "+1", "0x1", "1_000", "1.e3", "1e+", "--1", "+-1", "١", "１"];

/// Nesting with these openings, then `inner`, then the matching closings.
fn nest(openings: &[usize], inner: &str) -> String {
    const OPEN: [&str; 4] = ["[", "{\"k\":", "[1,", "{\"a\":1,\"b\":"];
    const CLOSE: [&str; 4] = ["]", "}", "]", "}"];
    let mut text: String = openings.iter().map(|&o| OPEN[o]).collect();
    text.push_str(inner);
    text.extend(openings.iter().rev().map(|&o| CLOSE[o]));
    text
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn mutated_texts_accepted_alike(base in arb_base(), edits in vec(arb_edit(), 1..4)) {
        accepted_alike(&apply(base, &edits))?;
    }

    #[test]
    fn number_like_texts_accepted_alike(
        number in prop_oneof![3 => "[-+0-9.eE]{1,8}", 1 => select(WORDS).prop_map(str::to_owned), 1 => arb_number_text()],
        wrap in 0u8..5,
    ) {
        let text = match wrap {
            0 => number,
            1 => format!("[{number}]"),
            2 => format!(" {number}\n"),
            3 => format!("{{\"a\":{number}}}"),
            // Where the token response reads an integer.
            _ => format!("{{\"access_token\":\"a\",\"token_type\":\"bearer\",\"expires_in\":{number}}}"),
        };
        accepted_alike(&text)?;
    }

    #[test]
    fn string_like_texts_accepted_alike(pieces in vec(select(STRING_PIECES), 0..8), as_key in any::<bool>()) {
        let literal = format!("\"{}\"", pieces.concat());
        accepted_alike(&literal)?;
        if as_key {
            accepted_alike(&format!("{{{literal}:1}}"))?;
            accepted_alike(&format!("{{\"access_token\":{literal},\"token_type\":\"bearer\"}}"))?;
        }
    }

    #[test]
    fn nesting_around_the_limit_accepted_alike(
        openings in vec(0usize..4, 118..140),
        inner in prop_oneof![Just(""), Just("0"), Just("[]"), Just("{}"), Just("[[]]")],
    ) {
        let text = nest(&openings, inner);
        accepted_alike(&text)?;
        let member = format!("{{\"access_token\":\"a\",\"token_type\":\"bearer\",\"x\":{text}}}");
        accepted_alike(&member)?;
        let context = format!("{{\"access_token\":\"a\",\"token_type\":\"bearer\",\"fhirContext\":[{{\"identifier\":{text}}}]}}");
        accepted_alike(&context)?;
    }
}

#[test]
fn nesting_limit_matches_serde_json() {
    for depth in 1..=200 {
        for shape in 0..4 {
            let text = nest(&vec![shape; depth], "");
            accepted_alike(&text).unwrap();
            accepted_alike(&nest(&vec![shape; depth], "null")).unwrap();
            // Unclosed.
            accepted_alike(&text[..text.len() / 2]).unwrap();
        }
    }
}

/// Nesting serde_json allows (127 arrays or objects deep; the 128th is "recursion limit
/// exceeded"), and no deeper.
#[test]
fn depth_127_is_the_deepest() {
    assert_eq!(json::MAX_DEPTH, 127);
    for shape in 0..4 {
        // `0` inside: with nothing, `[1,]` and `{"a":1,"b":}` would be wrong at any depth.
        let deepest = nest(&[shape; 127], "0");
        let theirs = serde_json::from_str::<Value>(&deepest).unwrap();
        let ours = Json::parse(&deepest).unwrap_or_else(|e| panic!("{deepest}: {e}"));
        assert_eq!(to_value(&ours), theirs);
        reads_like_serde_json(&deepest).unwrap();
        let deeper = nest(&[shape; 128], "0");
        let message = serde_json::from_str::<Value>(&deeper).unwrap_err().to_string();
        assert!(message.starts_with("recursion limit exceeded"), "{message}");
        let refused: json::Error = Json::parse(&deeper).expect_err("Json::parse accepts 128 levels");
        assert!(!refused.to_string().is_empty());
    }
}

/// serde_json reads `-0` as the float -0.0 (an integer path that turns negative zero into a
/// float): `as_i64` is None, and an i64 field refuses it (the readers: absent).
#[test]
fn minus_zero_reads_as_serde_json_reads_it() {
    for text in ["-0", "[-0]", "{\"n\":-0}", " -0 ", "{\"expires_in\":-0}"] {
        accepted_alike(text).unwrap();
        reads_like_serde_json(text).unwrap();
    }
    for (text, integer) in [("-0", None), ("0", Some(0)), ("-0.0", None), ("-1", Some(-1)), ("0e0", None)] {
        assert_eq!(Json::parse(text).unwrap().as_i64(), integer, "{text}");
        assert_eq!(serde_json::from_str::<Value>(text).unwrap().as_i64(), integer, "{text}");
    }
    let doc = r#"{"access_token":"a","token_type":"bearer","expires_in":-0}"#;
    let json = Json::parse(doc).unwrap();
    assert_eq!(json.integer("expires_in"), None);
    let read = TokenResponse::read(&json).unwrap();
    assert_eq!(read.expires_in, None);
    let map: Map<String, Value> = serde_json::from_str(doc).unwrap();
    assert_eq!(TokenResponse::read(&map), Ok(read));
    assert!(serde_json::from_str::<TokenResponse>(doc).is_err());
}

#[test]
fn odd_escapes_accepted_alike() {
    let cases = [
        r#""\u""#,
        r#""\u1""#,
        r#""\u12""#,
        r#""\u123""#,
        r#""\u12345""#,
        r#""\uZZZZ""#,
        r#""\u00g0""#,
        r#""\u+041""#,
        r#""\u-041""#,
        r#""\u 041""#,
        r#""\U0041""#,
        r#""\x41""#,
        r#""\0""#,
        r#""\'""#,
        r#""\ ""#,
        r#""\a""#,
        r#""\v""#,
        r#""\e""#,
        r#""\/""#,
        r#""\""#,
        r#""\\""#,
        r#""\\\""#,
        "\"\\\u{e9}\"",
        "\"\\\n\"",
        "\"\\\u{0}\"",
        r#""\u0000""#,
        r#""\u001F""#,
        r#""\u007f""#,
        r#""\u00e9""#,
        r#""\u00E9""#,
        r#""\uFEFF""#,
        r#""\uFFFF""#,
        r#""\uD800""#,
        r#""\ud800""#,
        r#""\udc00""#,
        r#""\uDFFF""#,
        r#""\ud800\u0041""#,
        r#""\ud800\ud800""#,
        r#""\udc00\ud800""#,
        r#""\ud800\udbff""#,
        r#""\ud7ff\udc00""#,
        r#""\ud83d\ude00""#,
        r#""\uD83D\uDE00""#,
        r#""\uDBFF\uDFFF""#,
        r#""\uDBFF\uE000""#,
        r#""\ud800x""#,
        r#""\ud800\""#,
        r#""\ud800\n""#,
        r#""\ud800\u""#,
        r#""\ud800\udc0""#,
        r#""\ud800\\udc00""#,
        "\"\u{0}\"",
        "\"\u{1f}\"",
        "\"\u{7f}\"",
        "\"\t\"",
        "\"\n\"",
        "\"\r\"",
        "\"\u{2028}\"",
        "\"\u{10ffff}\"",
        "\"",
        "\"\\",
        "\"\\u",
        "\"abc",
        "'abc'",
    ];
    for literal in cases {
        accepted_alike(literal).unwrap();
        accepted_alike(&format!("{{{literal}:1}}")).unwrap();
        accepted_alike(&format!("[{literal},{literal}]")).unwrap();
        accepted_alike(&format!("{{\"alg\":{literal},\"typ\":{literal}}}")).unwrap();
        let ours = Json::parse(literal).map(|j| j.as_str().map(str::to_owned));
        let theirs = serde_json::from_str::<String>(literal);
        assert_eq!(ours.as_ref().ok().cloned().flatten(), theirs.as_ref().ok().cloned(), "String from {literal:?}: {ours:?} / {theirs:?}");
    }
}

#[test]
fn documented_exception_is_only_the_f64_range() {
    // Valid JSON by RFC 8259 that serde_json refuses: Json keeps the number's text.
    for text in ["1e400", "-1e400", "[1.5e309]", "{\"a\":123e999}"] {
        let json = Json::parse(text).unwrap();
        assert!(beyond_f64(&json), "{text}");
        assert!(serde_json::from_str::<Value>(text).unwrap_err().to_string().starts_with("number out of range"), "{text}");
        let mut written = String::new();
        json.write(&mut written);
        assert_eq!(Json::parse(&written).unwrap(), json, "{text}");
    }
    // Tiny numbers are within range for both (they round to zero).
    for text in ["1e-400", "-1e-400", "0e999999"] {
        accepted_alike(text).unwrap();
        assert!(Json::parse(text).is_ok(), "{text}");
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Reading the wire types (`smart_protocol::fields`)
//
// Each generated document comes with whether serde's derive must read it exactly as the
// readers do: `fields.rs` documents one difference (a member of the wrong type reads as
// absent, where serde refuses the whole document), and serde's derive also refuses a repeated
// known member (where a `Map` and `Json::get` keep the last). A document is "comparable" when
// every known member, at every level, is of its type and appears once; the generators know it
// from what they put where, judging a number or any other text by serde_json's `Value`.

#[derive(Debug, Clone, Copy)]
enum Kind {
    Str,
    Int,
    Bool,
    Strs,
    Obj(&'static [Field]),
    Objs(&'static [Field]),
}

/// A member name, what its value should be, whether the struct requires it.
type Field = (&'static str, Kind, bool);

const CODING: &[Field] = &[
    ("system", Kind::Str, false),
    ("version", Kind::Str, false),
    ("code", Kind::Str, false),
    ("display", Kind::Str, false),
    ("userSelected", Kind::Bool, false),
];
const CODEABLE_CONCEPT: &[Field] = &[("coding", Kind::Objs(CODING), false), ("text", Kind::Str, false)];
const PERIOD: &[Field] = &[("start", Kind::Str, false), ("end", Kind::Str, false)];
/// The identifier inside an assigner (one level deep, so that the generators end).
const INNER_IDENTIFIER: &[Field] = &[("use", Kind::Str, false), ("system", Kind::Str, false), ("value", Kind::Str, false)];
const REFERENCE: &[Field] =
    &[("reference", Kind::Str, false), ("type", Kind::Str, false), ("identifier", Kind::Obj(INNER_IDENTIFIER), false), ("display", Kind::Str, false)];
const IDENTIFIER: &[Field] = &[
    ("use", Kind::Str, false),
    ("type", Kind::Obj(CODEABLE_CONCEPT), false),
    ("system", Kind::Str, false),
    ("value", Kind::Str, false),
    ("period", Kind::Obj(PERIOD), false),
    ("assigner", Kind::Obj(REFERENCE), false),
];
const FHIR_CONTEXT_ITEM: &[Field] = &[
    ("reference", Kind::Str, false),
    ("canonical", Kind::Str, false),
    ("identifier", Kind::Obj(IDENTIFIER), false),
    ("type", Kind::Str, false),
    ("role", Kind::Str, false),
];
const TOKEN_RESPONSE: &[Field] = &[
    ("access_token", Kind::Str, true),
    ("token_type", Kind::Str, true),
    ("expires_in", Kind::Int, false),
    ("scope", Kind::Str, false),
    ("refresh_token", Kind::Str, false),
    ("id_token", Kind::Str, false),
    ("patient", Kind::Str, false),
    ("encounter", Kind::Str, false),
    ("fhirContext", Kind::Objs(FHIR_CONTEXT_ITEM), false),
    ("need_patient_banner", Kind::Bool, false),
    ("smart_style_url", Kind::Str, false),
    ("intent", Kind::Str, false),
    ("tenant", Kind::Str, false),
];
const SMART_CONFIGURATION: &[Field] = &[
    ("issuer", Kind::Str, false),
    ("registration_endpoint", Kind::Str, false),
    ("user_access_brand_bundle", Kind::Str, false),
    ("jwks_uri", Kind::Str, false),
    ("authorization_endpoint", Kind::Str, false),
    ("token_endpoint", Kind::Str, true),
    ("grant_types_supported", Kind::Strs, false),
    ("token_endpoint_auth_methods_supported", Kind::Strs, false),
    ("token_endpoint_auth_signing_alg_values_supported", Kind::Strs, false),
    ("scopes_supported", Kind::Strs, false),
    ("response_types_supported", Kind::Strs, false),
    ("introspection_endpoint", Kind::Str, false),
    ("revocation_endpoint", Kind::Str, false),
    ("management_endpoint", Kind::Str, false),
    ("capabilities", Kind::Strs, false),
    ("code_challenge_methods_supported", Kind::Strs, false),
];
const JWS_HEADER: &[Field] = &[("alg", Kind::Str, true), ("typ", Kind::Str, false), ("kid", Kind::Str, false)];

/// Every member name above, and a few no struct knows.
fn names() -> Vec<&'static str> {
    fn walk(fields: &'static [Field], out: &mut Vec<&'static str>) {
        for &(name, kind, _) in fields {
            out.push(name);
            if let Kind::Obj(inner) | Kind::Objs(inner) = kind {
                walk(inner, out);
            }
        }
    }
    let mut out = vec!["unknown", "x", "", "ACCESS_TOKEN", "expiresIn", "fhircontext"];
    for fields in [TOKEN_RESPONSE, SMART_CONFIGURATION, JWS_HEADER] {
        walk(fields, &mut out);
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// A generated text and whether it is comparable (see above).
type Doc = (String, bool);

fn serde_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("generator bug, {text:?}: {e}"))
}

/// Whether serde's derive reads this value for a member of this kind as the readers do.
fn typed_as(value: &Value, kind: Kind, required: bool) -> bool {
    match (value, kind) {
        // `Option<T>` reads null as None, the readers as absent; `String` and `Vec` refuse it.
        (Value::Null, Kind::Str | Kind::Int | Kind::Bool | Kind::Obj(_)) => !required,
        (_, Kind::Str) => value.is_string(),
        (_, Kind::Int) => value.as_i64().is_some(),
        (_, Kind::Bool) => value.is_boolean(),
        (_, Kind::Strs) => value.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
        // Nothing inside that could be repeated or mistyped.
        (_, Kind::Obj(_)) => value.as_object().is_some_and(Map::is_empty),
        (_, Kind::Objs(_)) => value.as_array().is_some_and(Vec::is_empty),
    }
}

fn well_typed(kind: Kind) -> BoxedStrategy<Doc> {
    let string = prop_oneof![
        2 => arb_string().prop_map(|s| serde_json::to_string(&s).unwrap()),
        1 => arb_escaped().prop_map(|(literal, _)| literal),
    ];
    match kind {
        Kind::Str => string.prop_map(|s| (s, true)).boxed(),
        Kind::Int => prop_oneof![
            3 => any::<i64>().prop_map(|n| n.to_string()),
            3 => (-5000i64..5000).prop_map(|n| n.to_string()),
            2 => arb_number_text(),
        ]
        .prop_map(|n| {
            let typed = serde_value(&n).as_i64().is_some();
            (n, typed)
        })
        .boxed(),
        Kind::Bool => any::<bool>().prop_map(|b| (b.to_string(), true)).boxed(),
        Kind::Strs => vec(string, 0..3).prop_map(|items| (format!("[{}]", items.join(",")), true)).boxed(),
        Kind::Obj(fields) => object_text(fields),
        Kind::Objs(fields) => vec(object_text(fields), 0..3)
            .prop_map(|items| {
                let typed = items.iter().all(|(_, typed)| *typed);
                let texts: Vec<String> = items.into_iter().map(|(t, _)| t).collect();
                (format!("[{}]", texts.join(",")), typed)
            })
            .boxed(),
    }
}

/// Mostly a value of the member's type; sometimes null, a number, or any other JSON.
fn member_value(kind: Kind, required: bool) -> BoxedStrategy<Doc> {
    let other = prop_oneof![
        1 => Just("null".to_owned()),
        1 => arb_number_text(),
        2 => arb_text(),
    ]
    .prop_map(move |text| {
        let typed = typed_as(&serde_value(&text), kind, required);
        (text, typed)
    });
    prop_oneof![30 => well_typed(kind), 1 => other].boxed()
}

/// An object with these members (each maybe left out, names sometimes escaped) and a few
/// others (names the struct may know too, so repeated), in any order.
fn object_text(fields: &'static [Field]) -> BoxedStrategy<Doc> {
    let members: Vec<BoxedStrategy<Option<Doc>>> = fields
        .iter()
        .map(|&(name, kind, required)| {
            let member = (spelled(name), member_value(kind, required)).prop_map(|(key, (value, typed))| (format!("{key}:{value}"), typed));
            proptest::option::weighted(if required { 0.95 } else { 0.5 }, member).boxed()
        })
        .collect();
    let extra = vec(
        (arb_named_key(), arb_text()).prop_map(move |((literal, name), value)| {
            let known = fields.iter().any(|&(known, _, _)| known == name);
            (format!("{literal}:{value}"), !known)
        }),
        0..3,
    );
    (members, extra, arb_ws())
        .prop_flat_map(|(members, extra, ws)| {
            let members: Vec<Doc> = members.into_iter().flatten().chain(extra).collect();
            let typed = members.iter().all(|(_, typed)| *typed);
            let texts: Vec<String> = members.into_iter().map(|(t, _)| t).collect();
            (Just(texts).prop_shuffle(), Just(ws), Just(typed))
        })
        .prop_map(|(members, ws, typed)| (format!("{{{ws}{}}}", members.join(",")), typed))
        .boxed()
}

/// Whether an object member of the wire type holds an array (or an array of objects holds one):
/// serde's derive reads a struct from a sequence of its fields as well as from an object
/// (`"identifier": []` is an empty `Identifier`), where the readers see a member of the wrong
/// type (absent, or an item skipped). Such a document is never comparable; only there may serde
/// read it and the readers read something else.
fn struct_from_array(members: &Map<String, Value>, fields: &[Field]) -> bool {
    fields.iter().any(|&(name, kind, _)| match (members.get(name), kind) {
        (Some(Value::Array(_)), Kind::Obj(_)) => true,
        (Some(Value::Object(inner)), Kind::Obj(fields)) => struct_from_array(inner, fields),
        (Some(Value::Array(items)), Kind::Objs(fields)) => items.iter().any(|item| match item {
            Value::Array(_) => true,
            Value::Object(inner) => struct_from_array(inner, fields),
            _ => false,
        }),
        _ => false,
    })
}

/// `read` over the `Json` tree equals `read` over serde_json's `Map` of the same text, and
/// serde's derive (`derived`) agrees: always when it reads the document, and on Ok/Err and the
/// value when the document is comparable. Returns whether serde's derive read it.
fn reads_alike<T: PartialEq + Debug>(
    (text, comparable): &Doc,
    fields: &'static [Field],
    read: fn(&dyn Object) -> Result<T, Missing>,
    derived: fn(&str) -> Result<T, serde_json::Error>,
) -> Result<bool, TestCaseError> {
    let json = Json::parse(text).map_err(|e| TestCaseError::fail(format!("Json::parse({text:?}) refused valid JSON: {e}")))?;
    let map: Map<String, Value> = serde_json::from_str(text).map_err(|e| TestCaseError::fail(format!("generator bug, {text:?}: {e}")))?;
    let ours = read(&json);
    prop_assert_eq!(&ours, &read(&map), "read from Json and from serde_json's Map: {:?}", text);
    let theirs = derived(text);
    match &theirs {
        // serde's quirk, not a difference of the readers (see `struct_from_array`).
        Ok(_) if !*comparable && struct_from_array(&map, fields) => {}
        Ok(theirs) => prop_assert_eq!(Ok(theirs), ours.as_ref(), "serde's derive on {:?}", text),
        Err(e) => prop_assert!(!*comparable || ours.is_err(), "serde's derive refused {:?} ({}), the reader read {:?}", text, e, ours),
    }
    Ok(theirs.is_ok())
}

/// Runs `reads_alike` on `cases` documents of `fields`; at least a quarter of them must be
/// comparable and some read by serde's derive (so that the generators stay useful).
fn wire_type_reads_alike<T: PartialEq + Debug>(
    fields: &'static [Field],
    read: fn(&dyn Object) -> Result<T, Missing>,
    derived: fn(&str) -> Result<T, serde_json::Error>,
) {
    let (comparable, derived_ok) = (Cell::new(0u32), Cell::new(0u32));
    let mut runner = TestRunner::new(config());
    runner
        .run(&object_text(fields), |doc| {
            comparable.set(comparable.get() + u32::from(doc.1));
            let ok = reads_alike(&doc, fields, read, derived)?;
            derived_ok.set(derived_ok.get() + u32::from(ok));
            // The generated document also reads like serde_json's as a tree.
            reads_like_serde_json(&doc.0)?;
            Ok(())
        })
        .unwrap();
    let (comparable, derived_ok) = (comparable.get(), derived_ok.get());
    assert!(comparable >= CASES / 4, "only {comparable} of {CASES} documents comparable");
    assert!(derived_ok >= CASES / 8, "only {derived_ok} of {CASES} documents read by serde's derive");
}

#[test]
fn token_responses_read_alike() {
    wire_type_reads_alike(TOKEN_RESPONSE, TokenResponse::read, |t| serde_json::from_str::<TokenResponse>(t));
}

#[test]
fn smart_configurations_read_alike() {
    wire_type_reads_alike(SMART_CONFIGURATION, SmartConfiguration::read, |t| serde_json::from_str::<SmartConfiguration>(t));
}

#[test]
fn jws_headers_read_alike() {
    wire_type_reads_alike(JWS_HEADER, |o| RawHeader::read(o).map(header), |t| serde_json::from_str::<RawHeader>(t).map(header));
}

proptest! {
    #![proptest_config(config())]

    /// `Object for Json` answers as `Object for Map` on any object (and on any text: a tree that
    /// is not an object has no members).
    #[test]
    fn object_methods_answer_alike(
        text in prop_oneof![
            2 => object_text(TOKEN_RESPONSE).prop_map(|(t, _)| t),
            1 => object_text(FHIR_CONTEXT_ITEM).prop_map(|(t, _)| t),
            2 => arb_text(),
            1 => arb_value().prop_map(|v| serde_json::to_string(&v).unwrap()),
            1 => (arb_key(), arb_text()).prop_map(|(k, v)| format!("{{{k}:{v},{k}:[{v},{{{k}:{v}}}]}}")),
        ],
    ) {
        reads_like_serde_json(&text)?;
    }
}

#[test]
fn launch_context_reads_alike() {
    for text in [
        r#"{"access_token":"a","token_type":"Bearer","fhirContext":[{"reference":"Encounter/e1","role":"launch"},{"identifier":{"system":"urn:s","value":"v","period":{}},"type":"Encounter"}]}"#,
        r#"{"access_token":"a","token_type":"Bearer","fhirContext":[]}"#,
        r#"{"access_token":"a","token_type":"Bearer","fhirContext":[{}]}"#,
        r#"{"access_token":"a","token_type":"Bearer","expires_in":3600,"need_patient_banner":false,"patient":"p","scope":"openid"}"#,
    ] {
        let doc = (text.to_owned(), true);
        assert!(reads_alike(&doc, TOKEN_RESPONSE, TokenResponse::read, |t| { serde_json::from_str::<TokenResponse>(t) }).unwrap());
    }
    // Wrongly typed or repeated: serde refuses, the readers read alike.
    for text in [
        r#"{"access_token":"a","token_type":"Bearer","fhirContext":[7,{"reference":"R/1"}]}"#,
        r#"{"access_token":"a","token_type":"Bearer","fhirContext":{"reference":"R/1"}}"#,
        r#"{"access_token":"a","token_type":"Bearer","expires_in":1.5}"#,
        r#"{"access_token":"a","token_type":"Bearer","expires_in":"3600"}"#,
        r#"{"access_token":"a","token_type":"Bearer","expires_in":9223372036854775808}"#,
        r#"{"access_token":"a","token_type":"Bearer","access_token":"b"}"#,
        r#"{"access_token":5,"token_type":"Bearer"}"#,
        r#"{"access_token":null,"token_type":"Bearer"}"#,
        r#"{"token_type":"Bearer"}"#,
        r#"[]"#,
    ] {
        let json = Json::parse(text).unwrap();
        let value: Value = serde_json::from_str(text).unwrap();
        trees_read_alike(&json, &value, text).unwrap();
        assert!(serde_json::from_str::<TokenResponse>(text).is_err(), "{text}");
    }
    let read = TokenResponse::read(&Json::parse(r#"{"access_token":"a","token_type":"B","access_token":"b","expires_in":1e3}"#).unwrap()).unwrap();
    assert_eq!((read.access_token.as_str(), read.expires_in), ("b", None));
}

/// serde's derive reads a struct from an array of its fields; to the readers an array where an
/// object belongs is a member of the wrong type (`fields.rs`: read as absent, an item skipped).
/// Both readers agree; this is the one place where serde reads what they do not.
#[test]
fn structs_from_arrays_are_serde_s_alone() {
    let text = r#"{"access_token":"a","token_type":"B","fhirContext":[["Encounter/1"],{"identifier":["official","urn:s","v"]}]}"#;
    // The second item's identifier is no object, so the item names nothing: both drop it.
    let theirs = serde_json::from_str::<TokenResponse>(text).unwrap();
    assert_eq!(theirs.context.fhir_context.len(), 1);
    assert_eq!(theirs.context.fhir_context[0].reference.as_deref(), Some("Encounter/1"));
    let json = Json::parse(text).unwrap();
    let ours = TokenResponse::read(&json).unwrap();
    assert!(ours.context.fhir_context.is_empty());
    let map: Map<String, Value> = serde_json::from_str(text).unwrap();
    assert!(struct_from_array(&map, TOKEN_RESPONSE));
    assert_eq!(TokenResponse::read(&map), Ok(ours));
    let doc = (text.to_owned(), false);
    reads_alike(&doc, TOKEN_RESPONSE, TokenResponse::read, |t| serde_json::from_str::<TokenResponse>(t)).unwrap();
}

// ---------------------------------------------------------------------------------------------
// 4. Writing

/// `value` as a `Json` tree built with the SDK's constructors: integers through `From<i64>`,
/// every other number (beyond i64, floats) as serde_json's text of it; strings, booleans, null
/// and string arrays through their `From` impls too.
fn to_json(value: &Value) -> Json {
    match value {
        Value::Null => Json::from(None::<String>),
        Value::Bool(b) => Json::from(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Json::from(i),
            None => Json::Number(n.to_string()),
        },
        Value::String(s) if s.len() % 2 == 0 => Json::from(s.as_str()),
        Value::String(s) => Json::from(s.clone()),
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_string) => {
            Json::from(items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect::<Vec<_>>())
        }
        Value::Array(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Object(members) => Json::Object(members.iter().map(|(k, v)| (k.clone(), to_json(v))).collect()),
    }
}

/// What `json` writes, read by serde_json; `Display` and `write` write the same, and `Json`
/// reads the text back as the same tree.
fn written_and_reread(json: &Json) -> Result<(String, Value), TestCaseError> {
    let text = json.to_string();
    let mut written = String::new();
    json.write(&mut written);
    prop_assert_eq!(&text, &written, "Display and write differ");
    let value = serde_json::from_str(&text).map_err(|e| TestCaseError::fail(format!("{json:?} was written as {text:?}, not JSON: {e}")))?;
    let again = Json::parse(&text);
    prop_assert_eq!(again.as_ref(), Ok(json), "written as {:?}", text);
    Ok((text, value))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn integer_trees_written_like_serde_json(value in arb_integer_value()) {
        let (text, reread) = written_and_reread(&to_json(&value))?;
        prop_assert_eq!(&reread, &value, "written as {:?}", text);
    }

    #[test]
    fn trees_with_number_texts_written_like_serde_json(value in arb_value()) {
        let (text, reread) = written_and_reread(&to_json(&value))?;
        // The numbers are serde_json's own float texts, which it reads back best-effort.
        prop_assert!(same(&reread, &value), "{:?} was written as {:?}, read back as {:?}", value, text, reread);
    }

    #[test]
    fn objects_built_are_written_as_json(
        (name_a, name_b) in (arb_string(), arb_string()),
        s in arb_string(),
        n in prop_oneof![any::<i64>(), select(I64S)],
        maybe_text in proptest::option::of(arb_string()),
        maybe_n in proptest::option::of(any::<i64>()),
        flag in any::<bool>(),
        list in vec(arb_string(), 0..3),
        nested in arb_integer_value(),
    ) {
        let built = json::object([
            ("text", Json::from(s.as_str())),
            (name_a.as_str(), Json::from(n)),
            ("maybe", Json::from(maybe_text.clone())),
            ("n", maybe_n.into()),
            (name_b.as_str(), Json::from(list.clone())),
            ("flag", flag.into()),
            ("owned", Json::from(s.clone())),
            ("nested", to_json(&nested)),
        ]);
        // The same members inserted in order: a repeated name keeps its last value, as `get` does.
        let mut expected = Map::new();
        for (k, v) in [
            ("text", Value::from(s.as_str())),
            (name_a.as_str(), Value::from(n)),
            ("maybe", maybe_text.map_or(Value::Null, Value::from)),
            ("n", maybe_n.map_or(Value::Null, Value::from)),
            (name_b.as_str(), Value::from(list)),
            ("flag", Value::from(flag)),
            ("owned", Value::from(s)),
            ("nested", nested),
        ] {
            expected.insert(k.to_owned(), v);
        }
        let expected = Value::Object(expected);
        let (text, reread) = written_and_reread(&built)?;
        prop_assert_eq!(&reread, &expected, "written as {:?}", text);
        accessors_agree(&built, &expected)?;
        trees_read_alike(&built, &expected, &text)?;
    }
}

#[test]
fn the_session_shape_is_written_as_json() {
    let token = r#"{"access_token":"a\"\n","token_type":"Bearer","expires_in":3600,"fhirContext":[{"reference":"Patient/1"}]}"#;
    let built = json::object([
        ("serverUrl", "https://ehr.example/fhir".into()),
        ("created", Json::from(1_700_000_000_i64)),
        ("expiresAt", Json::from(None::<i64>)),
        ("scopes", Json::from(vec!["openid".to_owned(), "patient/*.rs".to_owned()])),
        ("token", Json::parse(token).unwrap()),
        ("empty", json::object([])),
    ]);
    let value: Value = serde_json::from_str(&built.to_string()).unwrap();
    assert_eq!(
        value,
        serde_json::json!({
            "serverUrl": "https://ehr.example/fhir", "created": 1_700_000_000_i64, "expiresAt": null,
            "scopes": ["openid", "patient/*.rs"], "token": serde_json::from_str::<Value>(token).unwrap(), "empty": {},
        })
    );
    let token = built.get("token").unwrap();
    assert_eq!(TokenResponse::read(token), serde_json::from_str::<TokenResponse>(&token.to_string()).map_err(|_| Missing("?")));
}

// ---------------------------------------------------------------------------------------------
// 5. Hostile input

#[test]
fn deep_nesting_is_refused_without_overflow() {
    const N: usize = 100_000;
    for (open, middle, close) in [("[", "", "]"), ("{\"a\":", "null", "}"), ("[{\"a\":", "1", "}]"), (" [ ", "", " ] ")] {
        let unclosed = open.repeat(N);
        let closed = format!("{unclosed}{middle}{}", close.repeat(N));
        for text in [&unclosed, &closed] {
            assert!(Json::parse(text).is_err());
            assert!(serde_json::from_str::<Value>(text).is_err());
        }
        let member = format!("{{\"access_token\":\"a\",\"token_type\":\"bearer\",\"x\":{closed}}}");
        assert!(Json::parse(&member).is_err());
        assert!(serde_json::from_str::<Value>(&member).is_err());
    }
}

#[test]
fn huge_texts() {
    let plain = format!("{}é😀", "a".repeat(1 << 20));
    let escaped = "\\u00e9\\ud83d\\ude00\\n\\\"".repeat(50_000);
    let numbers = vec!["-12.5e3"; 100_000].join(",");
    for text in [format!("\"{plain}\""), format!("\"{escaped}\""), format!("[{numbers}]"), format!("{{\"{plain}\":\"{escaped}\"}}")] {
        let expected: Value = serde_json::from_str(&text).unwrap();
        let json = Json::parse(&text).unwrap();
        assert!(to_value(&json) == expected);
        let mut written = String::new();
        json.write(&mut written);
        assert!(serde_json::from_str::<Value>(&written).unwrap() == expected);
        // Cut short anywhere near the end: refused by both.
        for cut in [1, 2, 3, 7] {
            let mut end = text.len() - cut;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            accepted_alike(&text[..end]).unwrap();
        }
    }
    let huge = "x".repeat(1 << 20);
    let token = format!("{{\"access_token\":\"{huge}\",\"token_type\":\"Bearer\"}}");
    let read = TokenResponse::read(&Json::parse(&token).unwrap()).unwrap();
    assert_eq!(read.access_token.len(), huge.len());
    assert_eq!(Ok(read), serde_json::from_str::<TokenResponse>(&token).map_err(|_| Missing("?")));
}
