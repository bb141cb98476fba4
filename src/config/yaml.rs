//! A YAML document as a tree of nodes that each know their line and column.
//!
//! serde stops at the first error, but `pipecron check` must report every mistake in a file at once, each at its
//! own place. So a file is first read into this loose tree (only YAML syntax can fail here), and the schedule keys
//! are then checked one by one by `config::fields`, which collects all the errors it finds.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, Spanned};

/// Where a node or an error sits in its file: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

impl From<Location> for Pos {
    fn from(location: Location) -> Self {
        let small = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        Pos { line: small(location.line()), column: small(location.column()) }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One YAML value and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Seq(Vec<Node>),
    /// Keys in the order they were written. Duplicate keys are rejected by the parser.
    Map(Vec<(Key, Node)>),
}

/// A mapping key and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub pos: Pos,
    pub name: String,
}

impl Value {
    /// The YAML type, as a user would name it in an error message.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::String(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// A syntax error: the file is not YAML, or not one document.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// Reads one YAML document. An empty document is `Null`.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    // The default budget stops at 250,000 nodes; a file of 100,000 schedules has more. The limits that stop alias
    // bombs stay as they are.
    let mut budget = serde_saphyr::Budget::default();
    budget.max_events = 50_000_000;
    budget.max_nodes = 20_000_000;
    let options = serde_saphyr::options! {
        budget: Some(budget),
        strict_booleans: true,
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
        with_snippet: false,
    };
    match serde_saphyr::from_str_with_options::<Option<Node>>(text, options) {
        Ok(Some(node)) => Ok(node),
        Ok(None) => Ok(Node { pos: Pos { line: 1, column: 1 }, value: Value::Null }),
        Err(error) => Err(SyntaxError {
            pos: error.location().map(Pos::from).unwrap_or_default(),
            message: syntax_message(&error),
        }),
    }
}

/// The parser's own text, without the location it prefixes (we print that ourselves).
fn syntax_message(error: &serde_saphyr::Error) -> String {
    if matches!(error, serde_saphyr::Error::MultipleDocuments { .. }) {
        return "the file holds more than one YAML document; remove the '---' separator, or put each in a file of its own"
            .into();
    }
    let text = error.to_string();
    let text = text.lines().next().unwrap_or_default().trim();
    let text = text.strip_prefix("error: ").unwrap_or(text);
    match text.split_once(" at line ") {
        Some((message, _)) => message.to_string(),
        None => text.to_string(),
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Value>::deserialize(deserializer)?;
        Ok(Node { pos: spanned.referenced.into(), value: spanned.value })
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<KeyText>::deserialize(deserializer)?;
        Ok(Key { pos: spanned.referenced.into(), name: spanned.value.0 })
    }
}

/// A mapping key as text: `9: x` and `true: x` are keys too, and are read as they were written.
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Ok(KeyText(match value {
            Value::String(s) => s,
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => String::new(),
            other => return Err(de::Error::custom(format!("a key must be text, not {}", other.kind()))),
        }))
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Value::deserialize(deserializer)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        match i64::try_from(v) {
            Ok(i) => Ok(Value::Int(i)),
            Err(_) => Ok(Value::String(v.to_string())),
        }
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(node) = seq.next_element::<Node>()? {
            items.push(node);
        }
        Ok(Value::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Key>()? {
            let value = map.next_value::<Node>()?;
            entries.push((key, value));
        }
        // Most mappings in a schedule file are small; without this, each keeps room for four entries.
        entries.shrink_to_fit();
        Ok(Value::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: u32, column: u32) -> Pos {
        Pos { line, column }
    }

    #[test]
    fn nodes_know_where_they_were_written() {
        let node = parse("a:\n  b: 5\n  c: [x, true]\n").expect("valid YAML");
        let Value::Map(top) = node.value else { panic!("not a map") };
        assert_eq!(top[0].0.name, "a");
        assert_eq!(top[0].0.pos, at(1, 1));
        let Value::Map(inner) = &top[0].1.value else { panic!("not a map") };
        assert_eq!(inner[0].0.pos, at(2, 3));
        assert_eq!(inner[0].1, Node { pos: at(2, 6), value: Value::Int(5) });
        let Value::Seq(items) = &inner[1].1.value else { panic!("not a list") };
        assert_eq!(items[1].value, Value::Bool(true));
    }

    #[test]
    fn booleans_are_strict_and_quoted_scalars_are_strings() {
        let node = parse("a: yes\nb: \"5\"\nc: on\nd: ~\n").expect("valid YAML");
        let Value::Map(top) = node.value else { panic!("not a map") };
        let values: Vec<_> = top.into_iter().map(|(_, n)| n.value).collect();
        assert_eq!(
            values,
            vec![Value::String("yes".into()), Value::String("5".into()), Value::String("on".into()), Value::Null]
        );
    }

    #[test]
    fn syntax_errors_and_duplicate_keys_are_located() {
        let error = parse("a: 1\nb: [1, 2\n").expect_err("unclosed list");
        assert!(error.pos.line >= 2, "{error:?}");
        let error = parse("a: 1\na: 2\n").expect_err("duplicate key");
        assert_eq!(error.pos.line, 2, "{error:?}");
        assert!(error.message.contains("duplicate"), "{error:?}");
    }

    #[test]
    fn large_files_stay_within_the_parsers_budget() {
        let text = "- 1\n".repeat(300_000);
        let Value::Seq(items) = parse(&text).expect("300,000 nodes parse").value else { panic!("not a list") };
        assert_eq!(items.len(), 300_000);
    }

    #[test]
    fn several_documents_are_refused_in_plain_words() {
        let error = parse("---\na: 1\n---\nb: 2\n").expect_err("two documents");
        assert!(error.message.starts_with("the file holds more than one YAML document"), "{error:?}");
        assert_eq!(error.pos.line, 4, "the second document is pointed at: {error:?}");
    }

    #[test]
    fn an_empty_document_is_null() {
        assert_eq!(parse("").expect("empty is valid").value, Value::Null);
        assert_eq!(parse("# only a comment\n").expect("valid").value, Value::Null);
    }
}
