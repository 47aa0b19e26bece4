//! The seed's list files: one sample a line, `relative/path label`, paths relative to the
//! dataset root; blank lines and `#` comments are allowed. The label is the last
//! whitespace-separated field, so a path may contain spaces.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::{stamp, FileSample, Items, ListContext, Listing};
use crate::data::error::{DataError, Location, Problem};
use crate::data::roots::{excerpt, is_contained_relative};

/// The most characters of a list file's line quoted in an error.
const EXCERPT_CHARS: usize = 40;

/// One parsed line: the path as written and the label.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Line<'a> {
    pub(super) path: &'a str,
    pub(super) label: i64,
}

/// Parses a line; `Ok(None)` for a blank line or a comment.
pub(super) fn parse_line(text: &str) -> Result<Option<Line<'_>>, String> {
    let text = text.trim();
    if text.is_empty() || text.starts_with('#') {
        return Ok(None);
    }
    // The file may be anything a grid pointed at: quote only a short, printable excerpt.
    let Some((path, label)) = text.rsplit_once(|c: char| c.is_whitespace()) else {
        return Err(format!(
            "`{}`: expected `relative/path label`",
            excerpt(text, EXCERPT_CHARS)
        ));
    };
    let path = path.trim_end();
    let label: i64 = label.parse().map_err(|_| {
        format!(
            "label `{}` is not an integer",
            excerpt(label, EXCERPT_CHARS)
        )
    })?;
    Ok(Some(Line { path, label }))
}

pub(super) fn list(
    ctx: &ListContext<'_>,
    list: &str,
    limit: Option<usize>,
) -> Result<Listing, DataError> {
    let list_path = ctx.root.join(list);
    let bytes = std::fs::read(&list_path).map_err(|e| DataError::io(&list_path, e))?;
    let text = String::from_utf8_lossy(&bytes);
    let mut hasher = Sha256::new();
    let mut samples = Vec::new();
    let mut bad = Vec::new();
    let mut seen = 0usize;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let at = |file: Option<&Path>| Location::Line {
            list: list_path.clone(),
            line,
            file: file.map(Path::to_path_buf),
        };
        let parsed = match parse_line(raw) {
            Ok(None) => continue,
            Ok(Some(parsed)) => parsed,
            Err(why) => {
                seen += 1;
                bad.push(ctx.bad(at(None), Problem::BadLine(why)));
                if limit.is_some_and(|l| seen >= l) {
                    break;
                }
                continue;
            }
        };
        seen += 1;
        let image = ctx.root.join(parsed.path);
        if !is_contained_relative(Path::new(parsed.path)) {
            bad.push(ctx.bad(
                at(None),
                Problem::BadLine(format!(
                    "`{}`: the path must be relative to the dataset root, without `..`",
                    excerpt(parsed.path, EXCERPT_CHARS)
                )),
            ));
        } else if let Some(problem) = ctx.check_label(parsed.label) {
            bad.push(ctx.bad(at(Some(&image)), problem));
        } else {
            match std::fs::metadata(&image) {
                Ok(meta) if meta.is_file() => {
                    stamp(&mut hasher, &image, &meta);
                    hasher.update(parsed.label.to_le_bytes());
                    samples.push(FileSample {
                        location: at(Some(&image)),
                        label: parsed.label as u32,
                    });
                }
                Ok(_) => {
                    bad.push(ctx.bad(at(Some(&image)), Problem::Unreadable("not a file".into())))
                }
                Err(e) => bad.push(ctx.bad(at(Some(&image)), Problem::Unreadable(e.to_string()))),
            }
        }
        if limit.is_some_and(|l| seen >= l) {
            break;
        }
    }
    Ok(Listing::new(Items::Files(samples), bad, hasher))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_with_spaces_tabs_and_comments() {
        assert_eq!(
            parse_line("a/b.jpg 3").unwrap(),
            Some(Line {
                path: "a/b.jpg",
                label: 3
            })
        );
        assert_eq!(
            parse_line("my dir/b c.jpg\t12\r").unwrap(),
            Some(Line {
                path: "my dir/b c.jpg",
                label: 12
            })
        );
        assert_eq!(parse_line("   ").unwrap(), None);
        assert_eq!(parse_line("# a comment 3").unwrap(), None);
        assert!(parse_line("lonely.jpg").unwrap_err().contains("expected"));
        assert!(parse_line("a.jpg x")
            .unwrap_err()
            .contains("not an integer"));
        // What is quoted of a hostile line is short and printable.
        let long = format!("root:x:0:0:{}\u{1b}", "y".repeat(500));
        let err = parse_line(&long).unwrap_err();
        assert!(err.len() < 120 && !err.contains('\u{1b}'), "{err}");
        assert_eq!(
            parse_line("a.jpg -1").unwrap(),
            Some(Line {
                path: "a.jpg",
                label: -1
            })
        );
    }
}
