//! The built-in text-to-image stack: the layout cascade against its PyTorch twin
//! (tools/train_layout.py fixtures: a tiny random cascade, given text and noise), on both
//! backends.
mod common;
use spadework::backend::Device;
use spadework::models::prior::sinusoid;
use spadework::pipelines::layout_diffusion::{LayoutCascade, LayoutNoise, LayoutParams};
use spadework::tensor::Tensor;
use spadework::weights::store::WeightStore;

fn expected() -> WeightStore {
    WeightStore::load(&common::fixture("layout/expected.safetensors")).unwrap()
}

fn tensor(s: &WeightStore, d: &Device, name: &str) -> Tensor {
    let shape = s.shape(name).unwrap().to_vec();
    Tensor::from_vec(d, &shape, s.values(name).unwrap().into_owned()).unwrap()
}

#[test]
fn layout_cascade_matches_its_pytorch_twin() {
    let e = expected();
    let runs: serde_json::Value = serde_json::from_str(&e.metadata["runs"]).unwrap();
    for d in common::devices() {
        let c = LayoutCascade::from_folder(&common::fixture("layout"), &d).unwrap();
        let cond = |which: &str| {
            let pooled = e.values(&format!("{which}.pooled")).unwrap();
            c.text_cond(&tensor(&e, &d, &format!("{which}.tokens")), &pooled)
                .unwrap()
        };
        let (text, empty) = (cond("text"), cond("empty"));
        let noise = LayoutNoise {
            base: tensor(&e, &d, "noise.base"),
            sr: tensor(&e, &d, "noise.sr"),
            aug: tensor(&e, &d, "noise.aug"),
        };
        for name in ["none", "static", "dynamic"] {
            let r = &runs[name];
            let p = LayoutParams {
                steps: 6,
                guidance: r["guidance"].as_f64().unwrap() as f32,
                sr_guidance: r["sr_guidance"].as_f64().unwrap() as f32,
                static_threshold: r["clip"].as_bool().unwrap(),
                dynamic_threshold: r["dyn"].as_f64(),
                aug: r["aug"].as_f64().unwrap(),
                base_only: false,
            };
            let mut calls = 0;
            let out = c
                .generate(&text, &empty, &p, &noise, &mut || calls += 1)
                .unwrap();
            assert_eq!(calls, 12, "one progress call per UNet step");
            let low = out.low_sample.to_vec().unwrap();
            let err = common::max_abs_diff(&low, &e.values(&format!("{name}.low")).unwrap());
            assert!(err < 1e-4, "{name} base on {d:?}: max |Δ| {err}");
            let high = out.high_sample.unwrap().to_vec().unwrap();
            let err = common::max_abs_diff(&high, &e.values(&format!("{name}.high")).unwrap());
            assert!(err < 1e-4, "{name} SR on {d:?}: max |Δ| {err}");
            // The labels are the argmax of the SR sample, in ADE20K ids.
            assert_eq!(out.labels.len(), 16 * 16);
            assert!(out.labels.iter().all(|l| [3, 5, 10, 22, 69].contains(l)));
            // Base only: the base layout upsampled by nearest.
            let b = c
                .generate(
                    &text,
                    &empty,
                    &LayoutParams {
                        base_only: true,
                        ..p.clone()
                    },
                    &noise,
                    &mut || {},
                )
                .unwrap();
            assert!(b.high_sample.is_none());
            let lo_idx = spadework::pipelines::layout_diffusion::argmax_channels(&low, 5, 64);
            let ids = [3u32, 5, 10, 22, 69];
            for (i, l) in b.labels.iter().enumerate() {
                assert_eq!(*l, ids[lo_idx[(i / 16 / 2) * 8 + (i % 16) / 2] as usize]);
            }
        }
    }
}

#[test]
fn layout_cascade_names_bad_parameters() {
    let d = Device::Cpu;
    let c = LayoutCascade::from_folder(&common::fixture("layout"), &d).unwrap();
    let e = expected();
    let t = tensor(&e, &d, "text.tokens");
    let text = c.text_cond(&t, &e.values("text.pooled").unwrap()).unwrap();
    let noise = c.noise(3).unwrap();
    let run = |p: LayoutParams| {
        c.generate(&text, &text, &p, &noise, &mut || {})
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let base = LayoutParams::default();
    assert!(
        run(LayoutParams {
            steps: 0,
            ..base.clone()
        })
        .contains("steps must be 1 to 1000")
    );
    assert!(
        run(LayoutParams {
            aug: 1.5,
            ..base.clone()
        })
        .contains("augmentation level")
    );
    assert!(
        run(LayoutParams {
            dynamic_threshold: Some(1.5),
            ..base.clone()
        })
        .contains("--dynamic-threshold")
    );
    assert!(
        run(LayoutParams {
            static_threshold: true,
            dynamic_threshold: Some(0.9),
            ..base.clone()
        })
        .contains("exclude each other")
    );
    // Text of the wrong length or width is named.
    let e2 = c.text_cond(&t, &[0.0; 5]).err().unwrap().to_string();
    assert!(e2.contains("[1, 4, width]"), "{e2}");
    // Noise of another shape is named.
    let bad = LayoutNoise {
        base: Tensor::from_vec(&d, &[1, 5, 4, 4], vec![0.0; 80]).unwrap(),
        sr: noise.sr,
        aug: noise.aug,
    };
    let msg = c
        .generate(&text, &text, &base, &bad, &mut || {})
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("base noise must be [1, 5, 8, 8]"), "{msg}");
}

#[test]
fn sinusoid_is_cos_then_sin() {
    let e = sinusoid(100.0, 8);
    assert_eq!(e.len(), 8);
    // i = 0: frequency 1; i = 1: 10000^(-1/4) = 0.1.
    assert!((e[0] - 100f32.cos()).abs() < 1e-6 && (e[4] - 100f32.sin()).abs() < 1e-6);
    assert!((e[1] - 10f32.cos()).abs() < 1e-5 && (e[5] - 10f32.sin()).abs() < 1e-5);
    assert_eq!(sinusoid(0.0, 4), [1.0, 1.0, 0.0, 0.0]);
}

#[test]
fn look_prior_matches_its_pytorch_twin() {
    let store = WeightStore::load(&common::fixture("prior/tiny.safetensors")).unwrap();
    let steps: usize = store.metadata["steps"].parse().unwrap();
    let g: f32 = store.metadata["guidance"].parse().unwrap();
    for d in common::devices() {
        // The fixture's expected.* tensors are not the model's: load from a copy without them.
        let mut model_store =
            WeightStore::load(&common::fixture("prior/tiny.safetensors")).unwrap();
        for n in ["text", "empty", "noise", "sample"] {
            model_store.remove(&format!("expected.{n}"));
        }
        let prior =
            spadework::pipelines::text_to_image::Prior::from_store(&model_store, &d).unwrap();
        let z = prior
            .sample(
                &tensor(&store, &d, "expected.text"),
                &tensor(&store, &d, "expected.empty"),
                &tensor(&store, &d, "expected.noise"),
                steps,
                g,
            )
            .unwrap();
        let err = common::max_abs_diff(
            &z.to_vec().unwrap(),
            &store.values("expected.sample").unwrap(),
        );
        assert!(err < 1e-4, "{d:?}: max |Δ| {err}");
    }
}

mod cli {
    use super::common::{fails, ok};
    use std::path::PathBuf;

    fn tmp(name: &str) -> PathBuf {
        super::common::scratch("text_to_image").join(name)
    }

    /// The landscape model's ADE20K ids.
    fn model_ids() -> Vec<u32> {
        let store = spadework::pipelines::spade::load_store(None).unwrap();
        let cfg = spadework::pipelines::SpadePipeline::config_of(&store).unwrap();
        cfg.classes.iter().map(|c| c.id).collect()
    }

    #[test]
    fn builtin_txt2img_writes_an_image_and_a_layout_that_render_opens() {
        let (out, lay) = (tmp("lake.png"), tmp("lake_layout.png"));
        let (o, l) = (out.to_str().unwrap(), lay.to_str().unwrap());
        let err = ok(&[
            "txt2img",
            "a calm lake below snowy mountains",
            "-o",
            o,
            "--layout-out",
            l,
            "--steps",
            "4",
            "--backend",
            "cpu",
        ]);
        assert!(
            err.contains("text") && err.contains("layout") && err.contains("render"),
            "{err}"
        );
        let img = image::open(&out).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (128, 128));
        // Not one flat colour.
        let first = *img.get_pixel(0, 0);
        assert!(img.pixels().any(|p| *p != first));
        // The layout is a palette PNG of the model's ADE20K ids (index = id)...
        let map = spadework::io::map_png::read_map_png(&lay).unwrap();
        let spadework::io::map_png::Pixels::Ids(ids) = map.pixels else {
            panic!("the layout is not an id map")
        };
        assert_eq!((map.width, map.height), (128, 128));
        let known = model_ids();
        assert!(ids.iter().all(|i| known.contains(i)));
        // ... which `render` opens as a map.
        ok(&[
            "render",
            "--map",
            l,
            "-o",
            tmp("again.png").to_str().unwrap(),
            "--backend",
            "cpu",
        ]);
        // The same seed gives the same layout.
        let lay2 = tmp("lake_layout2.png");
        ok(&[
            "txt2img",
            "a calm lake below snowy mountains",
            "-o",
            tmp("lake2.png").to_str().unwrap(),
            "--layout-out",
            lay2.to_str().unwrap(),
            "--steps",
            "4",
            "--backend",
            "cpu",
        ]);
        assert_eq!(std::fs::read(&lay).unwrap(), std::fs::read(&lay2).unwrap());
    }

    #[test]
    fn builtin_txt2img_samples_make_a_layout_and_image_grid() {
        let (out, lay) = (tmp("grid.png"), tmp("grid_layout.png"));
        ok(&[
            "txt2img",
            "woods and a river",
            "-o",
            out.to_str().unwrap(),
            "--layout-out",
            lay.to_str().unwrap(),
            "--samples",
            "2",
            "--steps",
            "3",
            "--no-sr",
            "--dynamic-threshold",
            "0.99",
            "--backend",
            "cpu",
        ]);
        // Two tiles of layout | image side by side (2-pixel gaps).
        let img = image::open(&out).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (2 * (2 * 128 + 2) + 2, 128));
        for k in 0..2 {
            assert!(tmp(&format!("grid_layout-{k}.png")).exists());
        }
    }

    #[test]
    fn txt2img_flags_of_the_other_stack_are_named() {
        let o = tmp("x.png");
        let o = o.to_str().unwrap();
        let e = fails(&["txt2img", "a lake", "-o", o, "--scheduler", "ddim"]);
        assert!(
            e.contains("--scheduler is for Stable Diffusion pipelines"),
            "{e}"
        );
        let sd = super::common::fixture("sd/sd1/pipeline");
        let e = fails(&[
            "txt2img",
            "--weights",
            sd.to_str().unwrap(),
            "a lake",
            "-o",
            o,
            "--layout-out",
            o,
        ]);
        assert!(e.contains("--layout-out is for the built-in"), "{e}");
        let e = fails(&["txt2img", "a lake", "-o", o, "--dynamic-threshold", "1.5"]);
        assert!(e.contains("--dynamic-threshold"), "{e}");
        // The layout may not overwrite the image.
        let e = fails(&["txt2img", "a lake", "-o", o, "--layout-out", o]);
        assert!(e.contains("--layout-out") && e.contains("-o"), "{e}");
    }
}

#[test]
fn embed_prints_one_unit_vector_per_sentence() {
    let out = common::run_cli(&["embed", "a lake at dusk", "woods", "--backend", "cpu"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<Vec<f32>> = text
        .lines()
        .map(|l| l.split(' ').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert_eq!(r.len(), 384);
        let n: f32 = r.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((n - 1.0).abs() < 1e-4, "{n}");
    }
}
