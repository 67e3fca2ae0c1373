//! No two modules of overlay-userspace import each other, directly or around a longer
//! loop: neither the top-level modules (agent, cluster, docker, network, store, ...) nor
//! the files of one directory (docker/driver.rs and docker/tasks.rs, ...). A loop means
//! that neither side can be read, tested or changed without the other.
//!
//! The test parses every file under `src/` and follows each path that starts with
//! `crate::`, `super::`, `self::` (or `overlay::` in the binary's `cli/`), in `use`
//! items, in code and in macro bodies. An edge A → B at some level means a file of A
//! names something of B. A directory's `mod.rs` is the module's face: it declares and
//! re-exports its children and may hold what they share, so edges to and from it do not
//! count; a name it re-exports counts as the child that defines it.
//!
//! To see the graph:
//! `cargo test -p overlay-userspace --test module_graph -- --nocapture`

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

/// A module by its path from the crate root: `["docker", "driver"]`.
type ModPath = Vec<String>;

/// One source file: its module path and the absolute paths it names.
struct Source {
    file: PathBuf,
    module: ModPath,
    references: Vec<ModPath>,
    /// `pub use child::{A, B as C}` in a `mod.rs`: re-exported name → the child.
    reexports: Vec<(String, String)>,
}

fn main_src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// `src/a.rs` → `[a]`, `src/a/mod.rs` → `[a]`, `src/a/b.rs` → `[a, b]`.
fn module_of(src: &Path, file: &Path) -> ModPath {
    let relative = file.strip_prefix(src).expect("file under src");
    let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" && stem != "main" {
        parts.push(stem.to_owned());
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("readable src").map(|e| e.expect("entry").path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Collects absolute module paths from one file's syntax tree.
struct Collector {
    /// The module the visitor is in: the file's, plus inline `mod x { .. }` blocks.
    scope: ModPath,
    /// The binary's files (main.rs, cli/) name the library as `overlay::`.
    in_binary: bool,
    file_is_mod_rs: bool,
    /// Every module of the crate, to tell `use registry::find` (a child) from
    /// `use serde::Serialize` (another crate).
    modules: BTreeSet<ModPath>,
    /// Names a `use` item binds to a path of this crate (`use crate::network;` makes
    /// `network::find` name `crate::network::find`).
    aliases: BTreeMap<String, ModPath>,
    references: Vec<ModPath>,
    reexports: Vec<(String, String)>,
}

impl Collector {
    /// The absolute path `segments` names, if it starts at the crate (or `super`/`self`).
    fn resolve(&self, segments: &[String]) -> Option<ModPath> {
        let (first, rest) = segments.split_first()?;
        let mut base = match first.as_str() {
            "crate" if self.in_binary => return None, // the binary's own modules: cli
            "crate" => Vec::new(),
            "overlay" if self.in_binary => Vec::new(),
            "self" => self.scope.clone(),
            "super" => {
                let mut base = self.scope.clone();
                base.pop()?;
                base
            }
            alias if segments.len() > 1 && self.aliases.contains_key(alias) => self.aliases[alias].clone(),
            child if self.modules.contains(&[self.scope.as_slice(), &[child.to_owned()]].concat()) => {
                [self.scope.as_slice(), &[child.to_owned()]].concat()
            }
            _ => return None,
        };
        let mut rest = rest;
        while let Some(("super", tail)) = rest.split_first().map(|(s, t)| (s.as_str(), t)) {
            base.pop()?;
            rest = tail;
        }
        base.extend(rest.iter().cloned());
        Some(base)
    }

    fn add(&mut self, segments: &[String]) {
        if let Some(path) = self.resolve(segments)
            && !path.is_empty()
        {
            self.references.push(path);
        }
    }

    /// Every leaf of a `use` tree, as segments from its root, with the name it binds.
    fn use_leaves(tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut Vec<(Vec<String>, Option<String>)>) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                Self::use_leaves(&p.tree, prefix, out);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                let name = n.ident.to_string();
                let mut path = prefix.clone();
                if name != "self" {
                    path.push(name.clone());
                }
                let bound = if name == "self" { prefix.last().cloned() } else { Some(name) };
                out.push((path, bound));
            }
            syn::UseTree::Rename(r) => {
                let mut path = prefix.clone();
                if r.ident != "self" {
                    path.push(r.ident.to_string());
                }
                out.push((path, Some(r.rename.to_string())));
            }
            syn::UseTree::Glob(_) => out.push((prefix.clone(), None)),
            syn::UseTree::Group(g) => {
                for item in &g.items {
                    Self::use_leaves(item, prefix, out);
                }
            }
        }
    }

    /// Paths inside macro bodies (`tokio::select! { .. }`, `tracing::info!(..)`), which
    /// syn leaves as tokens: every `crate`/`super`/`self`/`overlay` followed by `::`.
    fn scan_tokens(&mut self, tokens: TokenStream) {
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < tokens.len() {
            match &tokens[i] {
                TokenTree::Group(group) => self.scan_tokens(group.stream()),
                TokenTree::Ident(ident)
                    if ["crate", "super", "self", "overlay"].contains(&ident.to_string().as_str()) =>
                {
                    let mut segments = vec![ident.to_string()];
                    let mut j = i + 1;
                    // `::` is two `:` puncts, then an identifier.
                    while j + 2 < tokens.len()
                        && matches!(&tokens[j], TokenTree::Punct(p) if p.as_char() == ':')
                        && matches!(&tokens[j + 1], TokenTree::Punct(p) if p.as_char() == ':')
                    {
                        match &tokens[j + 2] {
                            TokenTree::Ident(next) => segments.push(next.to_string()),
                            _ => break,
                        }
                        j += 3;
                    }
                    if segments.len() > 1 {
                        self.add(&segments);
                    }
                    i = j.max(i + 1);
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
    }
}

impl<'ast> Visit<'ast> for Collector {
    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        if item.content.is_some() {
            self.scope.push(item.ident.to_string());
            syn::visit::visit_item_mod(self, item);
            self.scope.pop();
        }
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        let mut leaves = Vec::new();
        Self::use_leaves(&item.tree, &mut Vec::new(), &mut leaves);
        for (segments, bound) in &leaves {
            if let (Some(path), Some(name)) = (self.resolve(segments), bound)
                && !path.is_empty()
            {
                self.aliases.insert(name.clone(), path);
            }
        }
        let public = matches!(item.vis, syn::Visibility::Public(_));
        for (segments, bound) in leaves {
            let Some(path) = self.resolve(&segments) else { continue };
            if path.is_empty() {
                continue;
            }
            // `pub use child::Item` in a mod.rs: `super::Item` elsewhere means `child`.
            if public
                && self.file_is_mod_rs
                && path.len() > self.scope.len() + 1
                && path.starts_with(&self.scope)
                && let Some(name) = bound
            {
                self.reexports.push((name, path[self.scope.len()].clone()));
            }
            self.references.push(path);
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        self.add(&segments);
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.scan_tokens(mac.tokens.clone());
        syn::visit::visit_macro(self, mac);
    }
}

fn parse_all() -> Vec<Source> {
    let src = main_src();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<ModPath> = files.iter().map(|f| module_of(&src, f)).collect();
    files
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file).expect("readable source");
            let syntax = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let module = module_of(&src, &file);
            let in_binary = file.ends_with("main.rs") || module.first().is_some_and(|m| m == "cli");
            let mut collector = Collector {
                scope: module.clone(),
                in_binary,
                file_is_mod_rs: file.ends_with("mod.rs"),
                modules: modules.clone(),
                aliases: BTreeMap::new(),
                references: Vec::new(),
                reexports: Vec::new(),
            };
            // Twice: the first pass learns the aliases of every `use` item, wherever it
            // stands in the file, the second resolves every path with them.
            collector.visit_file(&syntax);
            collector.references.clear();
            collector.reexports.clear();
            collector.visit_file(&syntax);
            Source { file, module, references: collector.references, reexports: collector.reexports }
        })
        .collect()
}

/// The modules that are files or directories of `parent`'s directory.
fn children(sources: &[Source], parent: &[String]) -> BTreeSet<String> {
    sources
        .iter()
        .filter(|s| s.module.len() > parent.len() && s.module.starts_with(parent))
        .map(|s| s.module[parent.len()].clone())
        .collect()
}

/// Per directory module (the crate root is `[]`): child → child it names → how.
type Graphs = BTreeMap<ModPath, BTreeMap<String, BTreeMap<String, BTreeSet<String>>>>;

fn graphs(sources: &[Source]) -> Graphs {
    let reexports: BTreeMap<(ModPath, String), String> = sources
        .iter()
        .flat_map(|s| s.reexports.iter().map(|(name, child)| ((s.module.clone(), name.clone()), child.clone())))
        .collect();
    let mut graphs = Graphs::new();
    for source in sources {
        for target in &source.references {
            let common = source.module.iter().zip(target).take_while(|(a, b)| a == b).count();
            // The file itself, or its mod.rs naming its own children.
            if common >= source.module.len() || common >= target.len() {
                continue;
            }
            let parent = source.module[..common].to_vec();
            let kids = children(sources, &parent);
            let from = source.module[common].clone();
            let to = if kids.contains(&target[common]) {
                target[common].clone()
            } else if let Some(child) = reexports.get(&(parent.clone(), target[common].clone())) {
                child.clone()
            } else {
                continue; // an item of the parent's mod.rs
            };
            if from != to {
                let how =
                    format!("{} names {}", source.file.strip_prefix(main_src()).unwrap().display(), target.join("::"));
                graphs.entry(parent).or_default().entry(from).or_default().entry(to).or_default().insert(how);
            }
        }
    }
    graphs
}

/// The strongly connected components with more than one module (Tarjan's algorithm).
fn loops(graph: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>) -> Vec<Vec<String>> {
    struct Tarjan<'a> {
        graph: &'a BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.graph.get(v).into_iter().flat_map(|e| e.keys()) {
                if !self.index.contains_key(w.as_str()) {
                    self.visit(w);
                    let low = self.low[w.as_str()].min(self.low[v]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w.as_str()) {
                    let low = self.index[w.as_str()].min(self.low[v]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.out.push(component);
                }
            }
        }
    }
    let mut t = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.out
}

#[test]
fn no_two_modules_import_each_other() {
    let sources = parse_all();
    let graphs = graphs(&sources);
    let mut failures = Vec::new();
    for (parent, graph) in &graphs {
        let name = if parent.is_empty() { "src/".to_owned() } else { format!("src/{}/", parent.join("/")) };
        println!("{name}");
        for (from, edges) in graph {
            println!("  {from} -> {}", edges.keys().cloned().collect::<Vec<_>>().join(", "));
        }
        for component in loops(graph) {
            let mut evidence = Vec::new();
            for from in &component {
                for (to, how) in &graph[from] {
                    if component.contains(to) {
                        evidence.push(format!(
                            "    {from} -> {to}: {}",
                            how.iter().cloned().collect::<Vec<_>>().join("; ")
                        ));
                    }
                }
            }
            failures.push(format!("  in {name}: {} import each other:\n{}", component.join(", "), evidence.join("\n")));
        }
    }
    assert!(failures.is_empty(), "modules that import each other:\n{}", failures.join("\n"));
}

#[test]
fn the_checker_sees_a_loop() {
    // The checker itself: a loop between two files of one directory, written both ways
    // that code names a module (a `use` item and a path in a macro body).
    let mut graph: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    graph.entry("a".into()).or_default().entry("b".into()).or_default();
    graph.entry("b".into()).or_default().entry("c".into()).or_default();
    graph.entry("c".into()).or_default().entry("a".into()).or_default();
    graph.entry("d".into()).or_default().entry("a".into()).or_default();
    assert_eq!(loops(&graph), vec![vec!["a".to_owned(), "b".to_owned(), "c".to_owned()]]);

    let file: syn::File = syn::parse_quote! {
        use super::{Plugin, state};
        use crate::network;
        fn f() { tracing::info!("{}", crate::agent::reconcile::desired()); }
        fn g() { network::find(); }
        mod tests { use super::*; }
    };
    let mut collector = Collector {
        scope: vec!["docker".into(), "tasks".into()],
        in_binary: false,
        file_is_mod_rs: false,
        modules: BTreeSet::new(),
        aliases: BTreeMap::new(),
        references: Vec::new(),
        reexports: Vec::new(),
    };
    collector.visit_file(&file);
    let named: BTreeSet<String> = collector.references.iter().map(|p| p.join("::")).collect();
    assert!(named.contains("docker::state"), "{named:?}");
    assert!(named.contains("network::find"), "{named:?}");
    assert!(named.contains("docker::Plugin"), "{named:?}");
    assert!(named.contains("agent::reconcile::desired"), "{named:?}");
    assert!(named.contains("docker::tasks"), "{named:?}"); // the tests' `super::*`
}
