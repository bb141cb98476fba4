//! Located nodes built straight from the YAML parser's events, for files of plain data.
//!
//! serde-saphyr turns each of the parser's events into serde calls, and each located node into a small map of its
//! value and place: for a file of 100,000 schedules that was 1.9 s of the 2.5 s that loading took. Schedule files
//! hold plain data (mappings, lists and scalars), and for those this module builds the same nodes from the events
//! of the parser serde-saphyr itself uses (granit-parser), in about a third of the time.
//!
//! It gives up on anything it is not sure to read exactly as serde-saphyr does: an anchor, an alias, a tag, a merge
//! key, a scalar that might be a number it does not parse, nesting past the limit, a second document, a syntax
//! error. The file is then read through serde-saphyr, which reads and reports all of it as before. A test holds the
//! two equal over the fuzzer's corpus.

use std::borrow::Cow;

use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle, Span, StrInput};

use super::yaml::{Key, MAX_DEPTH, Node, Pos, Value};

/// This module cannot read the file exactly as serde-saphyr would; let serde-saphyr read it.
#[derive(Debug, PartialEq)]
pub struct GiveUp;

/// The events of one document, read from its root mapping down.
pub struct Events<'a> {
    parser: Parser<'a, StrInput<'a>>,
}

impl<'a> Events<'a> {
    /// The events of `text`, past the start of its one document.
    pub fn new(text: &'a str) -> Result<Self, GiveUp> {
        if text.contains('\0') {
            return Err(GiveUp);
        }
        let mut events = Events { parser: Parser::new_from_str(text) };
        match events.next()? {
            (Event::StreamStart, _) => {}
            _ => return Err(GiveUp),
        }
        match events.next()? {
            (Event::DocumentStart(..), _) => Ok(events),
            _ => Err(GiveUp),
        }
    }

    /// The next event that is not a comment.
    fn next(&mut self) -> Result<(Event<'a>, Span), GiveUp> {
        loop {
            match self.parser.next() {
                Some(Ok((Event::Comment(..), _))) => continue,
                Some(Ok(event)) => return Ok(event),
                _ => return Err(GiveUp),
            }
        }
    }

    /// Enters the mapping that starts here: the root, or the value of a key just read.
    pub fn enter_mapping(&mut self) -> Result<(), GiveUp> {
        match self.next()? {
            (Event::MappingStart(_, 0, None), _) => Ok(()),
            _ => Err(GiveUp),
        }
    }

    /// Whether the value that starts here is a mapping (not entered) or null (read); anything else gives up.
    pub fn mapping_or_null(&mut self) -> Result<bool, GiveUp> {
        match self.parser.peek() {
            Some(Ok((Event::MappingStart(_, 0, None), _))) => Ok(true),
            Some(Ok((Event::Scalar(..), _))) => match self.node(0)?.value {
                Value::Null => Ok(false),
                _ => Err(GiveUp),
            },
            _ => Err(GiveUp),
        }
    }

    /// The next key of the mapping being read, or `None` at its end.
    pub fn key(&mut self) -> Result<Option<Key>, GiveUp> {
        let (event, span) = self.next()?;
        let node = match event {
            Event::MappingEnd => return Ok(None),
            Event::Scalar(text, style, 0, None) => Node { pos: pos(&span), value: scalar(text, style)? },
            _ => return Err(GiveUp),
        };
        let name = match node.value {
            Value::String(name) if name == "<<" => return Err(GiveUp),
            Value::String(name) => name,
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => String::new(),
            Value::Seq(_) | Value::Map(_) => return Err(GiveUp),
        };
        Ok(Some(Key { pos: node.pos, name }))
    }

    /// The whole node that starts here. `depth` is how many collections it is in; nesting near serde-saphyr's limit
    /// is left to it, to refuse or not.
    pub fn node(&mut self, depth: usize) -> Result<Node, GiveUp> {
        let (event, span) = self.next()?;
        let value = match event {
            Event::Scalar(text, style, 0, None) => scalar(text, style)?,
            Event::SequenceStart(_, 0, None) if depth + 2 < MAX_DEPTH => {
                let mut items = Vec::new();
                while !matches!(self.parser.peek(), Some(Ok((Event::SequenceEnd, _)))) {
                    items.push(self.node(depth + 1)?);
                }
                self.next()?;
                Value::Seq(items)
            }
            Event::MappingStart(_, 0, None) if depth + 2 < MAX_DEPTH => {
                let mut entries = Vec::new();
                while let Some(key) = self.key()? {
                    entries.push((key, self.node(depth + 1)?));
                }
                entries.shrink_to_fit();
                Value::Map(entries)
            }
            _ => return Err(GiveUp),
        };
        Ok(Node { pos: pos(&span), value })
    }

    /// Reads the end of the document and of the file: a second document gives up.
    pub fn finish(mut self) -> Result<(), GiveUp> {
        match (self.next()?, self.next()?) {
            ((Event::DocumentEnd, _), (Event::StreamEnd, _)) => Ok(()),
            _ => Err(GiveUp),
        }
    }
}

fn pos(span: &Span) -> Pos {
    let small = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    Pos { line: small(span.start.line()), column: small(span.start.col() + 1) }
}

/// A scalar's value, read as serde-saphyr reads an untyped one with strict booleans, where that is certain.
fn scalar(text: Cow<str>, style: ScalarStyle) -> Result<Value, GiveUp> {
    if style != ScalarStyle::Plain {
        return Ok(Value::String(text.into_owned()));
    }
    match &*text {
        "" | "~" | "null" | "Null" | "NULL" => return Ok(Value::Null),
        "true" | "True" | "TRUE" => return Ok(Value::Bool(true)),
        "false" | "False" | "FALSE" => return Ok(Value::Bool(false)),
        _ => {}
    }
    // Numbers, and words a number parser might take (inf, nan), are made of these; anything else is text.
    let number_like = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-' | '_');
    if !text.chars().all(number_like) {
        return Ok(Value::String(text.into_owned()));
    }
    let digits = text.strip_prefix('-').unwrap_or(&text);
    let decimal = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    if decimal && (digits == "0" || !digits.starts_with('0')) {
        return text.parse().map(Value::Int).map_err(|_| GiveUp);
    }
    let starts_with_letter = text.starts_with(|c: char| c.is_ascii_alphabetic());
    let word = text.to_ascii_lowercase();
    let special = ["inf", "infinity", "nan", "null", "true", "false", "yes", "no", "on", "off", "y", "n"];
    if starts_with_letter && !special.contains(&word.as_str()) {
        return Ok(Value::String(text.into_owned()));
    }
    Err(GiveUp)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A whole file; an empty one is left to serde-saphyr, as `stream` leaves it.
    fn read(text: &str) -> Result<Node, GiveUp> {
        let mut events = Events::new(text)?;
        let node = events.node(0)?;
        events.finish()?;
        (node.value != Value::Null).then_some(node).ok_or(GiveUp)
    }

    #[test]
    fn plain_data_reads_as_serde_saphyr_reads_it() {
        let text = "a: 1\nb: [x, -7, \"8\", true, ~, '']\nc:\n  d: 30 0 * * *\n  e: release/1.4\n  f: |\n    two\n    lines\n  9: k\n";
        assert_eq!(read(text), Ok(super::super::yaml::parse(text).expect("valid YAML")));
    }

    /// Every file of the fuzzer's corpus that this module reads, it reads as serde-saphyr does.
    #[test]
    fn the_fuzz_corpus_reads_as_serde_saphyr_reads_it() {
        let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/config_loader");
        let texts: Vec<String> = std::fs::read_dir(&corpus)
            .expect("the fuzzer's corpus of schedule files")
            .filter_map(|entry| std::fs::read(entry.ok()?.path()).ok())
            .filter_map(|bytes| String::from_utf8(bytes).ok())
            .collect();
        let mut composed = 0;
        for text in &texts {
            if let Ok(node) = read(text) {
                composed += 1;
                assert_eq!(Ok(node), super::super::yaml::parse(text), "{text:?}");
            }
        }
        assert!(composed > texts.len() / 5, "only {composed} of {} files composed", texts.len());
    }

    #[test]
    fn what_it_is_not_sure_of_is_given_up() {
        for text in [
            "a: &x 1\nb: *x\n",
            "a: !!str 1\n",
            "a: {<<: {b: 1}}\n",
            "a: 1.5\n",
            "a: 0x1F\n",
            "a: 012\n",
            "a: .inf\n",
            "a: nan\n",
            "a: 99999999999999999999\n",
            "a: 1\n---\nb: 2\n",
            "a: [1\n",
            "a: \"x\0\"\n",
            &format!("a: {}{}\n", "[".repeat(20), "]".repeat(20)),
        ] {
            assert_eq!(read(text), Err(GiveUp), "{text:?}");
        }
    }
}
