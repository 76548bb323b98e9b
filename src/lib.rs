//! spadework: semantic image synthesis on hand-written WGSL kernels (wgpu) with a fast CPU twin.
//!
//! Layers, bottom to top; a module uses only the layers below it (checked by a test below):
//! - [`io`], [`rng`]: files (map PNGs, images, `.npy`, atomic writes) and a versioned RNG.
//! - [`backend`]: the two devices (`cpu`: Rust + gemm + rayon; `gpu`: wgpu running
//!   `kernels/*.wgsl`, with typed kernel parameters); knows no op.
//! - [`tensor`]: a row-major f32 tensor that lives on one device.
//! - [`ops`]: one module per op family — shape rules, the CPU twin, the GPU dispatch of its kernel.
//! - [`weights`]: model files (mapped, decoded lazily), the safe `.pth` reader and the prefix
//!   loader every model builds its layers with.
//! - [`models`]: networks written like the paper's figure, one directory per family (SPADE, CLIP).
//! - [`schedulers`]: diffusion samplers, one file per diffusers scheduler class (same layer).
//! - [`pipelines`]: model files to images (the SPADE render pipeline, Stable Diffusion).
//! - [`paint`]: the painter's editing model, render worker and window (`spadework paint`).
//! - [`bench`]: the workloads and reports of `spadework bench`.
pub mod backend;
pub mod bench;
#[doc(hidden)]
pub mod fuzz_entry;
pub mod io;
pub mod models;
pub mod ops;
pub mod paint;
pub mod pipelines;
pub mod rng;
pub mod schedulers;
pub mod tensor;
pub mod weights;

pub use backend::{BackendChoice, Device};
pub use tensor::Tensor;

#[cfg(test)]
mod layering {
    use std::collections::BTreeSet;
    use std::path::Path;

    /// The library's top-level modules, bottom layer first; a module may use only those before it
    /// (modules of the same layer not each other).
    const LAYERS: &[&[&str]] = &[
        &["io", "rng"],
        &["backend"],
        &["tensor"],
        &["ops"],
        &["weights"],
        &["models", "schedulers"],
        &["pipelines"],
        &["paint"],
        &["bench", "fuzz_entry"],
    ];

    fn layer(m: &str) -> Option<usize> {
        LAYERS.iter().position(|l| l.contains(&m))
    }

    fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                rust_files(&p, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }

    /// Every `<prefix><module>` (`crate::` or `super::`) a file names in code (not comments).
    fn uses_with(src: &str, prefix: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        // Not the `#[cfg(test)]` tail: tests may reach anywhere.
        for line in src.lines().take_while(|l| !l.starts_with("#[cfg(test)]")) {
            let code = line.split("//").next().unwrap_or("");
            for (i, _) in code.match_indices(prefix) {
                let rest = &code[i + prefix.len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                // `crate::kernel_params!` is a macro exported at the root, not a module.
                if !name.is_empty() && !rest[name.len()..].starts_with('!') {
                    out.insert(name);
                }
            }
        }
        out
    }

    #[test]
    fn modules_use_only_the_layers_below_them() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let mut bad = Vec::new();
        let mut seen = BTreeSet::new();
        for f in files {
            let rel = f.strip_prefix(&src).unwrap();
            let top = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy();
            let top = top.trim_end_matches(".rs").to_string();
            if top == "bin" || top == "lib" {
                continue;
            }
            let Some(own) = layer(&top) else {
                bad.push(format!("{}: module '{top}' is in no layer", rel.display()));
                continue;
            };
            seen.insert(top.clone());
            for used in uses_with(&std::fs::read_to_string(&f).unwrap(), "crate::") {
                if used == top {
                    continue;
                }
                match layer(&used) {
                    Some(l) if l < own => {}
                    _ => bad.push(format!("{}: '{top}' uses '{used}'", rel.display())),
                }
            }
        }
        assert!(bad.is_empty(), "layering broken:\n{}", bad.join("\n"));
        // Every layer names a module that exists.
        let all: BTreeSet<String> = LAYERS
            .iter()
            .flat_map(|l| l.iter().map(|s| s.to_string()))
            .collect();
        assert_eq!(all, seen);
    }

    #[test]
    fn sibling_modules_form_no_cycle() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        // file → the sibling files (same directory) it names through `super::`.
        let mut edges: std::collections::BTreeMap<std::path::PathBuf, Vec<std::path::PathBuf>> =
            Default::default();
        for f in &files {
            let dir = f.parent().unwrap();
            let name = f.file_name().unwrap_or_default();
            if name == "mod.rs" || name == "lib.rs" || name == "tests.rs" {
                continue; // a parent naming its children is not a cycle; tests reach anywhere
            }
            let text = std::fs::read_to_string(f).unwrap();
            let sibs = uses_with(&text, "super::")
                .into_iter()
                .map(|m| dir.join(format!("{m}.rs")))
                .filter(|p| p.exists() && p != f)
                .collect();
            edges.insert(f.clone(), sibs);
        }
        fn visit(
            n: &std::path::PathBuf,
            edges: &std::collections::BTreeMap<std::path::PathBuf, Vec<std::path::PathBuf>>,
            path: &mut Vec<std::path::PathBuf>,
            done: &mut BTreeSet<std::path::PathBuf>,
        ) -> Option<String> {
            if let Some(i) = path.iter().position(|p| p == n) {
                let cycle: Vec<String> =
                    path[i..].iter().map(|p| p.display().to_string()).collect();
                return Some(cycle.join(" → "));
            }
            if !done.insert(n.clone()) {
                return None;
            }
            path.push(n.clone());
            for m in edges.get(n).into_iter().flatten() {
                if let Some(c) = visit(m, edges, path, done) {
                    return Some(c);
                }
            }
            path.pop();
            None
        }
        let mut done = BTreeSet::new();
        for n in edges.keys() {
            if let Some(c) = visit(n, &edges, &mut Vec::new(), &mut done) {
                panic!("module cycle: {c}");
            }
        }
    }
}
