#![allow(dead_code)]
use spadework::backend::{BackendChoice, Device};
use std::path::PathBuf;

/// The GPU device for tests. Under CI (`CI` set) a missing adapter fails the test; elsewhere the
/// test prints why and returns None.
pub fn gpu() -> Option<Device> {
    match Device::select(BackendChoice::Gpu, None) {
        Ok(d) => Some(d),
        Err(e) => {
            if std::env::var_os("CI").is_some() {
                panic!("CI: no GPU adapter for the GPU tests: {e:#}");
            }
            eprintln!("GPU test not run (no adapter, CI unset): {e:#}");
            None
        }
    }
}

/// Both backends: the CPU always, the GPU when present (required under CI).
pub fn devices() -> Vec<Device> {
    let mut v = vec![Device::Cpu];
    v.extend(gpu());
    v
}

/// A scratch directory `tag` under Cargo's `target/tmp` (`CARGO_TARGET_TMPDIR`), emptied the first
/// time this test process asks for it. Test outputs stay out of the system temp dir and take the
/// space of one run, whatever the number of runs; `cargo clean` removes them.
pub fn scratch(tag: &str) -> PathBuf {
    static CLEARED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(tag);
    let mut cleared = CLEARED.lock().unwrap_or_else(|e| e.into_inner());
    if !cleared.iter().any(|t| t == tag) {
        let _ = std::fs::remove_dir_all(&dir);
        cleared.push(tag.to_string());
    }
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Deterministic pseudo-random values in [-1, 1).
pub fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    spadework::rng::Rng::new(seed).uniform_vec(n, -1.0, 1.0)
}

/// Runs the CLI (`spadework ARGS`) and returns its output.
pub fn run_cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_spadework"))
        .args(args)
        .env("XDG_RUNTIME_DIR", "/tmp")
        .output()
        .unwrap()
}

/// Runs the CLI, expects success; returns stderr.
pub fn ok(args: &[&str]) -> String {
    let out = run_cli(args);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{args:?}: {err}");
    err
}

/// Runs the CLI, expects failure with exit code 1 (not a panic's 101); returns stderr.
pub fn fails(args: &[&str]) -> String {
    let out = run_cli(args);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected a clean error for {args:?}, got {:?}:\n{err}",
        out.status
    );
    assert!(!err.contains("panicked"), "{err}");
    err
}
