//! Positions in the grid file: paths into its TOML tree ([`Seg`]), the [`Source`] that
//! turns a path into `line:col`, and the key a serde error points at.

use toml_edit::{Document, Item};

use super::GridError;

/// 1-based line and column of a byte offset in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

/// Line and column of a dotted key path (e.g. `base.dataset.root`) in a TOML document:
/// the key itself when present, else the deepest table on the path that exists.
pub fn locate_key(text: &str, dotted: &str) -> Option<(usize, usize)> {
    let doc = toml_edit::Document::parse(text).ok()?;
    let mut item: &toml_edit::Item = doc.as_item();
    let mut best = None;
    for part in dotted.split('.').filter(|p| !p.is_empty()) {
        let table = item.as_table_like()?;
        let (key, child) = match table.get_key_value(part) {
            Some(kv) => kv,
            None => break,
        };
        if let Some(span) = key.span() {
            best = Some(span.start);
        }
        item = child;
    }
    best.map(|offset| line_col(text, offset))
}

/// One step of a path into a TOML tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::spec) enum Seg {
    Key(String),
    Index(usize),
}

/// A path of keys.
pub(in crate::spec) fn keys<'a>(parts: impl IntoIterator<Item = &'a str>) -> Vec<Seg> {
    parts.into_iter().map(|p| Seg::Key(p.to_string())).collect()
}

/// The grid file, for positions.
pub(in crate::spec) struct Source<'a> {
    text: &'a str,
    file: &'a str,
    doc: Document<&'a str>,
}

impl<'a> Source<'a> {
    /// Parses the grid file twice: as a TOML table (the values) and as a document (the
    /// positions). A syntax error is located.
    pub(super) fn parse(
        text: &'a str,
        file: &'a str,
    ) -> Result<(Source<'a>, toml::Table), GridError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| GridError {
            file: file.to_string(),
            position: e.span().map(|s| line_col(text, s.start)),
            message: e.message().trim().to_string(),
        })?;
        let doc = Document::parse(text).map_err(|e| GridError {
            file: file.to_string(),
            position: e.span().map(|s| line_col(text, s.start)),
            message: e.message().trim().to_string(),
        })?;
        Ok((Source { text, file, doc }, table))
    }

    /// Offset of the deepest element of `path` that exists in the file.
    pub(in crate::spec) fn locate(&self, path: &[Seg]) -> Option<usize> {
        locate_from(Node::Item(self.doc.as_item()), path)
    }

    fn position(&self, path: &[Seg]) -> Option<(usize, usize)> {
        self.locate(path).map(|o| line_col(self.text, o))
    }

    pub(in crate::spec) fn error(&self, path: &[Seg], message: impl Into<String>) -> GridError {
        GridError {
            file: self.file.to_string(),
            position: self.position(path).or(Some((1, 1))),
            message: message.into(),
        }
    }
}

/// A place in a parsed TOML document.
#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a Item),
    Value(&'a toml_edit::Value),
    Table(&'a toml_edit::Table),
}

impl<'a> Node<'a> {
    fn table_like(self) -> Option<&'a dyn toml_edit::TableLike> {
        match self {
            Node::Item(item) => item.as_table_like(),
            Node::Value(value) => value
                .as_inline_table()
                .map(|t| t as &dyn toml_edit::TableLike),
            Node::Table(table) => Some(table),
        }
    }
}

/// Offset of the deepest element of `path` below `node`.
fn locate_from(node: Node<'_>, path: &[Seg]) -> Option<usize> {
    let (seg, rest) = path.split_first()?;
    match seg {
        Seg::Key(k) => {
            let (key, child) = node.table_like()?.get_key_value(k)?;
            locate_from(Node::Item(child), rest).or(key.span().map(|s| s.start))
        }
        Seg::Index(i) => {
            let array = match node {
                Node::Item(item) => item.as_array(),
                Node::Value(value) => value.as_array(),
                Node::Table(_) => None,
            };
            if let Some(array) = array {
                let value = array.get(*i)?;
                return locate_from(Node::Value(value), rest).or(value.span().map(|s| s.start));
            }
            let Node::Item(item) = node else { return None };
            let table = item.as_array_of_tables()?.get(*i)?;
            locate_from(Node::Table(table), rest).or(table.span().map(|s| s.start))
        }
    }
}

/// The dotted key path whose key or value spans `offset` in `text` (the deepest one).
pub(super) fn key_path_at(text: &str, offset: usize) -> Vec<String> {
    let Ok(doc) = Document::parse(text) else {
        return Vec::new();
    };
    let mut best: Vec<String> = Vec::new();
    let mut path = Vec::new();
    find_key(doc.as_item(), offset, &mut path, &mut best);
    best
}

fn find_key(item: &Item, offset: usize, path: &mut Vec<String>, best: &mut Vec<String>) {
    let Some(table) = item.as_table_like() else {
        return;
    };
    let names: Vec<String> = table.iter().map(|(k, _)| k.to_string()).collect();
    for name in names {
        let Some((key, child)) = table.get_key_value(&name) else {
            continue;
        };
        path.push(name.clone());
        let within = |span: Option<std::ops::Range<usize>>| {
            span.is_some_and(|s| s.start <= offset && offset < s.end.max(s.start + 1))
        };
        if (within(key.span()) || within(child.span())) && path.len() > best.len() {
            *best = path.clone();
        }
        find_key(child, offset, path, best);
        path.pop();
    }
}
