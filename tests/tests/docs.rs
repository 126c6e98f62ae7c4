//! The documentation's links hold: every relative link of the README, the
//! pages under `docs/`, BENCHMARKS.md and the crates' READMEs names a file
//! of the repository, and an anchor a heading of that file. (No network:
//! links to other sites are not followed.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The repository's root: this crate is `tests/`.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("a parent")
        .to_owned()
}

/// The Markdown files checked.
fn documents() -> Vec<PathBuf> {
    let root = root();
    let mut files = vec![root.join("README.md"), root.join("BENCHMARKS.md")];
    for dir in ["docs"] {
        for entry in std::fs::read_dir(root.join(dir)).expect("docs/") {
            let path = entry.expect("an entry").path();
            if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    for entry in std::fs::read_dir(&root).expect("the root") {
        let readme = entry.expect("an entry").path().join("README.md");
        if readme.exists() {
            files.push(readme);
        }
    }
    files.sort();
    files
}

/// The anchors GitHub makes of a file's headings: lower case, spaces as
/// hyphens, punctuation but hyphens and underscores dropped.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut fenced = false;
    text.lines()
        .filter(|line| {
            if line.starts_with("```") {
                fenced = !fenced;
            }
            !fenced && line.starts_with('#')
        })
        .map(|line| {
            line.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect()
        })
        .collect()
}

/// The relative link targets of `text`, outside code: `](target)`.
fn links(text: &str) -> Vec<String> {
    let mut fenced = false;
    let mut found = Vec::new();
    for line in text.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        }
        if fenced {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            let target = &after[..end];
            if !target.contains("://") && !target.starts_with("mailto:") {
                found.push(target.to_owned());
            }
            rest = &after[end..];
        }
    }
    found
}

#[test]
fn every_relative_link_and_anchor_of_the_documentation_exists() {
    let mut broken = Vec::new();
    let documents = documents();
    assert!(documents.len() >= 10, "{documents:?}");
    for document in &documents {
        let text = std::fs::read_to_string(document).expect("readable");
        for link in links(&text) {
            let (file, anchor) = match link.split_once('#') {
                Some((file, anchor)) => (file, Some(anchor)),
                None => (link.as_str(), None),
            };
            let target = if file.is_empty() {
                document.clone()
            } else {
                document.parent().expect("a directory").join(file)
            };
            if !target.exists() {
                broken.push(format!("{}: {link}: no such file", document.display()));
                continue;
            }
            if let Some(anchor) = anchor {
                let text = std::fs::read_to_string(&target).unwrap_or_default();
                if !anchors(&text).contains(anchor) {
                    broken.push(format!("{}: {link}: no such heading", document.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_checker_sees_links_and_anchors() {
    assert_eq!(
        links("see [a](docs/a.md#x-y) and [b](https://x.org), `[c](nope)`"),
        ["docs/a.md#x-y", "nope"],
        "the inline code one is a link as far as Markdown goes"
    );
    assert!(
        anchors("## The record\n```\n# not\n```\n### Coming from the Go module").is_superset(
            &BTreeSet::from(["the-record".into(), "coming-from-the-go-module".into()])
        )
    );
}
