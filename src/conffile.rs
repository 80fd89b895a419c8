//! Reading TOML config files into typed structs, with errors that fit on one line and say where.
//!
//! Every config struct in netforge is `#[serde(deny_unknown_fields)]` (never `flatten`, which
//! silently disables it). Parse errors carry the file and toml's own line/column; validation
//! errors, and errors found later about a key of the file ([`Origin`]), carry the file, the
//! line/column where the key is written and the key path (`lb.toml:9:11: backend[2].address:`).

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::Deserialize;
use toml::Spanned;

/// Label used in errors about a command-line flag (`command line: --read-size: ...`).
pub const FLAGS_LABEL: &str = "command line";

/// One-line config error: `FILE:LINE:COL: message` or `FILE: key.path: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: PathBuf,
    /// 1-based line and column, when the error points into the text.
    pub at: Option<(usize, usize)>,
    /// Dotted key path (`listener[0].address`), when the error concerns a key.
    pub key: Option<String>,
    pub msg: String,
}

impl ConfigError {
    /// A validation error about one key.
    pub fn key(path: &Path, key: impl Into<String>, msg: impl Into<String>) -> ConfigError {
        ConfigError { path: path.to_path_buf(), at: None, key: Some(key.into()), msg: msg.into() }
    }

    /// An error about the file as a whole (unreadable, empty of what is required).
    pub fn file(path: &Path, msg: impl Into<String>) -> ConfigError {
        ConfigError { path: path.to_path_buf(), at: None, key: None, msg: msg.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some((line, col)) = self.at {
            write!(f, ":{line}:{col}")?;
        }
        write!(f, ": ")?;
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        write!(f, "{}", self.msg)
    }
}

impl std::error::Error for ConfigError {}

/// The file a config was read from, with its text: kept with the validated config so that an
/// error found after loading (an address in use at start-up, a clash with a flag) names
/// `file:line:col: key.path:` as every error found while reading does. Configs read from the
/// same file are equal whatever its text (the text only places errors).
#[derive(Clone)]
pub struct Origin {
    path: PathBuf,
    text: std::sync::Arc<str>,
}

impl Origin {
    pub fn new(path: &Path, text: &str) -> Origin {
        Origin { path: path.to_path_buf(), text: text.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// 1-based line and column where `key`'s value is written (`listener[0].address`,
    /// `groups."a b".balance`); for a key not written (left at its default, or a table that
    /// is missing), the end of the file, where the missing key would go.
    pub fn at(&self, key: &str) -> (usize, usize) {
        let spans = Spans::of(&self.text);
        // `groups."a b"` is written `[groups."a b"]`; the spans name it without the quotes.
        let at = spans.value_of(key).or_else(|| spans.value_of(&key.replace('"', "")));
        line_col(&self.text, at.map_or(spans.end(), |r| r.start))
    }

    /// Whether the file writes `key`.
    pub fn written(&self, key: &str) -> bool {
        let spans = Spans::of(&self.text);
        spans.value_of(key).or_else(|| spans.value_of(&key.replace('"', ""))).is_some()
    }

    /// An error about `key`, placed where it is written (see [`Origin::at`]).
    pub fn err(&self, key: impl Into<String>, msg: impl Into<String>) -> ConfigError {
        let key: String = key.into();
        let msg: String = msg.into();
        let at = self.at(&key);
        let mut e = ConfigError::key(&self.path, key, msg.replace(['\n', '\r'], " "));
        e.at = Some(at);
        e
    }

    /// `file:line:col: key`, naming a key as an error about it begins (for errors built
    /// elsewhere, such as a bind failure).
    pub fn name(&self, key: &str) -> String {
        let (line, col) = self.at(key);
        format!("{}:{line}:{col}: {key}", self.path.display())
    }
}

impl PartialEq for Origin {
    fn eq(&self, other: &Origin) -> bool {
        self.path == other.path
    }
}

impl Eq for Origin {}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Origin").field(&self.path).finish()
    }
}

/// How an error names a key, by where its value came from (`--listen`, `$PORT`,
/// `bp-server.toml:1:10: listen`): kept with a config for errors found after loading (a bind
/// failure). Not part of the config's value: configs equal in every value are equal whatever
/// names their keys.
#[derive(Clone, Debug, Default)]
pub struct KeyName(pub String);

impl KeyName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl PartialEq for KeyName {
    fn eq(&self, _: &KeyName) -> bool {
        true
    }
}

impl Eq for KeyName {}

/// Largest config file read: far above any real one, small enough to read whole.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// Reads and parses `path`.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<(T, String), ConfigError> {
    let text = read(path)?;
    let value = parse(path, &text)?;
    Ok((value, text))
}

/// Why [`read_regular`] could not read a file whole; each caller words it.
#[derive(Debug)]
pub enum ReadFailure {
    Open(std::io::Error),
    /// What it is instead: "a directory", "a FIFO", ...
    NotRegular(&'static str),
    /// Its size (or more than the limit, when it grew while read).
    TooBig(u64),
    Read(std::io::Error),
}

/// Reads `path` whole: only a regular file of at most `max` bytes. It is opened with
/// O_NONBLOCK, so a FIFO without a writer cannot block the open, and checked with fstat on the
/// open descriptor before a byte is read (a device, FIFO, socket or directory is refused); the
/// read itself is bounded too, in case the file grows meanwhile.
pub fn read_regular(path: &Path, max: u64) -> Result<Vec<u8>, ReadFailure> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file =
        std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path).map_err(ReadFailure::Open)?;
    let meta = file.metadata().map_err(ReadFailure::Read)?;
    let kind = meta.file_type();
    if !kind.is_file() {
        return Err(ReadFailure::NotRegular(if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() {
            "a character device"
        } else if kind.is_block_device() {
            "a block device"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        }));
    }
    if meta.len() > max {
        return Err(ReadFailure::TooBig(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1).read_to_end(&mut bytes).map_err(ReadFailure::Read)?;
    if bytes.len() as u64 > max {
        return Err(ReadFailure::TooBig(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Reads `path` as UTF-8 text: only a regular file of at most [`MAX_CONFIG_BYTES`] (see
/// [`read_regular`]).
pub fn read(path: &Path) -> Result<String, ConfigError> {
    let bytes = read_regular(path, MAX_CONFIG_BYTES).map_err(|f| {
        let msg = match f {
            ReadFailure::Open(e) | ReadFailure::Read(e) => format!("cannot read: {e}"),
            ReadFailure::NotRegular(what) => format!("cannot read: {what}; a config file must be a regular file"),
            ReadFailure::TooBig(_) => format!("cannot read: larger than the {MAX_CONFIG_BYTES}-byte (16 MiB) limit"),
        };
        ConfigError::file(path, msg)
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let ok = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        // The valid prefix is text, so line_col works on it.
        let at = line_col(std::str::from_utf8(ok).unwrap_or(""), ok.len());
        ConfigError { path: path.to_path_buf(), at: Some(at), key: None, msg: "not UTF-8 text".into() }
    })
}

/// Parses `text` (read from `path`) as TOML into `T`, mapping toml's error to one line that
/// names the key the error is about, when there is one.
pub fn parse<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let at = e.span().map(|span| line_col(text, span.start));
        let key = e.span().and_then(|span| {
            Spans::of(text).key_at(span.start).map(str::to_string).or_else(|| key_by_scan(text, span.start))
        });
        // toml's message may span several lines (it adds a caret snippet in Display); the
        // `message()` accessor is the bare one-line reason.
        let msg = e.message().lines().next().unwrap_or("invalid TOML").trim();
        ConfigError { path: path.to_path_buf(), at, key, msg: integer_words(msg) }
    })
}

/// serde and toml word an integer outside its key's type in Rust's terms (`invalid value:
/// integer `-5`, expected usize`, `number too large to fit in target type`); say it in the
/// file's terms instead. The key's own range, when narrower, is named by its validation once
/// the value fits the type.
fn integer_words(msg: &str) -> String {
    if msg.starts_with("number too large to fit in target type") {
        return format!("integer too large: TOML integers are {}..={}", i64::MIN, i64::MAX);
    }
    let parsed = msg
        .strip_prefix("invalid value: integer `")
        .and_then(|rest| rest.split_once("`, expected "))
        .and_then(|(n, ty)| Some((n.parse::<i128>().ok()?, ty)));
    let max: i128 = match parsed.map(|(_, ty)| ty) {
        Some("u8") => u8::MAX.into(),
        Some("u16") => u16::MAX.into(),
        Some("u32") => u32::MAX.into(),
        Some("u64" | "usize") => u64::MAX.into(),
        _ => return msg.to_string(),
    };
    match parsed {
        Some((n, _)) if n < 0 => format!("{n} is negative: this key takes a whole number from 0"),
        Some((n, _)) => format!("{n} is too large: this key takes at most {max}"),
        None => msg.to_string(),
    }
}

/// Where each key of a TOML document is written: its dotted path (`listener[0].address`) with
/// the byte spans of the key and of its value, as toml's own parser reports them (a document
/// that does not parse has none).
#[derive(Debug, Default)]
pub struct Spans {
    entries: Vec<Entry>,
    len: usize,
}

#[derive(Debug)]
struct Entry {
    path: String,
    key: Range<usize>,
    value: Range<usize>,
}

impl Spans {
    pub fn of(text: &str) -> Spans {
        let mut s = Spans { entries: Vec::new(), len: text.len() };
        if let Ok(root) = toml::from_str::<Node>(text) {
            s.walk("", root);
        }
        s
    }

    /// Records the entries below `node` and returns the span they cover (for a table that only a
    /// dotted header makes, which toml gives no span of its own).
    fn walk(&mut self, prefix: &str, node: Node) -> Option<Range<usize>> {
        let mut covered: Option<Range<usize>> = None;
        let mut add = |r: &Range<usize>| {
            covered = Some(match covered.take() {
                None => r.clone(),
                Some(c) => c.start.min(r.start)..c.end.max(r.end),
            })
        };
        match node {
            Node::Table(entries) => {
                for (key, value) in entries {
                    let path = if prefix.is_empty() { key.name.clone() } else { format!("{prefix}.{}", key.name) };
                    let at = self.entries.len();
                    self.entries.push(Entry { path: path.clone(), key: 0..0, value: 0..0 });
                    let inner = self.walk(&path, value.node);
                    let span = value.span.or(inner).or(key.span.clone()).unwrap_or(0..0);
                    // A key with no span of its own is located by its value.
                    self.entries[at].key = key.span.unwrap_or_else(|| span.clone());
                    self.entries[at].value = span.clone();
                    add(&span);
                }
            }
            Node::Array(items) => {
                for (i, item) in items.into_iter().enumerate() {
                    let path = format!("{prefix}[{i}]");
                    let at = self.entries.len();
                    self.entries.push(Entry { path: path.clone(), key: 0..0, value: 0..0 });
                    let inner = self.walk(&path, item.node);
                    let span = item.span.or(inner).unwrap_or(0..0);
                    self.entries[at].key = span.clone();
                    self.entries[at].value = span.clone();
                    add(&span);
                }
            }
            Node::Leaf => {}
        }
        covered
    }

    /// The key whose name or value covers byte `pos`: the key whose name is there, else the
    /// innermost value around it. Entries are recorded parent first, so among values of equal
    /// span the last recorded is the innermost: the only element of an array of tables spans
    /// exactly what the array does, and an error about it (a missing `address`) names
    /// `listener[0]`, not `listener`.
    pub fn key_at(&self, pos: usize) -> Option<&str> {
        let covers = |r: &Range<usize>| r.start <= pos && (pos < r.end || r.is_empty() && pos == r.start);
        if let Some(e) = self.entries.iter().rev().find(|e| covers(&e.key) && e.key != e.value) {
            return Some(&e.path);
        }
        // `min_by_key` keeps the first of equal minima: iterate innermost first.
        self.entries.iter().rev().filter(|e| covers(&e.value)).min_by_key(|e| e.value.len()).map(|e| e.path.as_str())
    }

    /// Byte span of the value of `path` (`timeouts.connect`, `backend[1].weight`), if written.
    pub fn value_of(&self, path: &str) -> Option<Range<usize>> {
        self.entries.iter().find(|e| e.path == path).map(|e| e.value.clone())
    }

    /// Length of the text, for errors about something missing (they point at its end).
    pub fn end(&self) -> usize {
        self.len
    }
}

/// The key path of the `key = value` line holding byte `pos`, found by reading the text: for
/// a document toml cannot parse (a number too large, a bad escape), where no spans exist.
/// Handles `[table]` and `[[array]]` headers (counting the array's entries) and dotted keys;
/// `None` for a line that is no `key = value`, such as a broken header.
fn key_by_scan(text: &str, pos: usize) -> Option<String> {
    let pos = pos.min(text.len());
    let line_start = text[..pos].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    let bare =
        |k: &str| !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    let (key, _) = line.split_once('=')?;
    let key: String = key.split('.').map(str::trim).collect::<Vec<_>>().join(".");
    if !bare(&key) {
        return None;
    }
    // The last header above the line, and for an array of tables how many came before it.
    let mut table: Option<String> = None;
    let mut seen: Vec<(String, usize)> = Vec::new();
    for l in text[..line_start].lines().map(str::trim) {
        let (name, array) = if let Some(n) = l.strip_prefix("[[").and_then(|r| r.split_once("]]")) {
            (n.0.trim().to_string(), true)
        } else if let Some(n) = l.strip_prefix('[').and_then(|r| r.split_once(']')) {
            (n.0.trim().to_string(), false)
        } else {
            continue;
        };
        if array {
            let n = match seen.iter_mut().find(|(k, _)| *k == name) {
                Some((_, n)) => {
                    *n += 1;
                    *n
                }
                None => {
                    seen.push((name.clone(), 0));
                    0
                }
            };
            table = Some(format!("{name}[{n}]"));
        } else {
            table = Some(name);
        }
    }
    Some(match table {
        Some(t) => format!("{t}.{key}"),
        None => key,
    })
}

/// Any TOML value, keeping the spans of keys and values where toml gives them.
enum Node {
    Table(Vec<(Key, Val)>),
    Array(Vec<Val>),
    Leaf,
}

/// serde_spanned's protocol (toml 0.8): a struct of this name and these fields asks toml for a
/// span, which it hands over as a map (start, end, value) when it has one, and as the bare
/// value when it has none: the name of a table only a dotted header makes (`groups` in
/// `[groups.web]`) and that table itself. `Spanned<T>` refuses the bare form (a whole document
/// would lose its spans); [`Key`] and [`Val`] take both.
const SPANNED: &str = "$__serde_spanned_private_Spanned";
const SPANNED_START: &str = "$__serde_spanned_private_start";
const SPANNED_END: &str = "$__serde_spanned_private_end";
const SPANNED_FIELDS: &[&str] = &[SPANNED_START, SPANNED_END, "$__serde_spanned_private_value"];

/// A table key and, where toml knows it, its span.
struct Key {
    name: String,
    span: Option<Range<usize>>,
}

/// A value and, where toml knows it, its span.
struct Val {
    node: Node,
    span: Option<Range<usize>>,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(Key { name: v.to_string(), span: None })
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Key, A::Error> {
                let s = Spanned::<String>::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Key { span: Some(s.span()), name: s.into_inner() })
            }
        }
        d.deserialize_struct(SPANNED, SPANNED_FIELDS, V)
    }
}

impl<'de> Deserialize<'de> for Val {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Val, D::Error> {
        d.deserialize_struct(SPANNED, SPANNED_FIELDS, NodeVisitor { spanned: true })
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor { spanned: false }).map(|v| v.node)
    }
}

/// Reads any value; with `spanned`, a map may be the span protocol rather than a table.
struct NodeVisitor {
    spanned: bool,
}

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Val;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any TOML value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Val, E> {
        Ok(Val { node: Node::Leaf, span: None })
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Val, E> {
        Ok(Val { node: Node::Leaf, span: None })
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Val, E> {
        Ok(Val { node: Node::Leaf, span: None })
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Val, E> {
        Ok(Val { node: Node::Leaf, span: None })
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Val, E> {
        Ok(Val { node: Node::Leaf, span: None })
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Val, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Val>()? {
            items.push(item);
        }
        Ok(Val { node: Node::Array(items), span: None })
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Val, A::Error> {
        let mut entries = Vec::new();
        let mut first = true;
        while let Some(key) = map.next_key::<Key>()? {
            if first && self.spanned && key.name == SPANNED_START {
                // The span protocol: start, end, then the value itself.
                let start: usize = map.next_value()?;
                let (mut end, mut node) = (start, Node::Leaf);
                while let Some(k) = map.next_key::<Key>()? {
                    if k.name == SPANNED_END {
                        end = map.next_value()?;
                    } else {
                        node = map.next_value::<Node>()?;
                    }
                }
                return Ok(Val { node, span: Some(start..end) });
            }
            first = false;
            let value = map.next_value::<Val>()?;
            // A datetime arrives as a one-key map with toml's private marker key.
            if !key.name.starts_with("$__toml_private") {
                entries.push((key, value));
            }
        }
        Ok(Val { node: Node::Table(entries), span: None })
    }
}

/// 1-based line and column of byte offset `pos` in `text`.
pub fn line_col(text: &str, pos: usize) -> (usize, usize) {
    let pos = pos.min(text.len());
    let before = &text[..pos];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map_or(pos, |nl| pos - nl - 1) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Demo {
        name: String,
        port: u16,
    }

    #[test]
    fn unknown_key_names_line_and_col() {
        let text = "name = \"a\"\nport = 1\nbogus = 2\n";
        let err = parse::<Demo>(Path::new("x.toml"), text).unwrap_err();
        let line = err.to_string();
        assert!(line.starts_with("x.toml:3:1: "), "{line}");
        assert!(line.contains("bogus"), "{line}");
        assert!(!line.contains('\n'), "{line}");
    }

    #[test]
    fn wrong_type_is_one_line() {
        let err = parse::<Demo>(Path::new("x.toml"), "name = \"a\"\nport = \"http\"\n").unwrap_err();
        assert_eq!(err.at.map(|a| a.0), Some(2));
        assert!(!err.to_string().contains('\n'));
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Nested {
        top: Option<u32>,
        #[serde(default)]
        item: Vec<Item>,
        section: Option<Section>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        address: String,
        weight: Option<u32>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Section {
        timeout: Option<u32>,
    }

    /// Unknown-key, type and missing-key errors name the key path, at every depth.
    #[test]
    fn toml_errors_name_the_key_path() {
        let cases: &[(&str, &str)] = &[
            ("top = 1\nbogus = 2\n", "x.toml:2:1: bogus: unknown field `bogus`"),
            ("top = \"x\"\n", "x.toml:1:7: top: invalid type: string \"x\""),
            ("top = -1\n", "x.toml:1:7: top: -1 is negative: this key takes a whole number from 0"),
            ("top = 1e308\n", "x.toml:1:7: top: invalid type: floating point"),
            ("top = nan\n", "x.toml:1:7: top: invalid type: floating point"),
            (
                "[section]\ntimeout = 4294967296\n",
                "x.toml:2:11: section.timeout: 4294967296 is too large: this key takes at most 4294967295",
            ),
            ("[section]\nother = 1\n", "x.toml:2:1: section.other: unknown field `other`"),
            (
                "[[item]]\naddress = \"a\"\n[[item]]\naddress = \"b\"\nweight = true\n",
                "x.toml:5:10: item[1].weight: invalid type: boolean `true`",
            ),
            ("[[item]]\naddress = \"a\"\n[[item]]\nname = \"b\"\n", "x.toml:4:1: item[1].name: unknown field `name`"),
            ("section = { timeout = \"3\" }\n", "x.toml:1:23: section.timeout: invalid type: string"),
        ];
        for (text, want) in cases {
            let line = parse::<Nested>(Path::new("x.toml"), text).unwrap_err().to_string();
            assert!(line.starts_with(want), "{text:?}: got {line:?}, want {want:?}...");
            assert!(!line.contains('\n'), "{line}");
        }
        // A missing required key names the element it is missing from, also when that element
        // is the array's only one (its span is the array's), last one, or an inline table.
        let missing: &[(&str, &str)] = &[
            ("[[item]]\nweight = 1\n", "x.toml:1:1: item[0]: missing field `address`"),
            ("[[item]]\n", "x.toml:1:1: item[0]: missing field `address`"),
            ("top = 1\n[[item]]\n", "x.toml:2:1: item[0]: missing field `address`"),
            ("[[item]]\naddress = \"a\"\n[[item]]\nweight = 1\n", "x.toml:3:1: item[1]: missing field `address`"),
            ("[[item]]\nweight = 1\n[[item]]\naddress = \"a\"\n", "x.toml:1:1: item[0]: missing field `address`"),
            ("item = [{ weight = 1 }]\n", "x.toml:1:9: item[0]: missing field `address`"),
            ("item = [{ address = \"a\" }, {}]\n", "x.toml:1:28: item[1]: missing field `address`"),
        ];
        for (text, want) in missing {
            let line = parse::<Nested>(Path::new("x.toml"), text).unwrap_err().to_string();
            assert_eq!(line, *want, "{text:?}");
        }
        // A value toml cannot even parse still names its key, found by reading the text.
        let text = "[[item]]\naddress = \"a\"\n[[item]]\naddress = \"b\"\nweight = 18446744073709551615\n";
        let line = parse::<Nested>(Path::new("x.toml"), text).unwrap_err().to_string();
        assert!(line.starts_with("x.toml:5:10: item[1].weight: "), "{line}");
        let line = parse::<Nested>(Path::new("x.toml"), "[section]\ntimeout = 99999999999999999999\n").unwrap_err();
        let want = "x.toml:2:11: section.timeout: integer too large: TOML integers are -9223372036854775808..=9223372036854775807";
        assert_eq!(line.to_string(), want);
        // Syntax errors have no key to name, only the place.
        let line = parse::<Nested>(Path::new("x.toml"), "top = \n").unwrap_err().to_string();
        assert!(line.starts_with("x.toml:1:"), "{line}");
    }

    #[test]
    fn spans_locate_values() {
        let text = "a = 1\n[t]\nb = \"x\"\n[[arr]]\nc = 2\n[[arr]]\nc = 3\n";
        let s = Spans::of(text);
        let at = |k: &str| s.value_of(k).map(|r| line_col(text, r.start));
        assert_eq!(at("a"), Some((1, 5)));
        assert_eq!(at("t.b"), Some((3, 5)));
        assert_eq!(at("arr[1].c"), Some((7, 5)));
        assert_eq!(at("nope"), None);
        assert_eq!(s.key_at(text.find("c = 3").unwrap()), Some("arr[1].c"));
        // A dotted table header keeps every span of the document.
        let text = "a = 1\n[g.web]\nb = 2\n";
        let s = Spans::of(text);
        assert_eq!(s.value_of("a").map(|r| line_col(text, r.start)), Some((1, 5)));
        assert_eq!(s.value_of("g.web.b").map(|r| line_col(text, r.start)), Some((3, 5)));
        assert_eq!(s.value_of("g.web").map(|r| line_col(text, r.start).0), Some(2));
    }

    #[test]
    fn only_bounded_regular_files_are_read() {
        let dir = std::env::temp_dir().join(format!("netforge-conffile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let line = |p: &Path| read(p).unwrap_err().to_string();
        assert!(
            line(&dir).ends_with("cannot read: a directory; a config file must be a regular file"),
            "{}",
            line(&dir)
        );
        assert!(line(Path::new("/dev/zero")).contains("a character device"));
        let fifo = dir.join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        // No writer: the open must not block, and the FIFO is refused.
        assert!(line(&fifo).contains("a FIFO"), "{}", line(&fifo));
        let big = dir.join("big.toml");
        let f = std::fs::File::create(&big).unwrap();
        f.set_len(MAX_CONFIG_BYTES + 1).unwrap();
        assert!(line(&big).contains("larger than the 16777216-byte (16 MiB) limit"), "{}", line(&big));
        // Exactly at the limit is read (NUL bytes are valid UTF-8).
        f.set_len(MAX_CONFIG_BYTES).unwrap();
        assert_eq!(read(&big).map(|t| t.len() as u64).ok(), Some(MAX_CONFIG_BYTES));
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, b"a = 1\nb = \"\xff\"\n").unwrap();
        assert_eq!(line(&bad), format!("{}:2:6: not UTF-8 text", bad.display()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn origin_names_keys_where_they_are_written() {
        let text = "threads = 2\n[[listener]]\naddress = \"127.0.0.1:1\"\n[groups.\"a b\"]\nbalance = \"p2c\"\n";
        let o = Origin::new(Path::new("lb.toml"), text);
        assert_eq!(o.name("listener[0].address"), "lb.toml:3:11: listener[0].address");
        assert_eq!(o.at("groups.\"a b\".balance"), (5, 11));
        // Not written: the end of the file.
        assert_eq!(o.name("admin.address"), "lb.toml:6:1: admin.address");
        assert!(o.written("listener[0].address") && !o.written("admin.address"));
        let e = o.err("threads", "too\nmany");
        assert_eq!(e.to_string(), "lb.toml:1:11: threads: too many");
        // The same file is the same origin, whatever its text.
        assert_eq!(o, Origin::new(Path::new("lb.toml"), ""));
        assert_ne!(o, Origin::new(Path::new("other.toml"), text));
    }

    #[test]
    fn key_error_display() {
        let e = ConfigError::key(Path::new("lb.toml"), "backend[1].weight", "must be > 0");
        assert_eq!(e.to_string(), "lb.toml: backend[1].weight: must be > 0");
    }
}
