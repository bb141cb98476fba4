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
    /// Keys in the order they were written; a key written twice is here twice until `remove_duplicate_keys`.
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

/// A syntax error: the file is not text, not YAML, or not one document. The message is complete.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// The largest schedule file read: 100,000 schedules of 300 bytes each.
pub const MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;

/// How many YAML events aliases (`*name`) may replay, and anchors record, in a file of `len` bytes. Sharing keys
/// replays about as many events as the file has bytes (`<<: *common` is 12 bytes and replays a dozen events for a
/// five-key anchor); a "billion laughs" file of a few hundred bytes would replay a billion. So the bound grows with
/// the file, from 50,000 events to 2 million: a bomb is stopped in a fraction of a second, and memory stays bounded
/// whatever the file.
fn alias_events(len: usize) -> usize {
    len.saturating_mul(16).clamp(50_000, 2_000_000)
}

/// How deeply collections may nest. A schedule file needs five levels; inputs may hold lists of mappings. Reading a
/// level takes about 40 KB of stack in a debug build, and the daemon reloads on a thread of 2 MB: at 64 levels (and
/// up to 255 for `[[[...`) that thread overflowed and the process aborted. 16 levels, allowed or refused, take half.
pub(super) const MAX_DEPTH: usize = 16;

/// The file's bytes as text, or the place of the first byte that is not UTF-8.
pub fn decode(bytes: &[u8]) -> Result<&str, SyntaxError> {
    std::str::from_utf8(bytes).map_err(|error| {
        let valid = &bytes[..error.valid_up_to()];
        // The prefix is valid UTF-8 by construction.
        let valid = std::str::from_utf8(valid).unwrap_or_default();
        let bad = bytes.get(error.valid_up_to()).copied().unwrap_or_default();
        let message = if bytes.starts_with(&[0xff, 0xfe]) || bytes.starts_with(&[0xfe, 0xff]) {
            "the file is UTF-16 text (it starts with a UTF-16 byte order mark); save it as UTF-8".to_string()
        } else if error.error_len().is_none() {
            format!(
                "the file ends in the middle of a character (byte 0x{bad:02X} starts one that is cut off); save the \
                 file as UTF-8 again"
            )
        } else {
            format!(
                "the file is not UTF-8 text: byte 0x{bad:02X} here cannot start or continue a character; save the \
                 file as UTF-8 (was it written as Latin-1 or Windows-1252?)"
            )
        };
        SyntaxError { pos: position_of(valid, valid.len()), message }
    })
}

/// The line and column (in characters, both from 1) of byte `offset` of `text`.
fn position_of(text: &str, offset: usize) -> Pos {
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let small = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    Pos { line: small(before.matches('\n').count() + 1), column: small(before[line_start..].chars().count() + 1) }
}

/// Reads one YAML document. An empty document is `Null`.
///
/// Keys written twice in one mapping are kept, in order, for `remove_duplicate_keys` to report; aliases, nesting and size
/// are bounded, so that no file makes loading hang or take unbounded memory.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    let root = parse_seed(text, std::marker::PhantomData::<Option<Node>>)?;
    Ok(root.unwrap_or(Node { pos: Pos { line: 1, column: 1 }, value: Value::Null }))
}

/// Reads one YAML document through `seed`, with the same bounds and messages as `parse`: for reading a document
/// while it is parsed, without building its whole tree.
pub fn parse_seed<'de, S: de::DeserializeSeed<'de>>(text: &'de str, seed: S) -> Result<S::Value, SyntaxError> {
    if let Some(offset) = text.find('\0') {
        return Err(SyntaxError {
            pos: position_of(text, offset),
            message: "the file holds a NUL byte, which YAML does not allow; is it a binary file? A schedule file is \
                      UTF-8 text (write \\0 inside double quotes for a NUL character)"
                .into(),
        });
    }
    serde_saphyr::with_deserializer_from_str_with_options(text, options(text.len()), |de| seed.deserialize(de)).map_err(
        |error| SyntaxError {
            pos: error.location().map(Pos::from).unwrap_or_default(),
            message: format!("invalid YAML: {}", syntax_message(&error, alias_events(text.len()))),
        },
    )
}

/// The parser's options for a file of `len` bytes.
fn options(len: usize) -> serde_saphyr::Options {
    // The default budget stops at 250,000 nodes; a file of 100,000 schedules has more. The limits that stop alias
    // bombs are tightened instead.
    let mut budget = serde_saphyr::Budget::default();
    budget.max_events = 50_000_000;
    budget.max_nodes = 20_000_000;
    budget.max_depth = MAX_DEPTH;
    budget.flow_nesting_limit = MAX_DEPTH;
    budget.max_recorded_anchor_events = alias_events(len);
    // What aliases expand to is bounded by the line above and the replay limit below. The parser's default ratio of
    // aliases to anchors would refuse a file where more than 100 schedules merge one anchor (`<<: *common`), as the
    // README suggests, and its counts of aliases and anchors would refuse large files that share keys.
    budget.enforce_alias_anchor_ratio = false;
    budget.max_aliases = 1_000_000;
    budget.max_anchors = 1_000_000;
    budget.max_merge_keys = 1_000_000;
    let mut alias_limits = serde_saphyr::options::AliasLimits::default();
    alias_limits.max_total_replayed_events = alias_events(len);
    serde_saphyr::options! {
        budget: Some(budget),
        alias_limits: alias_limits,
        strict_booleans: true,
        // `!include`, `!vault` and the like do nothing here: refuse them rather than read their text as the value.
        reject_unsupported_tags: true,
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::PassThrough,
        non_finite_float_policy: serde_saphyr::options::NonFiniteFloatPolicy::PassThrough,
        with_snippet: false,
    }
}

/// `alias_limit` is the bound on what aliases replay, for the message when it is reached.
fn syntax_message(error: &serde_saphyr::Error, alias_limit: usize) -> String {
    use serde_saphyr::Error as E;
    use serde_saphyr::budget::BudgetBreach as B;
    let bomb = || {
        format!(
            "aliases (*name) here expand to more than {} YAML nodes, far more than the file holds: this looks \
             like an alias bomb (\"billion laughs\"); write the values out, or share fewer and smaller anchors",
            super::diag::thousands(alias_limit)
        )
    };
    match error {
        E::AliasError { error, .. } => return syntax_message(error, alias_limit),
        E::MultipleDocuments { .. } | E::Budget { breach: B::Documents { .. }, .. } => {
            return "the file holds more than one YAML document; remove the '---' separator, or put each in a file \
                    of its own"
                .into();
        }
        E::AliasReplayLimitExceeded { .. }
        | E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayStackDepthExceeded { .. }
        | E::AliasReplayCounterOverflow { .. } => return bomb(),
        E::Budget { breach, .. } => {
            return match breach {
                B::Aliases { .. }
                | B::Anchors { .. }
                | B::AliasAnchorRatio { .. }
                | B::RecordedAnchorEvents { .. }
                | B::RecordedAnchorBytes { .. }
                | B::MergeKeys { .. } => bomb(),
                B::Depth { .. } => format!(
                    "mappings and lists nest more than {MAX_DEPTH} levels deep here; a schedule file needs a handful"
                ),
                B::Events { .. } | B::Nodes { .. } | B::ScalarBytes { .. } | B::InputBytes { .. } => {
                    "the file is too large to load; split the schedules over several files".into()
                }
                _ => "the file exceeds a limit of the YAML parser here; simplify it".into(),
            };
        }
        E::DuplicateMappingKey { key, .. } => {
            let key = key.as_deref().map(|k| format!(" '{}'", super::diag::clip(k))).unwrap_or_default();
            return format!("the key{key} is written twice in one mapping; keep one");
        }
        _ => {}
    }
    let text = error.to_string();
    let text = text.lines().next().unwrap_or_default().trim();
    let text = text.strip_prefix("error: ").unwrap_or(text);
    let text = match text.split_once(" at line ") {
        Some((message, _)) => message,
        None => text,
    };
    match text {
        "recursion limit exceeded" => {
            format!("brackets nest more than {MAX_DEPTH} levels deep here ([[[...); a schedule file needs a handful")
        }
        "simple key expected ':'" => {
            "expected ':' after this key (a key on one line is at most 1,024 characters)".into()
        }
        "mapping values are not allowed in this context" => "a ':' here starts a mapping where none can start: \
                                                             quote a value that holds ': ', and keep a key on one \
                                                             line and under 1,024 characters"
            .into(),
        "alias references unknown anchor" => {
            "this alias (*name) refers to no anchor: define it above with &name, or check the spelling".into()
        }
        tabs if tabs.starts_with("tabs disallowed") => {
            "a tab here: YAML indents with spaces only; replace the tab with spaces".into()
        }
        other => match other.strip_prefix("unsupported tag ") {
            Some(tag) => format!(
                "the tag {} is not supported: pipecron reads plain YAML values; remove it (write ${{VAR}} to read \
                 a value from the environment)",
                super::diag::clip(tag)
            ),
            None => other.to_string(),
        },
    }
}

/// A key written more than once in one mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Duplicate {
    /// The keys from the root to the repeated key, the repeated key last.
    pub path: Vec<String>,
    pub pos: Pos,
    /// Where the key was first written.
    pub first: Pos,
}

/// Removes every repeated key from every mapping under `node`, keeping the first, and returns where each was.
/// YAML forbids them, and the parser would report only the first and refuse the whole file.
pub fn remove_duplicate_keys(node: &mut Node) -> Vec<Duplicate> {
    let mut found = Vec::new();
    let mut path = Vec::new();
    walk(node, &mut path, &mut found);
    found
}

/// `path` holds the keys above `node`, borrowed: a path is copied only for a key that is repeated.
fn walk<'a>(node: &'a mut Node, path: &mut Vec<&'a str>, found: &mut Vec<Duplicate>) {
    match &mut node.value {
        Value::Seq(items) => items.iter_mut().for_each(|item| walk(item, path, found)),
        Value::Map(entries) => {
            let repeated = repeated_keys(entries);
            if !repeated.is_empty() {
                for &(index, first) in &repeated {
                    let mut at: Vec<String> = path.iter().map(|k| k.to_string()).collect();
                    at.push(entries[index].0.name.clone());
                    found.push(Duplicate { path: at, pos: entries[index].0.pos, first: entries[first].0.pos });
                }
                let mut index = 0;
                entries.retain(|_| {
                    index += 1;
                    repeated.binary_search_by_key(&(index - 1), |(i, _)| *i).is_err()
                });
            }
            for (key, value) in entries.iter_mut() {
                path.push(&key.name);
                walk(value, path, found);
                path.pop();
            }
        }
        _ => {}
    }
}

/// The index of each entry whose key an earlier entry already has, with that earlier entry's index, in order.
fn repeated_keys(entries: &[(Key, Node)]) -> Vec<(usize, usize)> {
    if entries.len() < 2 {
        return Vec::new();
    }
    // Sorting indices (4 bytes each) rather than building a map keeps a 100,000-schedule file's peak low.
    let mut order: Vec<u32> = (0..entries.len()).map(|i| u32::try_from(i).unwrap_or(u32::MAX)).collect();
    order.sort_by(|a, b| entries[*a as usize].0.name.cmp(&entries[*b as usize].0.name));
    let mut repeated = Vec::new();
    for run in order.chunk_by(|a, b| entries[*a as usize].0.name == entries[*b as usize].0.name) {
        // The sort is stable: the first of a run was written first.
        repeated.extend(run[1..].iter().map(|i| (*i as usize, run[0] as usize)));
    }
    repeated.sort_unstable();
    repeated
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
    fn syntax_errors_are_located() {
        let error = parse("a: 1\nb: [1, 2\n").expect_err("unclosed list");
        assert!(error.pos.line >= 2, "{error:?}");
    }

    #[test]
    fn duplicate_keys_at_every_level_are_found_and_the_first_kept() {
        let text = "a: 1\nm:\n  x: 1\n  y: [{k: 1, k: 2}]\n  x: 2\na: 3\n\"a\": 4\n";
        let mut node = parse(text).expect("duplicates are kept for the loader to report");
        let found = remove_duplicate_keys(&mut node);
        let paths: Vec<(String, Pos, Pos)> = found.into_iter().map(|d| (d.path.join("."), d.pos, d.first)).collect();
        assert_eq!(
            paths,
            [
                ("a".to_string(), at(6, 1), at(1, 1)),
                ("a".to_string(), at(7, 1), at(1, 1)),
                ("m.x".to_string(), at(5, 3), at(3, 3)),
                ("m.y.k".to_string(), at(4, 14), at(4, 8)),
            ]
        );
        let Value::Map(top) = &node.value else { panic!("not a map") };
        assert_eq!(top.len(), 2, "{top:?}");
        assert_eq!(top[0].1.value, Value::Int(1), "the first is kept");
    }

    #[test]
    fn keys_that_read_the_same_are_duplicates() {
        let mut node = parse("1: a\n\"1\": b\n").expect("valid YAML");
        let found = remove_duplicate_keys(&mut node);
        assert_eq!(found.len(), 1, "{found:?}");
    }

    #[test]
    fn a_merged_key_overridden_in_place_is_no_duplicate() {
        let text = "x: &x {a: 1, b: 2}\ny:\n  <<: *x\n  a: 3\n";
        let mut node = parse(text).expect("valid YAML");
        assert_eq!(remove_duplicate_keys(&mut node), vec![]);
    }

    #[test]
    fn bytes_that_are_not_utf8_are_located() {
        let error = decode(b"a: 1\nb: caf\xe9\n").expect_err("Latin-1");
        assert_eq!(error.pos, at(2, 7));
        assert!(error.message.contains("byte 0xE9"), "{error:?}");
        // Columns count characters, as the parser's do.
        let error =
            decode("a: 1\nb: \u{e9}t\u{e9} ".as_bytes().iter().copied().chain([0xff]).collect::<Vec<_>>().as_slice())
                .expect_err("a stray byte");
        assert_eq!(error.pos, at(2, 8));
        assert_eq!(decode(b"a: 1\n"), Ok("a: 1\n"));
    }

    #[test]
    fn a_nul_byte_is_located() {
        let error = parse("a: 1\nb: x\0y\n").expect_err("NUL");
        assert_eq!(error.pos, at(2, 5));
        assert!(error.message.contains("NUL byte"), "{error:?}");
    }

    #[test]
    fn alias_bombs_are_refused_fast_in_plain_words() {
        let mut text = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..10 {
            text.push_str(&format!("a{i}: &a{i} [{}]\n", vec![format!("*a{}", i - 1); 10].join(", ")));
        }
        let started = std::time::Instant::now();
        let error = parse(&text).expect_err("a billion nodes");
        assert!(error.message.contains("alias bomb"), "{error:?}");
        assert!(error.pos.line > 1, "{error:?}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
    }

    #[test]
    fn many_schedules_may_merge_one_anchor() {
        let mut text = String::from("x: &c {gitlab: g, project: 9, ref: main}\nschedules:\n");
        for i in 0..2_000 {
            text.push_str(&format!("  s{i}:\n    <<: *c\n    cron: x\n"));
        }
        parse(&text).expect("2,000 merges of one anchor are no bomb");
    }

    #[test]
    fn deep_nesting_is_refused_in_plain_words() {
        let flow = format!("a: {}{}\n", "[".repeat(10_000), "]".repeat(10_000));
        let error = parse(&flow).expect_err("too deep");
        assert!(error.message.contains("nest more than 16 levels"), "{error:?}");
        let block: String = (0..200).map(|i| format!("{}k{i}:\n", "  ".repeat(i))).collect();
        let error = parse(&block).expect_err("too deep");
        assert!(error.message.contains("more than 16 levels"), "{error:?}");
        assert_eq!(error.pos.line, 17, "{error:?}");
    }

    #[test]
    fn the_deepest_file_allowed_parses_on_a_small_stack() {
        // The daemon reloads on a blocking thread of 2 MB; in a debug build a level of nesting takes 32 KB of stack.
        // Half of that is enough, for the deepest file allowed and for one refused.
        let run = |depth: usize| {
            let flow = format!("a: {}{}\n", "[".repeat(depth), "]".repeat(depth));
            let block: String = (0..depth).map(|i| format!("{}k{i}:\n", "  ".repeat(i))).collect();
            let small = std::thread::Builder::new().stack_size(1024 * 1024);
            let parse_all = move || {
                let parsed = [parse(&flow), parse(&block)];
                parsed.into_iter().map(|p| p.map(|mut node| remove_duplicate_keys(&mut node).len())).collect()
            };
            small.spawn(parse_all).expect("a thread").join().expect("no stack overflow")
        };
        let allowed: Vec<Result<usize, SyntaxError>> = run(MAX_DEPTH - 1);
        assert_eq!(allowed, [Ok(0), Ok(0)]);
        assert!(run(MAX_DEPTH + 10).iter().all(|p| p.as_ref().is_err_and(|e| e.message.contains("nest more than"))));
    }

    #[test]
    fn infinite_numbers_reach_the_checks() {
        let node = parse("a: .inf\nb: 1e400\n").expect("valid YAML");
        let Value::Map(top) = node.value else { panic!("not a map") };
        assert_eq!(top[0].1.value, Value::Float(f64::INFINITY));
        assert_eq!(top[1].1.value, Value::Float(f64::INFINITY));
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
        assert!(error.message.starts_with("invalid YAML: the file holds more than one YAML document"), "{error:?}");
        assert_eq!(error.pos.line, 4, "the second document is pointed at: {error:?}");
    }

    #[test]
    fn an_empty_document_is_null() {
        assert_eq!(parse("").expect("empty is valid").value, Value::Null);
        assert_eq!(parse("# only a comment\n").expect("valid").value, Value::Null);
    }
}
