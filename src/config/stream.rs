//! Reading a file's schedules while the parser reads it.
//!
//! A file of 100,000 schedules parsed into one tree of located nodes takes several times its size in memory, and
//! the tree and the checked schedules were then held side by side. So the common shape of a file, a mapping with
//! `defaults` (if any) before `schedules`, is read as it is parsed: each schedule's nodes are checked into a
//! `Schedule` and dropped before the next schedule is read.
//!
//! The parser runs on a thread of its own and hands each schedule's nodes over a short channel to the caller's
//! thread, which checks them: on two CPUs, parsing and checking 100,000 schedules overlap.
//!
//! Anything else is left to the plain way, a whole tree (`config::read_file`), so that it is reported exactly as
//! before: a file that is not a mapping, `defaults` after `schedules`, a top-level key or a schedule name written
//! twice, a syntax error. Such files are rare, and reading one twice costs only time.

use std::collections::HashSet;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use serde::de::{self, DeserializeSeed, MapAccess, Visitor};

use super::compose::{Events, GiveUp};
use super::diag::Reporter;
use super::fields::{Fields, Reader};
use super::yaml::{self, Key, Node};
use crate::schedule::Schedule;

/// The parser thread's stack: the deepest file allowed takes about half of 1 MiB in a debug build (see `yaml`).
const PARSER_STACK: usize = 4 * 1024 * 1024;

/// The file's valid schedules, or `None` when it must be read the plain way; what was reported is then stale.
pub(super) fn read(text: &str, reader: &Reader, rep: &mut Reporter) -> Option<Vec<Arc<Schedule>>> {
    let (send, receive) = sync_channel(16);
    std::thread::scope(|scope| {
        let parse = move || {
            let (top_keys, names, hasher, batch) = (Vec::new(), HashSet::new(), RandomState::new(), Vec::new());
            let mut shape = Shape { top_keys, names, hasher, send, batch };
            let read = compose(text, &mut shape).is_ok() || {
                // What was handed over is read again, through serde-saphyr.
                shape.send(Item::Restart);
                shape.top_keys.clear();
                shape.names.clear();
                yaml::parse_seed(text, Root(&mut shape)).is_ok() && shape.has_schedules()
            };
            shape.flush() && read
        };
        let parser =
            std::thread::Builder::new().name("yaml".into()).stack_size(PARSER_STACK).spawn_scoped(scope, parse);
        // Without a thread, read the plain way.
        let parser = parser.ok()?;
        let schedules = check(receive, reader, rep);
        parser.join().ok()?.then_some(schedules)
    })
}

/// What the parser hands over, in file order.
enum Item {
    Defaults(Node),
    Schedule(Key, Node),
    /// `schedules:` with nothing under it: its key.
    NoSchedules(Key),
    /// Any other top-level key: `x-` keys hold anchors, the others are mistakes.
    Other(Key, Node),
    /// Forget what was handed over: the file is read again from its start.
    Restart,
}

/// Reads the file with `compose`, handing over each node as it is read. Gives up where `compose` does, and on
/// whatever the serde-saphyr way below leaves to the plain way.
fn compose(text: &str, shape: &mut Shape) -> Result<(), GiveUp> {
    let mut events = Events::new(text)?;
    events.enter_mapping()?;
    while let Some(key) = events.key()? {
        if !shape.top_key(&key.name) {
            return Err(GiveUp);
        }
        let item = match key.name.as_str() {
            "schedules" if events.mapping_or_null()? => {
                events.enter_mapping()?;
                while let Some(name) = events.key()? {
                    let body = events.node(2)?;
                    if !shape.schedule_name(&name.name) || !shape.send(Item::Schedule(name, body)) {
                        return Err(GiveUp);
                    }
                }
                continue;
            }
            "schedules" => Item::NoSchedules(key),
            "defaults" => Item::Defaults(events.node(1)?),
            _ => Item::Other(key, events.node(1)?),
        };
        if !shape.send(item) {
            return Err(GiveUp);
        }
    }
    events.finish()?;
    shape.has_schedules().then_some(()).ok_or(GiveUp)
}

/// Checks what the parser hands over until it stops: the valid schedules.
fn check(items: Receiver<Vec<Item>>, reader: &Reader, rep: &mut Reporter) -> Vec<Arc<Schedule>> {
    let file: Arc<Path> = Arc::from(rep.file);
    let reported = rep.out.len();
    let mut defaults = Fields::default();
    let mut schedules = Vec::new();
    for item in items.into_iter().flatten() {
        match item {
            Item::Restart => {
                rep.out.truncate(reported);
                defaults = Fields::default();
                schedules = Vec::new();
            }
            Item::Defaults(mut node) => {
                super::report_duplicates(&mut node, &["defaults"], rep);
                defaults = super::read_defaults(reader, &node, rep);
            }
            Item::Schedule(name, mut body) => {
                super::report_duplicates(&mut body, &["schedules", &name.name], rep);
                schedules.extend(super::read_schedule(reader, &file, &name, &body, &defaults, rep));
            }
            Item::NoSchedules(key) => {
                rep.warning(key.pos, Some("schedules"), "no schedules are defined under 'schedules:'");
            }
            Item::Other(key, mut node) => {
                super::report_duplicates(&mut node, &[&key.name], rep);
                if !key.name.starts_with("x-") {
                    super::unknown_top_level_key(&key, rep);
                }
            }
        }
    }
    schedules
}

/// What the parser knows of the file's shape so far, and where it hands the nodes.
struct Shape {
    /// The top-level keys seen, to leave a key written twice to the plain way.
    top_keys: Vec<String>,
    /// The hash of each schedule name seen: a name seen twice (or a rare collision) leaves the file to the plain
    /// way, which tells the two apart. 100,000 names as strings would take megabytes.
    names: HashSet<u64>,
    hasher: RandomState,
    send: SyncSender<Vec<Item>>,
    /// Items are handed over in batches: one at a time, waking the other thread for each took a tenth of its time.
    batch: Vec<Item>,
}

/// How many items are handed over at once.
const BATCH: usize = 64;

impl Shape {
    /// Hands `item` to the checking thread, in time: false if it has stopped.
    fn send(&mut self, item: Item) -> bool {
        self.batch.push(item);
        self.batch.len() < BATCH || self.flush()
    }

    /// Hands over the items held: false if the checking thread has stopped.
    fn flush(&mut self) -> bool {
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        batch.is_empty() || self.send.send(batch).is_ok()
    }

    fn hand_over<E: de::Error>(&mut self, item: Item) -> Result<(), E> {
        self.send(item).then_some(()).ok_or_else(leave_to_plain)
    }

    /// Notes a top-level key: false if the file must be read the plain way, for a key written twice or `defaults`
    /// after `schedules` (whose schedules were checked without them).
    fn top_key(&mut self, name: &str) -> bool {
        let twice = self.top_keys.iter().any(|k| k == name);
        let late_defaults = name == "defaults" && self.has_schedules();
        self.top_keys.push(name.to_string());
        !twice && !late_defaults
    }

    /// Notes a schedule's name: false if it was seen before (or its hash was).
    fn schedule_name(&mut self, name: &str) -> bool {
        self.names.insert(self.hasher.hash_one(name))
    }

    fn has_schedules(&self) -> bool {
        self.top_keys.iter().any(|k| k == "schedules")
    }
}

/// Stops reading, so that the file is read the plain way: the error only ends the parse, and is never shown.
fn leave_to_plain<E: de::Error>() -> E {
    E::custom("read the file the plain way")
}

/// The file's root: a mapping of `defaults`, `schedules` and `x-` keys.
struct Root<'s>(&'s mut Shape);

impl<'de> DeserializeSeed<'de> for Root<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Root<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping with 'schedules:'")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let shape = self.0;
        while let Some(key) = map.next_key::<Key>()? {
            if !shape.top_key(&key.name) {
                return Err(leave_to_plain());
            }
            match key.name.as_str() {
                "schedules" => map.next_value_seed(Schedules { shape: &mut *shape, key })?,
                "defaults" => shape.hand_over(Item::Defaults(map.next_value()?))?,
                _ => shape.hand_over(Item::Other(key, map.next_value()?))?,
            }
        }
        Ok(())
    }

    // Any other root is an error of the deserializer, and an empty file one too: both are read the plain way, which
    // knows where they start.
    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// The `schedules:` mapping, each schedule handed over as it is read.
struct Schedules<'s> {
    shape: &'s mut Shape,
    key: Key,
}

impl<'de> DeserializeSeed<'de> for Schedules<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Schedules<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping from names to schedules")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let shape = self.shape;
        while let Some(name) = map.next_key::<Key>()? {
            let body: Node = map.next_value()?;
            if !shape.schedule_name(&name.name) {
                return Err(leave_to_plain());
            }
            shape.hand_over(Item::Schedule(name, body))?;
        }
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.shape.hand_over(Item::NoSchedules(self.key))
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }

    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }

    // Anything else is an error of the deserializer; the plain way reports it at the value's place.
}
