//! Line numbers for places in the config file, so that `jitca check` can say where a problem is.
//!
//! serde_yaml turns the file into values but forgets where each came from; this module walks the
//! same text once with yaml-rust2's event parser and remembers the line of every mapping key and
//! sequence item, by its path (`rules[0].hosts[1]`, `users.alice.keys[0]`).

use std::collections::HashMap;
use std::fmt;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// One step of a [`YamlPath`]: a mapping key or a sequence index.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Segment {
    /// A key of a mapping.
    Key(String),
    /// A position in a sequence, from 0.
    Index(usize),
}

/// Where a value sits in the document, like `rules[0].hosts[1]`. The empty path is the document.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct YamlPath(Vec<Segment>);

impl YamlPath {
    /// The whole document.
    pub fn root() -> Self {
        Self::default()
    }

    /// This path followed by the mapping key `key`.
    pub fn key(&self, key: &str) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Key(key.to_string()));
        Self(segments)
    }

    /// This path followed by the sequence index `index`.
    pub fn index(&self, index: usize) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Index(index));
        Self(segments)
    }

    /// The path one step up, or `None` for the document.
    pub fn parent(&self) -> Option<Self> {
        let (_, rest) = self.0.split_last()?;
        Some(Self(rest.to_vec()))
    }

    /// The steps of the path.
    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    /// Whether this is the whole document.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for YamlPath {
    /// `users.alice.keys[0]`; keys that are not plain names are quoted and escaped, so a path
    /// in a message never carries control characters from the file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let plain = !key.is_empty()
                        && key
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
                    if plain {
                        f.write_str(key)?;
                    } else {
                        f.write_str(&crate::show::show(key))?;
                    }
                }
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// The line (1-based) of every key and sequence item of a YAML document.
#[derive(Clone, Debug, Default)]
pub struct LineIndex {
    /// Every line a path occurs on, in file order; more than one when a mapping repeats a key.
    lines: HashMap<YamlPath, Vec<usize>>,
    /// Each key that repeats one earlier in its mapping, with the repeat's line, in file order.
    repeats: Vec<(YamlPath, usize)>,
}

impl LineIndex {
    /// Indexes `text`. Best effort: if the text is not valid YAML, the index holds what was read
    /// before the error (serde_yaml reports the error itself).
    pub fn build(text: &str) -> Self {
        let mut walker = Walker::default();
        // An error only stops the walk early; the lines found so far stay useful.
        let _ = Parser::new_from_str(text).load(&mut walker, false);
        Self {
            lines: walker.lines,
            repeats: walker.repeats,
        }
    }

    /// The line of the first repeated mapping key named `key` at or after line `from`.
    pub fn repeated_key_line(&self, key: &str, from: usize) -> Option<usize> {
        self.repeats.iter().find_map(|(path, line)| {
            let named = matches!(path.segments().last(), Some(Segment::Key(k)) if k == key);
            (named && *line >= from).then_some(*line)
        })
    }

    /// The line of `path`, or of its nearest ancestor present in the file (for values left to
    /// their defaults); `None` if not even the top-level key is written.
    pub fn line(&self, path: &YamlPath) -> Option<usize> {
        let mut path = path.clone();
        loop {
            if let Some(&line) = self.lines.get(&path).and_then(|l| l.first()) {
                return Some(line);
            }
            path = path.parent()?;
        }
    }

    /// The line of the `occurrence`-th (from 0) appearance of exactly `path`: a mapping that
    /// repeats a key has the same path several times.
    pub fn nth_line(&self, path: &YamlPath, occurrence: usize) -> Option<usize> {
        self.lines.get(path)?.get(occurrence).copied()
    }
}

/// What the walker is inside of.
enum Frame {
    Mapping {
        path: YamlPath,
        /// The key whose value comes next, or `None` when a key comes next.
        key: Option<String>,
    },
    Sequence {
        path: YamlPath,
        next: usize,
    },
}

#[derive(Default)]
struct Walker {
    stack: Vec<Frame>,
    lines: HashMap<YamlPath, Vec<usize>>,
    repeats: Vec<(YamlPath, usize)>,
}

impl Walker {
    /// Finds the path of the node that starts now and records its line where it names a place.
    fn node_path(&mut self, line: usize) -> YamlPath {
        match self.stack.last_mut() {
            None => YamlPath::root(),
            Some(Frame::Sequence { path, next }) => {
                let item = path.index(*next);
                *next += 1;
                self.lines.entry(item.clone()).or_default().push(line);
                item
            }
            // A value: its key was recorded when the key was read.
            Some(Frame::Mapping {
                path,
                key: Some(key),
            }) => path.key(key),
            // A key that is itself a collection: nothing sensible to name it by.
            Some(Frame::Mapping { path, key: None }) => path.key("?"),
        }
    }

    /// After a complete value inside a mapping, a key comes next.
    fn value_done(&mut self) {
        if let Some(Frame::Mapping { key, .. }) = self.stack.last_mut() {
            *key = None;
        }
    }
}

impl MarkedEventReceiver for Walker {
    fn on_event(&mut self, event: Event, mark: Marker) {
        let line = mark.line();
        match event {
            Event::Scalar(value, ..) => {
                if let Some(Frame::Mapping {
                    path,
                    key: key @ None,
                }) = self.stack.last_mut()
                {
                    let entry = path.key(&value);
                    let lines = self.lines.entry(entry.clone()).or_default();
                    if !lines.is_empty() {
                        self.repeats.push((entry, line));
                    }
                    lines.push(line);
                    *key = Some(value);
                } else {
                    self.node_path(line);
                    self.value_done();
                }
            }
            Event::Alias(_) => {
                if let Some(Frame::Mapping {
                    key: key @ None, ..
                }) = self.stack.last_mut()
                {
                    // An alias used as a key: unusual; give it a name that cannot collide.
                    *key = Some("*".to_string());
                } else {
                    self.node_path(line);
                    self.value_done();
                }
            }
            Event::MappingStart(..) => {
                let path = self.node_path(line);
                self.stack.push(Frame::Mapping { path, key: None });
            }
            Event::SequenceStart(..) => {
                let path = self.node_path(line);
                self.stack.push(Frame::Sequence { path, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.value_done();
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(text: &str) -> YamlPath {
        // A tiny parser for test paths: `a.b[0].c`.
        let mut p = YamlPath::root();
        for part in text.split('.') {
            let (key, indexes) = part.split_once('[').map_or((part, ""), |(k, i)| (k, i));
            if !key.is_empty() {
                p = p.key(key);
            }
            for index in indexes.split('[').filter(|s| !s.is_empty()) {
                p = p.index(index.trim_end_matches(']').parse().unwrap());
            }
        }
        p
    }

    const DOC: &str = "\
listen: \"127.0.0.1:2222\"
users:
  alice:
    keys:
      - ssh-ed25519 AAAA one
      - ssh-ed25519 AAAA two
    groups: [dev, ops]
hosts:
  web: [web1,
        web2]
rules:
  - name: dev-web
    requesters: [dev]
    hosts:
      - web
  -
    name: second
    logins: {a: b}
";

    #[test]
    fn finds_keys_and_items() {
        let index = LineIndex::build(DOC);
        let cases = [
            ("listen", 1),
            ("users", 2),
            ("users.alice", 3),
            ("users.alice.keys", 4),
            ("users.alice.keys[0]", 5),
            ("users.alice.keys[1]", 6),
            ("users.alice.groups", 7),
            ("users.alice.groups[1]", 7),
            ("hosts.web", 9),
            ("hosts.web[0]", 9),
            ("hosts.web[1]", 10),
            ("rules", 11),
            ("rules[0]", 12),
            ("rules[0].name", 12),
            ("rules[0].requesters[0]", 13),
            ("rules[0].hosts", 14),
            ("rules[0].hosts[0]", 15),
            ("rules[1]", 17),
            ("rules[1].name", 17),
            ("rules[1].logins.a", 18),
        ];
        for (p, line) in cases {
            assert_eq!(index.line(&path(p)), Some(line), "{p}");
        }
    }

    #[test]
    fn missing_paths_fall_back_to_the_nearest_ancestor() {
        let index = LineIndex::build(DOC);
        assert_eq!(index.line(&path("rules[0].approvers")), Some(12));
        assert_eq!(index.line(&path("users.alice.keys[7]")), Some(4));
        assert_eq!(index.line(&path("users.bob")), Some(2));
        assert_eq!(index.line(&path("pending_ttl")), None);
        assert_eq!(index.line(&YamlPath::root()), None);
    }

    #[test]
    fn repeated_keys_keep_every_line() {
        let index = LineIndex::build("users:\n  a: {}\n  b: {}\n  a: {}\n");
        assert_eq!(index.nth_line(&path("users.a"), 0), Some(2));
        assert_eq!(index.nth_line(&path("users.a"), 1), Some(4));
        assert_eq!(index.nth_line(&path("users.a"), 2), None);
        assert_eq!(index.line(&path("users.a")), Some(2));
        assert_eq!(index.repeated_key_line("a", 0), Some(4));
        assert_eq!(index.repeated_key_line("a", 5), None);
        assert_eq!(index.repeated_key_line("b", 0), None);
    }

    #[test]
    fn broken_yaml_keeps_what_was_read() {
        let index = LineIndex::build("listen: x\nusers: [\n");
        assert_eq!(index.line(&path("listen")), Some(1));
        assert_eq!(LineIndex::build("").line(&path("listen")), None);
    }

    #[test]
    fn anchors_and_aliases_do_not_derail_the_walk() {
        let index = LineIndex::build("a: &x [1, 2]\nb: *x\nc: 3\n");
        assert_eq!(index.line(&path("b")), Some(2));
        assert_eq!(index.line(&path("c")), Some(3));
    }

    #[test]
    fn display() {
        assert_eq!(path("rules[0].hosts[1]").to_string(), "rules[0].hosts[1]");
        assert_eq!(
            path("users.alice.keys[0]").to_string(),
            "users.alice.keys[0]"
        );
        assert_eq!(
            YamlPath::root().key("users").key("a b\x1b").to_string(),
            "users.\"a b\\u{1b}\""
        );
        assert_eq!(
            YamlPath::root().key("users").key("a.b").to_string(),
            "users.\"a.b\""
        );
        assert_eq!(YamlPath::root().to_string(), "");
    }
}
