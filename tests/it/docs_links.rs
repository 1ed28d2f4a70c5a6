//! The README is a front page and the rest lives in docs/: every relative link in them
//! reaches a file that exists and, with `#anchor`, a heading of that file (GitHub's slugs),
//! and the README stays short.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every docs/*.md, as paths under the checkout.
fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .map(|e| e.expect("docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// The lines of `text` outside ``` fences.
fn prose(text: &str) -> Vec<&str> {
    let mut fenced = false;
    text.lines()
        .filter(|l| {
            if l.starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect()
}

/// GitHub's anchor for a heading: lowercased, punctuation but '-' and '_' dropped, spaces
/// to '-'.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a markdown file's headings, repeats numbered as GitHub does (`x`, `x-1`).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in prose(text) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(line[hashes..].trim_end_matches('#'));
        let mut anchor = base.clone();
        let mut n = 0;
        while out.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        out.insert(anchor);
    }
    out
}

/// The link targets in one line, inline code left out.
fn targets(line: &str) -> Vec<String> {
    let outside_code: String = line
        .split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 0)
        .map(|(_, s)| s)
        .collect::<Vec<_>>()
        .join(" ");
    outside_code
        .split("](")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .map(|t| t.split_whitespace().next().unwrap_or_default().to_string())
        .collect()
}

/// What is wrong with each relative link of `file`: a missing file or a missing heading.
fn broken_links(file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).expect("markdown file");
    let dir = file.parent().expect("a directory");
    let name = file
        .strip_prefix(root())
        .unwrap_or(file)
        .display()
        .to_string();
    let mut broken = Vec::new();
    for target in prose(&text).into_iter().flat_map(targets) {
        if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
            continue;
        }
        let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
        let linked = if path.is_empty() {
            file.to_path_buf()
        } else {
            dir.join(path)
        };
        if !linked.exists() {
            broken.push(format!("{name}: {target}: no such file"));
            continue;
        }
        if anchor.is_empty() {
            continue;
        }
        let linked_text = std::fs::read_to_string(&linked).unwrap_or_default();
        if !anchors(&linked_text).contains(anchor) {
            broken.push(format!("{name}: {target}: no such heading"));
        }
    }
    broken
}

#[test]
fn every_relative_link_in_the_readme_and_docs_reaches_a_file_and_a_heading() {
    let files = markdown_files();
    assert!(files.len() > 10, "README.md and docs/*.md: {files:?}");
    let broken: Vec<String> = files.iter().flat_map(|f| broken_links(f)).collect();
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_link_check_sees_a_missing_file_and_a_missing_heading() {
    let dir = tempfile::tempdir().expect("tmp");
    let page = dir.path().join("page.md");
    std::fs::write(
        dir.path().join("other.md"),
        "# Other\n\n## The `x`, (y) & z_1\n",
    )
    .expect("write");
    std::fs::write(
        &page,
        "# Page\n\n## Page\n\n[a](other.md#the-x-y--z_1) [b](#page-1) [c](#page)\n\
         [d](gone.md) [e](other.md#nope) `[f](gone-too.md)`\n```\n[g](gone-3.md)\n```\n\
         [h](https://example.org/x.md)\n",
    )
    .expect("write");
    let broken: Vec<String> = broken_links(&page)
        .into_iter()
        .map(|b| {
            b.rsplit_once(": ")
                .map(|(_, why)| why.to_string())
                .unwrap_or(b)
        })
        .collect();
    assert_eq!(broken, ["no such file", "no such heading"], "{broken:?}");
}

#[test]
fn the_readme_is_a_front_page_of_at_most_500_lines() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let lines = readme.lines().count();
    assert!(
        lines <= 500,
        "README.md has {lines} lines: move detail to a docs/ file and link it"
    );
}
