//! One way to read a YAML config document and report what is wrong with it, shared by every
//! part of jitca that owns a section of the config file (the policy here; the daemon's
//! settings, the CA key sources, the control channel's limits and the webhooks elsewhere).
//!
//! [`read`] turns the text into a section owner's raw structs (serde_yaml, refusing unknown
//! fields); a [`Problems`] collector then gathers every problem the owners find, each placed
//! on its line through a [`LineIndex`], and [`Problems::finish`] gives them back in line order
//! as [`ConfigErrors`], like `sshd -t`, or the warnings of a config that is good.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::duration::{format_duration, parse_duration};
use crate::locate::{LineIndex, YamlPath};
use crate::show::{one_safe_line, show};

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file.
    pub file: PathBuf,
    /// The line (from 1) the problem is on, when it is on one.
    pub line: Option<usize>,
    /// What is wrong; for a value in the file it starts with its path, like
    /// `rules[0].hosts[1]: ...`.
    pub message: String,
}

impl fmt::Display for ConfigError {
    /// `FILE:LINE: message`, or `FILE: message` when no line applies.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in a config file, in line order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    /// One problem per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        Self(vec![error])
    }
}

/// Reads the config file at `path` as text; a file that cannot be read is one problem.
pub fn read_file(path: &Path) -> Result<String, ConfigErrors> {
    std::fs::read_to_string(path).map_err(|e| {
        ConfigError {
            file: path.to_path_buf(),
            line: None,
            message: format!("cannot read the config file: {e}"),
        }
        .into()
    })
}

/// The document `text` as the raw structs `T` (an empty document is `T::default()`); `file`
/// names it in the message. serde stops at the first problem, so it is reported alone.
pub fn read<T: DeserializeOwned + Default>(
    text: &str,
    file: &Path,
    index: &LineIndex,
) -> Result<T, ConfigErrors> {
    match serde_yaml::from_str::<Option<T>>(text) {
        Ok(raw) => Ok(raw.unwrap_or_default()),
        Err(e) => Err(serde_error(&e, file, index).into()),
    }
}

/// A serde_yaml error as a [`ConfigError`]: its line, and its message without the
/// " at line L column C" that the line already says.
fn serde_error(e: &serde_yaml::Error, file: &Path, index: &LineIndex) -> ConfigError {
    let mut message = e.to_string();
    let mut line = e.location().map(|loc| {
        let suffix = format!(" at line {} column {}", loc.line(), loc.column());
        if let Some(stripped) = message.strip_suffix(&suffix) {
            message = stripped.to_string();
        }
        loc.line()
    });
    // serde_yaml puts a repeated field at the start of its mapping; name the repeat's own line.
    if let Some(field) = message
        .rsplit_once("duplicate field `")
        .and_then(|(_, rest)| rest.strip_suffix('`'))
    {
        line = index.repeated_key_line(field, line.unwrap_or(0)).or(line);
    }
    ConfigError {
        file: file.to_path_buf(),
        line,
        message: one_safe_line(&message),
    }
}

/// The problems and warnings found so far in one document, each with its line.
pub struct Problems<'a> {
    index: &'a LineIndex,
    found: Vec<(Option<usize>, String)>,
    /// Allowed, but said.
    warnings: Vec<(Option<usize>, String)>,
}

impl<'a> Problems<'a> {
    /// Nothing found yet in the document that `index` indexes.
    pub fn new(index: &'a LineIndex) -> Self {
        Self {
            index,
            found: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// The line of `path` (or of its nearest ancestor written in the file).
    pub fn line(&self, path: &YamlPath) -> Option<usize> {
        self.index.line(path)
    }

    /// A problem with the value at `path` (or where it would be written).
    pub fn at(&mut self, path: &YamlPath, message: impl fmt::Display) {
        let line = self.index.line(path);
        self.push(path, line, message);
    }

    /// A problem with the `occurrence`-th appearance of a key that a mapping repeats.
    pub fn at_nth(&mut self, path: &YamlPath, occurrence: usize, message: impl fmt::Display) {
        let line = self
            .index
            .nth_line(path, occurrence)
            .or_else(|| self.index.line(path));
        self.push(path, line, message);
    }

    fn push(&mut self, path: &YamlPath, line: Option<usize>, message: impl fmt::Display) {
        let message = if path.is_root() {
            message.to_string()
        } else {
            format!("{path}: {message}")
        };
        self.found.push((line, one_safe_line(&message)));
    }

    /// Allowed but worth saying, about the value at `path`.
    pub fn warn(&mut self, path: &YamlPath, message: impl fmt::Display) {
        let line = self.index.line(path);
        self.warnings
            .push((line, one_safe_line(&format!("warning: {path}: {message}"))));
    }

    /// Allowed but worth saying, at `line`, in the words of `message` (which names its place).
    pub fn warn_at_line(&mut self, line: Option<usize>, message: impl fmt::Display) {
        self.warnings
            .push((line, one_safe_line(&format!("warning: {message}"))));
    }

    /// A duration at `path`: readable, more than zero, at most `max`.
    pub fn duration(&mut self, text: &str, max: Duration, path: &YamlPath) -> Option<Duration> {
        match parse_duration(text) {
            Err(e) => {
                self.at(path, format_args!("cannot read {}: {e}", show(text)));
                None
            }
            Ok(d) if d.is_zero() => {
                self.at(path, "must be more than zero");
                None
            }
            Ok(d) if d > max => {
                self.at(
                    path,
                    format_args!(
                        "{} is longer than the most jitca allows ({})",
                        format_duration(d),
                        format_duration(max)
                    ),
                );
                None
            }
            Ok(d) => Some(d),
        }
    }

    /// A file path at `path`, resolved against the config file's folder `base`; empty is
    /// refused.
    pub fn file_path(&mut self, path: &YamlPath, value: &str, base: &Path) -> PathBuf {
        if value.is_empty() {
            self.at(path, "is empty; give a file path");
        }
        base.join(value)
    }

    /// The warnings, in line order, if no problem was found; else every problem, in line order
    /// (problems without a line last; within a line, in the order they were found).
    pub fn finish(self, file: &Path) -> Result<Vec<ConfigError>, ConfigErrors> {
        let placed = |mut list: Vec<(Option<usize>, String)>| -> Vec<ConfigError> {
            list.sort_by_key(|(line, _)| line.unwrap_or(usize::MAX));
            list.into_iter()
                .map(|(line, message)| ConfigError {
                    file: file.to_path_buf(),
                    line,
                    message,
                })
                .collect()
        };
        if self.found.is_empty() {
            Ok(placed(self.warnings))
        } else {
            Err(ConfigErrors(placed(self.found)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_display() {
        let with_line = ConfigError {
            file: "j.yaml".into(),
            line: Some(7),
            message: "bad".into(),
        };
        let without = ConfigError {
            file: "j.yaml".into(),
            line: None,
            message: "worse".into(),
        };
        assert_eq!(with_line.to_string(), "j.yaml:7: bad");
        assert_eq!(without.to_string(), "j.yaml: worse");
        assert_eq!(
            ConfigErrors(vec![with_line, without]).to_string(),
            "j.yaml:7: bad\nj.yaml: worse"
        );
    }

    #[test]
    fn problems_come_back_in_line_order_and_hide_the_warnings() {
        let index = LineIndex::build("a: 1\nb: 2\nc: 3\n");
        let root = YamlPath::root();
        let mut problems = Problems::new(&index);
        problems.warn(&root.key("a"), "fine");
        problems.at(&root.key("c"), "third");
        problems.at(&root.key("missing"), "nowhere");
        problems.at(&root.key("b"), "second\u{1b}");
        let errors = problems.finish(Path::new("f")).unwrap_err().to_string();
        assert_eq!(
            errors,
            "f:2: b: second\\u{1b}\nf:3: c: third\nf: missing: nowhere"
        );

        let mut problems = Problems::new(&index);
        problems.warn(&root.key("c"), "late");
        problems.warn_at_line(Some(1), "early");
        let warnings = problems.finish(Path::new("f")).unwrap();
        let warnings: Vec<String> = warnings.iter().map(ToString::to_string).collect();
        assert_eq!(warnings, ["f:1: warning: early", "f:3: warning: c: late"]);
    }
}
