//! The paint window end to end, under Xvfb: a scripted sequence of real input events (palette
//! clicks, a brush drag, a fill, Ctrl+Z) goes through egui's input path; the test then checks the
//! saved map, the screenshots (the canvas and the preview changed), the generated image, the
//! autosave, and that a second start restores the painting.
#![cfg(feature = "paint")]
mod common;
use spadework::models::SpadeConfig;
use spadework::models::spade::config::ClassInfo;
use spadework::paint::files::{Palette, open_map};
use std::path::{Path, PathBuf};
use std::process::Command;

fn landscape_cfg() -> SpadeConfig {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("maps");
    let classes: Vec<ClassInfo> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("classes.json")).unwrap()).unwrap();
    SpadeConfig {
        label_nc: classes.len(),
        contain_dontcare_label: false,
        no_instance: true,
        crop_size: 64,
        ngf: 4,
        use_vae: true,
        classes,
        ..SpadeConfig::nvlabs_defaults()
    }
}

fn run_paint(dir: &Path, weights: &Path, script: &serde_json::Value, extra: &[&str]) {
    let xvfb = which("xvfb-run").unwrap_or_else(|| {
        panic!("xvfb-run not found: the paint window test needs Xvfb (apt-get install -y xvfb)")
    });
    let script_path = dir.join(format!("script{}.json", extra.len()));
    std::fs::write(&script_path, serde_json::to_string_pretty(script).unwrap()).unwrap();
    let out = Command::new(xvfb)
        .args(["-a", "-s", "-screen 0 1280x800x24"])
        .arg(env!("CARGO_BIN_EXE_spadework"))
        .arg("paint")
        .arg("--weights")
        .arg(weights)
        .args(["--backend", "cpu", "--autosave-dir"])
        .arg(dir.join("autosave"))
        .arg("--replay")
        .arg(&script_path)
        .args(extra)
        .env("WGPU_BACKEND", "vulkan")
        .env("XDG_RUNTIME_DIR", "/tmp")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "spadework paint failed:\n{log}");
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

fn rgb(path: &Path) -> (Vec<u8>, usize, usize) {
    let img = image::open(path).unwrap().to_rgb8();
    let (w, h) = img.dimensions();
    (img.into_raw(), w as usize, h as usize)
}

/// Mean absolute difference of two screenshots inside a [x0, y0, x1, y1] rectangle (points).
fn region_diff(a: &Path, b: &Path, r: [f32; 4], ppp: f32) -> f64 {
    let (pa, w, _) = rgb(a);
    let (pb, _, _) = rgb(b);
    let (x0, y0, x1, y1) = (
        (r[0] * ppp) as usize,
        (r[1] * ppp) as usize,
        (r[2] * ppp) as usize,
        (r[3] * ppp) as usize,
    );
    let mut sum = 0f64;
    let mut n = 0usize;
    for y in y0..y1 {
        for x in x0..x1 {
            for c in 0..3 {
                let i = (y * w + x) * 3 + c;
                sum += (pa[i] as f64 - pb[i] as f64).abs();
                n += 1;
            }
        }
    }
    sum / n.max(1) as f64
}

fn layout(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p.with_extension("json")).unwrap()).unwrap()
}

fn rect(v: &serde_json::Value) -> [f32; 4] {
    let a: Vec<f32> = serde_json::from_value(v.clone()).unwrap();
    [a[0], a[1], a[2], a[3]]
}

#[test]
fn paint_window_replay_edits_renders_autosaves_and_restores() {
    let dir = common::scratch("paint_e2e");
    let cfg = landscape_cfg();
    let weights = dir.join("model.safetensors");
    spadework::pipelines::spade::SpadePipeline::random_store(&cfg, 5)
        .unwrap()
        .save(&weights)
        .unwrap();
    let p = |n: &str| dir.join(n).display().to_string();
    // A new painting is 256x256: sky above row 140, grass below.
    let script = serde_json::json!({"timeout_s": 240, "steps": [
        {"op": "wait_render"},
        {"op": "screenshot", "path": p("before.png")},
        {"op": "click_class", "name": "water"},
        {"op": "key", "key": "B"},
        {"op": "drag", "points": [[20, 200], [230, 200], [230, 240]]},
        {"op": "wait_render"},
        {"op": "screenshot", "path": p("after.png")},
        {"op": "key", "key": "F"},
        {"op": "click_class", "name": "rock"},
        {"op": "click", "at": [5, 5]},
        {"op": "wait_render"},
        {"op": "save_map", "path": p("filled.png")},
        {"op": "key", "key": "Z", "ctrl": true},
        {"op": "wait_render"},
        {"op": "save_map", "path": p("final.png")},
        {"op": "save_image", "path": p("image.png")},
        {"op": "quit"}
    ]});
    run_paint(&dir, &weights, &script, &[]);

    let pal = Palette::for_model(&cfg);
    let id = |n: &str| pal.lookup(n).unwrap().id;
    let (filled, _) = open_map(&dir.join("filled.png"), &pal).unwrap();
    let (fin, _) = open_map(&dir.join("final.png"), &pal).unwrap();
    assert_eq!((fin.w, fin.h), (256, 256));
    let at = |c: &spadework::paint::Canvas, x: usize, y: usize| c.ids[y * c.w + x];
    // The stroke went through the real pointer path onto the map.
    for x in (24..226).step_by(10) {
        assert_eq!(at(&fin, x, 200), id("water"), "stroke at ({x}, 200)");
    }
    assert_eq!(at(&fin, 230, 235), id("water"));
    assert_eq!(at(&fin, 100, 100), id("sky"));
    assert_eq!(at(&fin, 100, 170), id("grass"));
    // The fill turned the sky to rock; Ctrl+Z undid it.
    assert_eq!(at(&filled, 5, 5), id("rock"));
    assert_eq!(at(&filled, 250, 100), id("rock"));
    assert_eq!(at(&fin, 5, 5), id("sky"));
    let painted = fin.ids.iter().filter(|&&v| v == id("water")).count();
    assert!(painted > 1000, "{painted} water pixels");

    // The screenshots: the canvas and the preview both changed after the stroke.
    let (b, a) = (dir.join("before.png"), dir.join("after.png"));
    let lb = layout(&b);
    let ppp = lb["pixels_per_point"].as_f64().unwrap() as f32;
    let d_canvas = region_diff(&b, &a, rect(&lb["canvas"]), ppp);
    let d_preview = region_diff(&b, &a, rect(&lb["preview"]), ppp);
    assert!(d_canvas > 1.0, "canvas region changed by {d_canvas}");
    assert!(d_preview > 0.5, "preview region changed by {d_preview}");
    assert!(layout(&a)["shown_seq"].as_u64().unwrap() > lb["shown_seq"].as_u64().unwrap());
    let (_, iw, ih) = rgb(&dir.join("image.png"));
    assert_eq!((iw, ih), (64, 64));

    // The autosave holds the final painting, and a second start restores it.
    let (auto, _) = open_map(&dir.join("autosave/painting.png"), &pal).unwrap();
    assert_eq!(auto, fin);
    let script2 = serde_json::json!({"steps": [
        {"op": "wait_render"},
        {"op": "save_map", "path": p("restored.png")},
        {"op": "quit"}
    ]});
    run_paint(&dir, &weights, &script2, &["--seed", "3"]);
    let (restored, _) = open_map(&dir.join("restored.png"), &pal).unwrap();
    assert_eq!(restored, fin, "the second start restored the painting");
    if std::env::var_os("SPADEWORK_KEEP_TEST_OUTPUT").is_none() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
