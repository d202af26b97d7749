//! The library's modules import downward only: no two top-level modules of `src/` import
//! each other, directly or round a longer loop, and neither do two files of one folder
//! module (`src/loader/patch.rs` and `src/loader/stream.rs`, say). A new import that closes
//! a loop fails here, naming the loop and, for each step of it, the file and the line.
//!
//! Imports are read from the source text: every `crate::NAME` path (and `crate::{A, B}`)
//! names top-level module NAME; in a file of a folder module, every `super::NAME` (and
//! `super::{A, B}`) that names a sibling file names that sibling. Comments, doc comments
//! included, are not imports. A folder's `mod.rs` is the folder itself (its children
//! may use what it declares), so it takes part at the top level only.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One import: the module it comes from, the one it names, and where.
#[derive(Debug, Clone)]
struct Edge {
    from: String,
    to: String,
    file: PathBuf,
    line: usize,
}

/// The text of a Rust file without its comments (line, doc and block comments), lines kept
/// where they were so that line numbers still point into the file. String literals are
/// kept: an import path inside one would be read as an import, which fails loudly rather
/// than hiding a loop.
fn strip_comments(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut in_str = false;
    while i < b.len() {
        let c = b[i];
        if in_str {
            out.push(c as char);
            if c == b'\\' && i + 1 < b.len() {
                out.push(b[i + 1] as char);
                i += 2;
                continue;
            }
            if c == b'"' {
                in_str = false;
            }
            i += 1;
        } else if c == b'"' {
            in_str = true;
            out.push('"');
            i += 1;
        } else if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if b[i] == b'\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
            }
        } else if c == b'\'' && b.get(i + 2) == Some(&b'\'') {
            // A char literal such as '"', which would otherwise open a string.
            out.push_str(&text[i..i + 3]);
            i += 3;
        } else {
            // Copy one UTF-8 character whole.
            let len = text[i..].chars().next().map_or(1, char::len_utf8);
            out.push_str(&text[i..i + len]);
            i += len;
        }
    }
    out
}

/// The names that follow `prefix` on a line: `prefix` + `NAME` or `prefix` + `{A, B::C}`.
fn names_after(line: &str, prefix: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.trim_start().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()
    };
    let mut names = Vec::new();
    let mut rest = line;
    while let Some(p) = rest.find(prefix) {
        // `xcrate::` or `my_super::` are other paths.
        let before = rest[..p].chars().last();
        rest = &rest[p + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            names.extend(group[..end].split(',').map(ident).filter(|n| !n.is_empty()));
        } else {
            let n = ident(rest);
            if !n.is_empty() {
                names.push(n);
            }
        }
    }
    names
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The module names of a folder: `x` for `x.rs` and for `x/`, less `mod`, `lib`, `main`.
fn modules_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            let stem = p.file_stem()?.to_str()?.to_string();
            (p.is_dir() || p.extension().is_some_and(|x| x == "rs")).then_some(stem)
        })
        .filter(|n| !matches!(n.as_str(), "mod" | "lib" | "main"))
        .collect()
}

/// The imports between top-level modules, and between the files of each folder module.
fn edges(src: &Path) -> (Vec<Edge>, BTreeMap<PathBuf, Vec<Edge>>) {
    let top = modules_in(src);
    let mut top_edges = Vec::new();
    let mut folder_edges: BTreeMap<PathBuf, Vec<Edge>> = BTreeMap::new();
    for file in rust_files(src) {
        let rel = file.strip_prefix(src).unwrap();
        let Some(module) = rel.iter().next().and_then(|c| Path::new(c).file_stem()) else {
            continue;
        };
        let module = module.to_string_lossy().into_owned();
        let folder = file.parent().unwrap().to_path_buf();
        let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
        let siblings =
            if folder != src && stem != "mod" { modules_in(&folder) } else { BTreeSet::new() };
        let text = strip_comments(&std::fs::read_to_string(&file).unwrap());
        for (n, line) in text.lines().enumerate() {
            for to in names_after(line, "crate::") {
                if top.contains(&to) && to != module {
                    top_edges.push(Edge {
                        from: module.clone(),
                        to,
                        file: rel.to_path_buf(),
                        line: n + 1,
                    });
                }
            }
            if siblings.is_empty() {
                continue;
            }
            // `super::x` and `crate::<this folder>::x` name sibling `x`.
            let own = format!("crate::{}::", folder.strip_prefix(src).unwrap().display());
            for to in names_after(line, "super::").into_iter().chain(names_after(line, &own)) {
                if siblings.contains(&to) && to != stem {
                    folder_edges.entry(folder.clone()).or_default().push(Edge {
                        from: stem.clone(),
                        to,
                        file: rel.to_path_buf(),
                        line: n + 1,
                    });
                }
            }
        }
    }
    (top_edges, folder_edges)
}

/// The loops of a graph: each strongly connected component of more than one node, with
/// the edges inside it.
fn loops(edges: &[Edge]) -> Vec<Vec<Edge>> {
    let mut next: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for e in edges {
        next.entry(&e.from).or_default().insert(&e.to);
    }
    let reach = |a: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![a.to_string()];
        while let Some(n) = stack.pop() {
            for m in next.get(n.as_str()).into_iter().flatten() {
                if seen.insert(m.to_string()) {
                    stack.push(m.to_string());
                }
            }
        }
        seen
    };
    let nodes: BTreeSet<&str> =
        edges.iter().flat_map(|e| [e.from.as_str(), e.to.as_str()]).collect();
    let reaches: BTreeMap<&str, BTreeSet<String>> = nodes.iter().map(|&n| (n, reach(n))).collect();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for &n in &nodes {
        if done.contains(n) || !reaches[n].contains(n) {
            continue;
        }
        let group: BTreeSet<&str> = nodes
            .iter()
            .copied()
            .filter(|&m| reaches[n].contains(m) && reaches[m].contains(n))
            .collect();
        done.extend(group.iter().copied());
        out.push(
            edges
                .iter()
                .filter(|e| group.contains(e.from.as_str()) && group.contains(e.to.as_str()))
                .cloned()
                .collect(),
        );
    }
    out
}

fn describe(loops: &[Vec<Edge>]) -> String {
    let mut s = String::new();
    for l in loops {
        let mut names: Vec<&str> = l.iter().map(|e| e.from.as_str()).collect();
        names.dedup();
        s.push_str(&format!("loop between {}:\n", names.join(", ")));
        for e in l {
            s.push_str(&format!(
                "  {} -> {} at src/{}:{}\n",
                e.from,
                e.to,
                e.file.display(),
                e.line
            ));
        }
    }
    s
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn top_level_modules_import_in_no_loop() {
    let (top, _) = edges(&src());
    // The reader sees the imports it must: ingest uses the store, the store does not use ingest.
    assert!(top.iter().any(|e| e.from == "ingest" && e.to == "store"), "{top:?}");
    let found = loops(&top);
    assert!(
        found.is_empty(),
        "top-level modules of src/ that import each other:\n{}",
        describe(&found)
    );
}

#[test]
fn files_of_a_folder_module_import_in_no_loop() {
    let (_, folders) = edges(&src());
    // Sibling imports are seen (the loader's patch reads through its batch type).
    assert!(
        folders.values().flatten().any(|e| e.from == "patch" && e.to == "batch"),
        "{folders:?}"
    );
    let mut report = String::new();
    for (folder, edges) in &folders {
        let found = loops(edges);
        if !found.is_empty() {
            report.push_str(&format!("in {}:\n{}", folder.display(), describe(&found)));
        }
    }
    assert!(report.is_empty(), "files that import each other:\n{report}");
}

#[test]
fn a_loop_is_found_and_named() {
    // The checker itself: a hand-made graph a -> b -> c -> a, d -> a.
    let e = |from: &str, to: &str| Edge {
        from: from.into(),
        to: to.into(),
        file: "x.rs".into(),
        line: 1,
    };
    let found = loops(&[e("a", "b"), e("b", "c"), e("c", "a"), e("d", "a")]);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].len(), 3);
    assert!(loops(&[e("a", "b"), e("b", "c"), e("d", "a")]).is_empty());
    // Comments are not imports; grouped and plain paths are.
    let text = strip_comments(
        "/// [`crate::store`]\nuse crate::{io::x, geometry};\n/* crate::hu */ let s = \"//\"; crate::seed::f();",
    );
    let names: Vec<String> = text.lines().flat_map(|l| names_after(l, "crate::")).collect();
    assert_eq!(names, ["io", "geometry", "seed"]);
}
