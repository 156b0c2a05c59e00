//! ARCHITECTURE.md stays true: every `crate::` path in a module names a module its row of the
//! dependency table allows, every module of `src/` has a row, and files are touched and text
//! printed only where the document says.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The rows of the "Dependency rules" table: module → the modules it may use.
fn rules() -> BTreeMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string(common::root().join("ARCHITECTURE.md")).expect("readable");
    let section = text
        .split("## Dependency rules")
        .nth(1)
        .expect("ARCHITECTURE.md has a `## Dependency rules` section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut rules = BTreeMap::new();
    for line in section.lines().filter(|line| line.starts_with('|')) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let [module, allowed] = cells.as_slice() else {
            continue;
        };
        if *module == "module" || module.starts_with("---") {
            continue;
        }
        let allowed = allowed
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(String::from)
            .collect();
        rules.insert(module.to_string(), allowed);
    }
    rules
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("readable folder").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The file's code without its test module (everything from `#[cfg(test)]` on), or nothing
/// for a file that is a test module.
fn code_of(path: &Path) -> String {
    if path.file_name().is_some_and(|name| name == "tests.rs") {
        return String::new();
    }
    let text = std::fs::read_to_string(path).expect("readable source");
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    code.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module of `crate::` paths a source file uses: `crate::a::b` and the heads of
/// `use crate::{a::b, c}` groups.
fn used_modules(code: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    let word = |text: &str| -> String {
        text.chars()
            .take_while(|ch| ch.is_ascii_alphanumeric() || *ch == '_')
            .collect()
    };
    for (idx, _) in code.match_indices("crate::") {
        let rest = &code[idx + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut start = 0;
            for (at, ch) in group.char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        used.insert(word(group[start..at].trim()));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        used.insert(word(group[start..at].trim()));
                        start = at + 1;
                    }
                    _ => {}
                }
            }
        } else {
            used.insert(word(rest));
        }
    }
    used.retain(|name| !name.is_empty() && name != "self");
    used
}

/// The module a file of `src/` belongs to (`src/compile/args.rs` → `compile`).
fn module_of(path: &Path, src: &Path) -> Option<String> {
    let relative = path.strip_prefix(src).ok()?;
    let first = relative.components().next()?.as_os_str().to_string_lossy();
    Some(first.trim_end_matches(".rs").to_string())
}

#[test]
fn every_module_uses_only_what_its_row_allows() {
    let rules = rules();
    assert!(rules.len() >= 10, "too few rows: {rules:?}");
    let src = common::root().join("src");
    let mut problems = Vec::new();
    for path in rust_files(&src) {
        let Some(module) = module_of(&path, &src) else {
            continue;
        };
        if ["lib", "main", "cli"].contains(&module.as_str()) {
            continue;
        }
        let Some(allowed) = rules.get(&module) else {
            problems.push(format!("`{module}` has no row in the dependency table"));
            continue;
        };
        for used in used_modules(&code_of(&path)) {
            if used != module && !allowed.contains(&used) {
                problems.push(format!(
                    "{} uses `crate::{used}`, which the row of `{module}` does not allow",
                    common::relative(&path)
                ));
            }
        }
    }
    problems.dedup();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn files_and_the_terminal_are_touched_only_where_the_document_says() {
    let src = common::root().join("src");
    let may_touch_files = ["cli", "data", "train", "infer", "plot", "files"];
    let may_print = ["cli", "train", "lsp"];
    let mut problems = Vec::new();
    for path in rust_files(&src) {
        let Some(module) = module_of(&path, &src) else {
            continue;
        };
        let code = code_of(&path);
        let relative = common::relative(&path);
        let touches_files = ["std::fs", "fs::", "File::"]
            .iter()
            .any(|needle| code.contains(needle));
        if touches_files
            && !may_touch_files.contains(&module.as_str())
            && relative != "src/backend/checkpoint.rs"
            && relative != "src/spec/read.rs"
        {
            problems.push(format!("{relative} touches files"));
        }
        let prints = ["println!", "print!(", "eprintln!", "eprint!("]
            .iter()
            .any(|needle| code.contains(needle));
        if prints && !may_print.contains(&module.as_str()) {
            problems.push(format!("{relative} prints"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_reader_finds_grouped_and_inline_paths() {
    let code =
        "use crate::{ir::{Layer, Op}, text::Span};\nfn f() { crate::suggest::one_of(&[\"a\"]); }";
    let used: Vec<String> = used_modules(code).into_iter().collect();
    assert_eq!(used, ["ir", "suggest", "text"]);
}
