//! End to end against our PyTorch reference (tools/make_fixtures.py): NVlabs-layout checkpoints
//! (legacy and zip .pth) → `spadework convert` → `spadework render --raw` on both backends,
//! max |Δ| ≤ 1e-4 on the float output and uint8 pixels within 1.
mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_spadework"));
    c.env(
        "XDG_RUNTIME_DIR",
        std::env::var("XDG_RUNTIME_DIR").unwrap_or("/tmp".into()),
    );
    c
}

fn run(mut c: Command, dir: &Path) -> String {
    let out = c.current_dir(dir).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "command failed: {c:?}\n{err}");
    err
}

fn tmp(name: &str) -> PathBuf {
    common::scratch("spade_fixtures").join(name)
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// Converts the case and renders `render_key` args on every backend, comparing with `expected_key`.
fn check_case(case: &str, render_key: &str, expected_key: &str) {
    let dir = fixture(&format!("spade/{case}"));
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap()).unwrap();
    let st = tmp(&format!("{case}.safetensors"));
    let mut c = bin();
    c.arg("convert")
        .arg("latest_net_G.pth")
        .arg("-o")
        .arg(&st)
        .args(strs(&meta["convert_args"]));
    run(c, &dir);
    let (shape, expected) =
        spadework::io::npy::read_f32(&dir.join(meta[expected_key].as_str().unwrap())).unwrap();
    let backends: Vec<&str> = if gpu().is_some() {
        vec!["cpu", "gpu"]
    } else {
        vec!["cpu"]
    };
    for be in backends {
        let raw = tmp(&format!("{case}-{render_key}-{be}.npy"));
        let png = tmp(&format!("{case}-{render_key}-{be}.png"));
        let mut c = bin();
        c.arg("render")
            .arg("--weights")
            .arg(&st)
            .args(strs(&meta[render_key]))
            .args(["--backend", be])
            .arg("-o")
            .arg(&png)
            .arg("--raw")
            .arg(&raw);
        run(c, &dir);
        let (s, got) = spadework::io::npy::read_f32(&raw).unwrap();
        assert_eq!(s, shape, "{case} {be}: output shape");
        let d = max_abs_diff(&got, &expected);
        eprintln!("{case} [{render_key}] {be}: max |Δ| = {d:e}");
        assert!(d <= 1e-4, "{case} {be}: max |Δ| {d} > 1e-4");
        // Quantised output: uint8 within 1 of the reference's truncation.
        let (h, w) = (shape[2], shape[3]);
        let want8 = spadework::io::image::to_rgb8(&expected, h, w);
        let got8 = image::open(&png).unwrap().to_rgb8().into_raw();
        let off = want8.iter().zip(&got8).filter(|(a, b)| a != b).count();
        assert!(
            want8.iter().zip(&got8).all(|(a, b)| a.abs_diff(*b) <= 1),
            "{case} {be}: a pixel differs by > 1"
        );
        assert!(
            off * 1000 <= want8.len(),
            "{case} {be}: {off} uint8 values differ"
        );
    }
}

#[test]
fn normal_legacy_pth() {
    check_case("normal_legacy", "render_args", "expected");
}

#[test]
fn more_with_instance_edges_zip_pth() {
    check_case("more_instance_zip", "render_args", "expected");
}

#[test]
fn most_without_spectral_norm_legacy_pth() {
    check_case("most_batch_legacy", "render_args", "expected");
}

#[test]
fn vae_instance_norm_with_fixed_z() {
    check_case("vae_instance_zip", "render_args", "expected");
}

#[test]
fn vae_style_encoder() {
    check_case("vae_instance_zip", "style_render_args", "expected_style");
}

#[test]
fn style_encoder_mu_matches_reference() {
    let dir = fixture("spade/vae_instance_zip");
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap()).unwrap();
    let mut args = strs(&meta["convert_args"]);
    let i = args.iter().position(|a| a == "--netE").unwrap();
    args[i + 1] = dir.join(&args[i + 1]).display().to_string();
    let mut cfg = spadework::models::SpadeConfig::preset("ade20k").unwrap();
    cfg.label_nc = 5;
    cfg.contain_dontcare_label = false;
    cfg.use_vae = true;
    cfg.norm_g = "spectralspadeinstance3x3".parse().unwrap();
    cfg.ngf = 0;
    let store = spadework::models::spade::convert::convert(
        &dir.join("latest_net_G.pth"),
        Some(&dir.join("latest_net_E.pth")),
        cfg,
    )
    .unwrap();
    let (_, mu_ref) = spadework::io::npy::read_f32(&dir.join("expected_mu.npy")).unwrap();
    let (_, lv_ref) = spadework::io::npy::read_f32(&dir.join("expected_logvar.npy")).unwrap();
    for d in devices() {
        let m = spadework::pipelines::spade::SpadePipeline::from_store(
            &store,
            &d,
            spadework::backend::WeightStorage::F32,
        )
        .unwrap();
        let (mu, lv) = m.encode_style(&dir.join("style.png")).unwrap();
        assert!(
            max_abs_diff(&mu, &mu_ref) <= 1e-4,
            "mu on {d:?}: {}",
            max_abs_diff(&mu, &mu_ref)
        );
        assert!(max_abs_diff(&lv, &lv_ref) <= 1e-4, "logvar on {d:?}");
    }
}
