//! Reading a file's schedules while the parser reads it.
//!
//! A file of 100,000 schedules parsed into one tree of located nodes takes several times its size in memory, and
//! the tree and the checked schedules were then held side by side. So the common shape of a file, a mapping with
//! `defaults` (if any) before `schedules`, is read as it is parsed: each schedule's nodes are checked into a
//! `Schedule` and dropped before the next schedule is read.
//!
//! Anything else is left to the plain way, a whole tree (`config::read_file`), so that it is reported exactly as
//! before: a file that is not a mapping, `defaults` after `schedules`, a top-level key or a schedule name written
//! twice, a syntax error. Such files are rare, and reading one twice costs only time.

use std::collections::HashSet;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::path::Path;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, MapAccess, Visitor};

use super::diag::Reporter;
use super::fields::{Fields, Reader};
use super::yaml::{self, Key, Node};
use crate::schedule::Schedule;

/// The file's valid schedules, or `None` when it must be read the plain way; what was reported is then stale.
pub(super) fn read(text: &str, reader: &Reader, rep: &mut Reporter) -> Option<Vec<Arc<Schedule>>> {
    let file: Arc<Path> = Arc::from(rep.file);
    let mut file_state = FileState {
        reader,
        rep,
        file,
        top_keys: Vec::new(),
        defaults: Fields::default(),
        names: HashSet::new(),
        hasher: RandomState::new(),
        schedules: Vec::new(),
    };
    match yaml::parse_seed(text, Root(&mut file_state)) {
        Ok(()) if file_state.top_keys.iter().any(|k| k == "schedules") => Some(file_state.schedules),
        _ => None,
    }
}

/// What has been read of one file so far.
struct FileState<'a, 'r> {
    reader: &'a Reader<'a>,
    rep: &'a mut Reporter<'r>,
    file: Arc<Path>,
    /// The top-level keys seen, to leave a key written twice to the plain way.
    top_keys: Vec<String>,
    defaults: Fields,
    /// The hash of each schedule name seen: a name seen twice (or a rare collision) leaves the file to the plain
    /// way, which tells the two apart. 100,000 names as strings would take megabytes.
    names: HashSet<u64>,
    hasher: RandomState,
    schedules: Vec<Arc<Schedule>>,
}

/// Stops reading, so that the file is read the plain way: the error only ends the parse, and is never shown.
fn leave_to_plain<E: de::Error>() -> E {
    E::custom("read the file the plain way")
}

/// The file's root: a mapping of `defaults`, `schedules` and `x-` keys.
struct Root<'s, 'a, 'r>(&'s mut FileState<'a, 'r>);

impl<'de> DeserializeSeed<'de> for Root<'_, '_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Root<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping with 'schedules:'")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let state = self.0;
        while let Some(key) = map.next_key::<Key>()? {
            if state.top_keys.contains(&key.name) {
                return Err(leave_to_plain());
            }
            state.top_keys.push(key.name.clone());
            match key.name.as_str() {
                "schedules" => map.next_value_seed(Schedules { state: &mut *state, key: &key })?,
                "defaults" if state.top_keys.iter().any(|k| k == "schedules") => {
                    return Err(leave_to_plain());
                }
                "defaults" => {
                    let mut node: Node = map.next_value()?;
                    super::report_duplicates(&mut node, &["defaults"], state.rep);
                    state.defaults = super::read_defaults(state.reader, &node, state.rep);
                }
                other => {
                    let mut node: Node = map.next_value()?;
                    super::report_duplicates(&mut node, &[other], state.rep);
                    if !other.starts_with("x-") {
                        super::unknown_top_level_key(&key, state.rep);
                    }
                }
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

/// The `schedules:` mapping, each schedule checked and dropped as it is read.
struct Schedules<'s, 'k, 'a, 'r> {
    state: &'s mut FileState<'a, 'r>,
    key: &'k Key,
}

impl<'de> DeserializeSeed<'de> for Schedules<'_, '_, '_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Schedules<'_, '_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping from names to schedules")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let state = self.state;
        while let Some(name) = map.next_key::<Key>()? {
            let mut body: Node = map.next_value()?;
            if !state.names.insert(state.hasher.hash_one(&name.name)) {
                return Err(leave_to_plain());
            }
            super::report_duplicates(&mut body, &["schedules", &name.name], state.rep);
            let schedule = super::read_schedule(state.reader, &state.file, &name, &body, &state.defaults, state.rep);
            state.schedules.extend(schedule);
        }
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.state.rep.warning(self.key.pos, Some("schedules"), "no schedules are defined under 'schedules:'");
        Ok(())
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }

    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }

    // Anything else is an error of the deserializer; the plain way reports it at the value's place.
}
