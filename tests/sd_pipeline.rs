//! The Stable Diffusion pipeline end to end against diffusers' `StableDiffusionPipeline`
//! (tools/sd_pipeline_reference.py): tiny random-weight pipelines saved as diffusers folders
//! (float16 weights; `sd2` as the `fp16` variant), the same latents and prompts, on both
//! backends; the `spadework txt2img` CLI once; named errors.
mod common;
use spadework::backend::{Device, WeightStorage};
use spadework::io::npy;
use spadework::models::vae::Tiling;
use spadework::pipelines::stable_diffusion::{
    GenerateParams, Inpaint, Latents, StableDiffusionPipeline,
};
use spadework::tensor::Tensor;
use std::path::{Path, PathBuf};

struct Expected {
    dir: PathBuf,
    json: serde_json::Value,
}

impl Expected {
    fn new(name: &str) -> Expected {
        let dir = common::fixture(&format!("sd/{name}"));
        let json =
            serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap())
                .unwrap();
        Expected { dir, json }
    }
    fn pipeline(&self) -> PathBuf {
        self.dir.join("pipeline")
    }
    fn variant(&self) -> Option<&str> {
        self.json["variant"].as_str()
    }
    fn npy(&self, file: &str) -> (Vec<usize>, Vec<f32>) {
        npy::read_f32(&self.dir.join(file)).unwrap()
    }
    fn usize(&self, key: &str) -> usize {
        self.json[key].as_u64().unwrap() as usize
    }
    fn params(&self, d: &Device, scheduler: Option<&'static str>) -> GenerateParams<'_> {
        let (shape, lat) = self.npy("latents.npy");
        GenerateParams {
            prompt: self.json["prompt"].as_str().unwrap(),
            negative_prompt: self.json["negative_prompt"].as_str().unwrap(),
            steps: self.usize("steps"),
            guidance: self.json["guidance"].as_f64().unwrap() as f32,
            width: self.usize("width"),
            height: self.usize("height"),
            latents: Latents::Given(Tensor::from_vec(d, &shape, lat).unwrap()),
            scheduler,
            init: None,
            inpaint: None,
            vae_tiling: Tiling::Off,
            progress: false,
        }
    }
}

fn load(e: &Expected, d: &Device) -> StableDiffusionPipeline {
    StableDiffusionPipeline::load(&e.pipeline(), d, WeightStorage::F32, e.variant()).unwrap()
}

/// Token ids and the text encoder's hidden states of both prompts, ≤ 1e-4.
fn check_text(e: &Expected, pipe: &StableDiffusionPipeline, d: &Device, name: &str) {
    let ids = |k: &str| -> Vec<u32> {
        e.json[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect()
    };
    let p = e.params(d, None);
    assert_eq!(
        pipe.tokenizer.encode(p.negative_prompt).unwrap().ids,
        ids("ids_negative")
    );
    assert_eq!(
        pipe.tokenizer.encode(p.prompt).unwrap().ids,
        ids("ids_prompt")
    );
    let got = pipe
        .encode_prompt(p.prompt, p.negative_prompt, true, &mut Vec::new())
        .unwrap();
    let (shape, want) = e.npy("prompt_embeds.npy");
    assert_eq!(got.shape(), &shape[..]);
    let diff = common::max_abs_diff(&got.to_vec().unwrap(), &want);
    eprintln!("{name} on {d:?}: text encoder max |Δ| = {diff:.2e}");
    assert!(
        diff <= 1e-4,
        "{name} on {d:?}: text encoder max |Δ| = {diff:e}"
    );
}

/// The decoded image of a run against `expected`, ≤ 1e-3.
fn check_image(
    e: &Expected,
    pipe: &StableDiffusionPipeline,
    d: &Device,
    scheduler: Option<&'static str>,
    expected: &str,
) {
    let out = pipe.generate(&e.params(d, scheduler)).unwrap();
    let (shape, want) = e.npy(expected);
    assert_eq!(out.image.shape(), &shape[..]);
    let diff = common::max_abs_diff(&out.image.to_vec().unwrap(), &want);
    let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
    eprintln!(
        "{} {expected} ({}) on {d:?}: image max |Δ| = {diff:.2e} (max |image| {scale:.2})",
        e.dir.display(),
        out.scheduler
    );
    assert!(diff <= 1e-3, "{expected} on {d:?}: max |Δ| = {diff:e}");
}

fn end_to_end(name: &str, overrides: &[&'static str]) {
    let e = Expected::new(name);
    for d in common::devices() {
        let pipe = load(&e, &d);
        check_text(&e, &pipe, &d, name);
        check_image(&e, &pipe, &d, None, "image.npy");
        for &s in overrides {
            check_image(&e, &pipe, &d, Some(s), &format!("image_{s}.npy"));
        }
    }
}

#[test]
fn sd1_matches_diffusers() {
    end_to_end("sd1", &["euler", "dpm++2m"]);
}

#[test]
fn sd2_matches_diffusers() {
    end_to_end("sd2", &["euler"]);
}

fn spadework() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_spadework"))
}

fn tmp(name: &str) -> PathBuf {
    common::scratch("sd_pipeline").join(name)
}

fn txt2img(e: &Expected, extra: &[&str]) -> std::process::Output {
    let mut c = spadework();
    c.arg("txt2img")
        .arg("--weights")
        .arg(e.pipeline())
        .arg(e.json["prompt"].as_str().unwrap());
    let defaults = [
        (
            "--negative-prompt",
            e.json["negative_prompt"].as_str().unwrap().to_string(),
        ),
        ("--steps", e.usize("steps").to_string()),
        ("--guidance", e.json["guidance"].to_string()),
        ("--width", e.usize("width").to_string()),
        ("--height", e.usize("height").to_string()),
        ("--backend", "cpu".to_string()),
        ("--variant", e.variant().unwrap_or("").to_string()),
    ];
    for (k, v) in defaults {
        let given = extra.iter().any(|a| a.split('=').next() == Some(k));
        if !given && !v.is_empty() {
            c.args([k, v.as_str()]);
        }
    }
    c.args(extra).output().unwrap()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn cli_txt2img_matches_diffusers() {
    let e = Expected::new("sd1");
    let (png, raw) = (tmp("out.png"), tmp("out.npy"));
    let lat = e.dir.join("latents.npy");
    let o = txt2img(
        &e,
        &[
            "--latents",
            lat.to_str().unwrap(),
            "-o",
            png.to_str().unwrap(),
            "--raw",
            raw.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let (shape, got) = npy::read_f32(&raw).unwrap();
    let (wshape, want) = e.npy("image.npy");
    assert_eq!(shape, wshape);
    let diff = common::max_abs_diff(&got, &want);
    eprintln!(
        "txt2img CLI: raw max |Δ| = {diff:.2e}; stderr:\n{}",
        stderr(&o)
    );
    assert!(diff <= 1e-3);
    assert!(std::fs::metadata(&png).unwrap().len() > 0);
}

fn fails_with(o: std::process::Output, needle: &str) {
    assert!(
        !o.status.success(),
        "expected a failure mentioning {needle:?}"
    );
    let err = stderr(&o);
    assert!(err.contains(needle), "{needle:?} not in: {err}");
}

#[test]
fn cli_rejects_bad_input() {
    let e = Expected::new("sd1");
    let out = tmp("bad.png");
    let o = out.to_str().unwrap();
    fails_with(txt2img(&e, &["--width", "36", "-o", o]), "multiples of 8");
    fails_with(txt2img(&e, &["--steps", "0", "-o", o]), "at least 1");
    fails_with(
        txt2img(&e, &["--guidance=-1", "-o", o]),
        "guidance scale must be ≥ 0",
    );
    // sd2's latents are [1, 4, 8, 10]; sd1 at 32×32 takes [1, 4, 8, 8].
    let lat = common::fixture("sd/sd2/latents.npy");
    fails_with(
        txt2img(&e, &["--latents", lat.to_str().unwrap(), "-o", o]),
        "[1, 4, 8, 8]",
    );
    fails_with(
        txt2img(&e, &["--scheduler", "heun", "-o", o]),
        "'heun' is not supported",
    );
    // Over 77 tokens: a warning, and the image is still made.
    let long = vec!["horse"; 100].join(" ");
    let mut c = spadework();
    let o2 = c
        .arg("txt2img")
        .arg("--weights")
        .arg(e.pipeline())
        .arg(&long)
        .args(["--steps", "1", "--backend", "cpu", "-o", o])
        .output()
        .unwrap();
    assert!(o2.status.success(), "{}", stderr(&o2));
    assert!(stderr(&o2).contains("77"), "{}", stderr(&o2));
}

/// A copy of fixture `sd1`'s folder with `edit` applied (small files only; weights linked).
fn edited_copy(tag: &str, edit: impl Fn(&Path)) -> PathBuf {
    let src = Expected::new("sd1").pipeline();
    let dst = tmp(tag);
    let _ = std::fs::remove_dir_all(&dst);
    for entry in walk(&src) {
        let rel = entry.strip_prefix(&src).unwrap();
        let to = dst.join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &to).unwrap();
    }
    edit(&dst);
    dst
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn load_err(dir: &Path) -> String {
    match StableDiffusionPipeline::load(dir, &Device::Cpu, WeightStorage::F32, None) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn load_errors_name_the_problem() {
    // Not a pipeline folder.
    let err = load_err(&common::fixture("sd/sd1"));
    assert!(err.contains("model_index.json"), "{err}");
    // Another pipeline class.
    let d = edited_copy("xl", |d| {
        let p = d.join("model_index.json");
        let s = std::fs::read_to_string(&p).unwrap();
        std::fs::write(
            &p,
            s.replace("StableDiffusionPipeline", "StableDiffusionXLPipeline"),
        )
        .unwrap();
    });
    let err = load_err(&d);
    assert!(err.contains("StableDiffusionXLPipeline"), "{err}");
    // A missing component config.
    let d = edited_copy("noconfig", |d| {
        std::fs::remove_file(d.join("unet/config.json")).unwrap()
    });
    let err = load_err(&d);
    assert!(err.contains("unet/config.json"), "{err}");
    // Text width ≠ cross-attention width.
    let d = edited_copy("widths", |d| {
        let p = d.join("unet/config.json");
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        v["cross_attention_dim"] = 48.into();
        std::fs::write(&p, v.to_string()).unwrap();
    });
    let err = load_err(&d);
    assert!(
        err.contains("hidden_size 32") && err.contains("cross_attention_dim 48"),
        "{err}"
    );
    // Missing weights.
    let d = edited_copy("noweights", |d| {
        std::fs::remove_file(d.join("vae/diffusion_pytorch_model.safetensors")).unwrap()
    });
    let err = load_err(&d);
    assert!(err.contains("vae"), "{err}");
}

#[test]
fn seeded_runs_are_reproducible_and_guidance_one_skips_cfg() {
    let e = Expected::new("sd1");
    let pipe = load(&e, &Device::Cpu);
    let mut p = e.params(&Device::Cpu, Some("euler-a"));
    p.latents = Latents::Seed(3);
    let a = pipe.generate(&p).unwrap().image.to_vec().unwrap();
    p.latents = Latents::Seed(3);
    let b = pipe.generate(&p).unwrap().image.to_vec().unwrap();
    assert_eq!(a, b);
    p.guidance = 1.0;
    p.latents = Latents::Seed(3);
    let c = pipe.generate(&p).unwrap().image.to_vec().unwrap();
    assert!(common::max_abs_diff(&a, &c) > 1e-3);
}

/// f16 GPU weight storage: the fixtures' weights are float16 values, so storing them as f16 on
/// the GPU loses nothing and the run still matches diffusers.
#[test]
fn gpu_f16_weights_match_diffusers() {
    let Some(d) = common::gpu() else { return };
    let e = Expected::new("sd2");
    let pipe =
        StableDiffusionPipeline::load(&e.pipeline(), &d, WeightStorage::F16, e.variant()).unwrap();
    check_image(&e, &pipe, &d, None, "image.npy");
}

/// img2img (diffusers `StableDiffusionImg2ImgPipeline`): the init image encoded, sampled with
/// the fixture's noise, noised to step ⌊steps · (1 − strength)⌋ and denoised from there.
#[test]
fn sd1_img2img_matches_diffusers() {
    use spadework::pipelines::stable_diffusion::InitImage;
    let e = Expected::new("sd1");
    let i2i = &e.json["img2img"];
    for d in common::devices() {
        let pipe = load(&e, &d);
        let (ishape, img) = e.npy("img2img_init.npy");
        let (nshape, noise) = e.npy("img2img_noise.npy");
        let mut p = e.params(&d, None);
        p.steps = i2i["steps"].as_u64().unwrap() as usize;
        p.latents = Latents::Seed(0);
        p.init = Some(InitImage {
            image: Tensor::from_vec(&d, &ishape, img).unwrap(),
            strength: i2i["strength"].as_f64().unwrap() as f32,
            noise: Some(Tensor::from_vec(&d, &nshape, noise).unwrap()),
        });
        let out = pipe.generate(&p).unwrap();
        let (shape, want) = e.npy("img2img.npy");
        assert_eq!(out.image.shape(), &shape[..]);
        let diff = common::max_abs_diff(&out.image.to_vec().unwrap(), &want);
        eprintln!("sd1 img2img on {d:?}: image max |Δ| = {diff:.2e}");
        assert!(diff <= 1e-3, "img2img on {d:?}: max |Δ| = {diff:e}");
    }
}

#[test]
fn cli_img2img_runs() {
    let e = Expected::new("sd1");
    let (init, out) = (tmp("init.png"), tmp("i2i.png"));
    let o = txt2img(&e, &["--steps", "2", "-o", init.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let args = ["--init-image", init.to_str().unwrap(), "--strength", "0.5"];
    let o = txt2img(
        &e,
        &[&args[..], &["--steps", "2", "-o", out.to_str().unwrap()]].concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = txt2img(
        &e,
        &[&args[..], &["--steps", "1", "-o", out.to_str().unwrap()]].concat(),
    );
    fails_with(o, "runs no step");
}

/// The single-file fixtures (tools/sd_single_file_reference.py) and their runs' settings.
fn single_files() -> (PathBuf, serde_json::Value) {
    let dir = common::fixture("sd/single_file");
    let json = std::fs::read_to_string(dir.join("expected.json")).unwrap();
    (dir, serde_json::from_str(&json).unwrap())
}

#[test]
fn single_file_checkpoints_match_diffusers() {
    let (dir, exp) = single_files();
    for name in ["sd1", "sd2"] {
        let e = &exp[name];
        let file = dir.join(e["file"].as_str().unwrap());
        let (shape, lat) = npy::read_f32(&dir.join(format!("{name}_latents.npy"))).unwrap();
        let (wshape, want) = npy::read_f32(&dir.join(format!("{name}_image.npy"))).unwrap();
        for d in common::devices() {
            let pipe = StableDiffusionPipeline::open(&file, &d, WeightStorage::F32, None).unwrap();
            let p = GenerateParams {
                prompt: e["prompt"].as_str().unwrap(),
                negative_prompt: e["negative_prompt"].as_str().unwrap(),
                steps: e["steps"].as_u64().unwrap() as usize,
                guidance: e["guidance"].as_f64().unwrap() as f32,
                width: e["width"].as_u64().unwrap() as usize,
                height: e["height"].as_u64().unwrap() as usize,
                latents: Latents::Given(Tensor::from_vec(&d, &shape, lat.clone()).unwrap()),
                scheduler: None,
                init: None,
                inpaint: None,
                vae_tiling: Tiling::Off,
                progress: false,
            };
            let out = pipe.generate(&p).unwrap();
            assert_eq!(out.scheduler, e["scheduler"].as_str().unwrap());
            assert_eq!(out.image.shape(), &wshape[..]);
            let diff = common::max_abs_diff(&out.image.to_vec().unwrap(), &want);
            eprintln!("single file {name} on {d:?}: image max |Δ| = {diff:.2e}");
            assert!(
                diff <= 1e-3,
                "single file {name} on {d:?}: max |Δ| = {diff:e}"
            );
        }
    }
}

/// SD 1.5, SD 1.5 inpainting and SD 2.1 at their real sizes (names and shapes only): the
/// components' diffusers names and shapes and the configs inferred from the LDM file's shapes
/// are diffusers' own.
#[test]
fn single_file_architectures_from_real_shapes() {
    use spadework::pipelines::single_file::SingleFile;
    use spadework::weights::store::WeightStore;
    let (dir, _) = single_files();
    let json = std::fs::read_to_string(dir.join("shapes.json")).unwrap();
    let archs: serde_json::Value = serde_json::from_str(&json).unwrap();
    let table = |v: &serde_json::Value| -> std::collections::BTreeMap<String, Vec<usize>> {
        serde_json::from_value(v.clone()).unwrap()
    };
    for (name, a) in archs.as_object().unwrap() {
        let store = WeightStore::from_shapes(name, table(&a["shapes"]));
        let f = SingleFile::from_store(store, name).unwrap();
        for (part, got) in [("unet", &f.unet), ("vae", &f.vae), ("text", &f.text)] {
            let got: std::collections::BTreeMap<String, Vec<usize>> = got
                .names()
                .map(|k| (k.to_string(), got.shape(k).unwrap().to_vec()))
                .collect();
            assert_eq!(
                got,
                table(&a["diffusers"][part]),
                "{name}: {part} names and shapes"
            );
        }
        let want_unet = &a["unet"];
        let got_unet = serde_json::to_value(&f.unet_config).unwrap();
        for (k, v) in want_unet.as_object().unwrap() {
            let mut g = got_unet[k].clone();
            // diffusers keeps a scalar where one value serves every block.
            if let (Some(arr), false) = (g.as_array(), v.is_array()) {
                if arr.iter().all(|x| x == v) {
                    g = v.clone();
                }
            }
            assert_eq!(&g, v, "{name}: UNet config {k}");
        }
        let got_vae = serde_json::to_value(&f.vae_config).unwrap();
        for (k, v) in a["vae"].as_object().unwrap() {
            assert_eq!(&got_vae[k], v, "{name}: VAE config {k}");
        }
        let got_text = serde_json::to_value(&f.text_config).unwrap();
        for (k, v) in a["text"].as_object().unwrap() {
            assert_eq!(&got_text[k], v, "{name}: text config {k}");
        }
    }
}

#[test]
fn single_file_errors_name_the_problem() {
    use spadework::pipelines::single_file::SingleFile;
    use spadework::weights::store::WeightStore;
    let (dir, _) = single_files();
    let json = std::fs::read_to_string(dir.join("shapes.json")).unwrap();
    let archs: serde_json::Value = serde_json::from_str(&json).unwrap();
    let shapes: std::collections::BTreeMap<String, Vec<usize>> =
        serde_json::from_value(archs["sd15"]["shapes"].clone()).unwrap();
    let err = |keep: &dyn Fn(&str) -> bool| {
        let s = WeightStore::from_shapes(
            "x.safetensors",
            shapes
                .iter()
                .filter(|(k, _)| keep(k))
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        match SingleFile::from_store(s, "x.safetensors") {
            Ok(_) => panic!("accepted"),
            Err(e) => format!("{e:#}"),
        }
    };
    let e = err(&|k| !k.starts_with("first_stage_model."));
    assert!(e.contains("no VAE tensors (first_stage_model.*)"), "{e}");
    let e = err(&|k| !k.starts_with("cond_stage_model."));
    assert!(e.contains("no text encoder tensors"), "{e}");
    let e = err(&|k| !k.starts_with("model.diffusion_model.output_blocks.11."));
    assert!(e.contains("does not have the LDM UNet's structure"), "{e}");
    // A diffusers folder's weights file is not a single-file checkpoint.
    let e = match StableDiffusionPipeline::open(
        &common::fixture("sd/sd1/pipeline/unet/diffusion_pytorch_model.safetensors"),
        &Device::Cpu,
        WeightStorage::F32,
        None,
    ) {
        Ok(_) => panic!("accepted"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        e.contains("not a Stable Diffusion checkpoint in the original LDM layout"),
        "{e}"
    );
}

#[test]
fn cli_txt2img_runs_a_single_file_checkpoint() {
    let (dir, exp) = single_files();
    let e = &exp["sd2"];
    let raw = tmp("single.npy");
    let png = tmp("single.png");
    let (_, want) = npy::read_f32(&dir.join("sd2_image.npy")).unwrap();
    // The fixture's run with `extra` flags; its raw image.
    let run = |extra: &[&str]| {
        let (w, h, steps) = (
            e["width"].to_string(),
            e["height"].to_string(),
            e["steps"].to_string(),
        );
        let o = spadework()
            .arg("txt2img")
            .arg("--weights")
            .arg(dir.join(e["file"].as_str().unwrap()))
            .arg(e["prompt"].as_str().unwrap())
            .args(["--negative-prompt", e["negative_prompt"].as_str().unwrap()])
            .args([
                "--steps",
                &steps,
                "--guidance",
                "7.5",
                "--width",
                &w,
                "--height",
                &h,
            ])
            .arg("--latents")
            .arg(dir.join("sd2_latents.npy"))
            .args(["-o", png.to_str().unwrap(), "--raw", raw.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        (npy::read_f32(&raw).unwrap().1, stderr(&o))
    };
    let mut backends = vec!["cpu"];
    if common::gpu().is_some() {
        backends.push("gpu");
    }
    for backend in backends {
        let (got, err) = run(&["--backend", backend]);
        let diff = common::max_abs_diff(&got, &want);
        assert!(diff <= 1e-3, "{backend}: max |Δ| = {diff:e}");
        assert!(err.contains("DDIMScheduler"), "{err}");
    }
    // --prediction-type overrides the inferred v-prediction: another image.
    let (got, _) = run(&["--backend", "cpu", "--prediction-type", "epsilon"]);
    assert!(common::max_abs_diff(&got, &want) > 1e-2);
}

/// diffusers' `StableDiffusionInpaintPipeline`: fixture `sd1` with its 4-channel UNet (the
/// latents outside the mask replaced by the noised image's each step) and fixture `inpaint`
/// with a 9-channel inpainting UNet; given latents and posterior noise, strength 1.
#[test]
fn inpainting_matches_diffusers() {
    for name in ["sd1", "inpaint"] {
        let e = Expected::new(name);
        for d in common::devices() {
            let pipe = load(&e, &d);
            let t = |f: &str| {
                let (shape, v) = e.npy(f);
                Tensor::from_vec(&d, &shape, v).unwrap()
            };
            let mut p = e.params(&d, None);
            p.latents = Latents::Given(t("inpaint_latents.npy"));
            p.inpaint = Some(Inpaint {
                image: t("inpaint_init.npy"),
                mask: t("inpaint_mask.npy"),
                strength: 1.0,
                noise: Some(t("inpaint_noise.npy")),
            });
            let out = pipe.generate(&p).unwrap();
            let (shape, want) = e.npy("inpaint.npy");
            assert_eq!(out.image.shape(), &shape[..]);
            let diff = common::max_abs_diff(&out.image.to_vec().unwrap(), &want);
            eprintln!("inpainting {name} on {d:?}: image max |Δ| = {diff:.2e}");
            assert!(
                diff <= 1e-3,
                "inpainting {name} on {d:?}: max |Δ| = {diff:e}"
            );
            if name == "inpaint" {
                // The inpainting UNet needs an image and a mask.
                p.inpaint = None;
                let err = format!("{:#}", pipe.generate(&p).err().unwrap());
                assert!(err.contains("inpainting UNet (9 input channels)"), "{err}");
            }
        }
    }
}

/// `--mask` and `--samples` through the CLI: a grid of two inpainted images whose kept region
/// (black in the mask) stays close to the init image.
#[test]
fn cli_inpainting_and_samples() {
    let e = Expected::new("inpaint");
    let (w, h) = (e.usize("width"), e.usize("height"));
    let init = tmp("inpaint_init.png");
    let mask = tmp("inpaint_mask.png");
    let (_, img) = e.npy("inpaint_init.npy");
    let rgb: Vec<u8> = (0..h * w * 3)
        .map(|i| {
            let (p, c) = (i / 3, i % 3);
            ((img[c * h * w + p] + 1.0) * 127.5).round() as u8
        })
        .collect();
    image::save_buffer(&init, &rgb, w as u32, h as u32, image::ColorType::Rgb8).unwrap();
    // Half the mask's size: resized, with a note.
    let m: Vec<u8> = (0..(h / 2) * (w / 2))
        .map(|i| if i % (w / 2) >= w / 4 { 255 } else { 0 })
        .collect();
    image::save_buffer(
        &mask,
        &m,
        (w / 2) as u32,
        (h / 2) as u32,
        image::ColorType::L8,
    )
    .unwrap();
    let out = tmp("inpaint_grid.png");
    let o = spadework()
        .arg("txt2img")
        .arg("--weights")
        .arg(e.pipeline())
        .arg("a red barn")
        .args(["--steps", "2", "--samples", "2", "--backend", "cpu"])
        .arg("--init-image")
        .arg(&init)
        .arg("--mask")
        .arg(&mask)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("resized (nearest)"), "{}", stderr(&o));
    let grid = image::open(&out).unwrap().to_rgb8();
    assert_eq!(
        (grid.width() as usize, grid.height() as usize),
        (2 * w + 2, h)
    );
    // Without --mask, the 9-channel UNet is refused with a clear message.
    let o = spadework()
        .arg("txt2img")
        .arg("--weights")
        .arg(e.pipeline())
        .arg("a red barn")
        .args(["--steps", "1", "--backend", "cpu", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    fails_with(o, "give an image and a mask");
}
