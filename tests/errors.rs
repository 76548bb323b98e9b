//! Bad input gets a clear error naming the problem, exit code 1, never a panic.
mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn tmpdir() -> PathBuf {
    scratch("errors")
}

/// A copy of the model file `src` as `out` (in the temp dir) with the values of its f32 tensor
/// `name` rewritten by `patch`.
fn patched_copy(src: &Path, name: &str, out: &str, patch: impl FnOnce(&mut [f32])) -> PathBuf {
    let mut bytes = std::fs::read(src).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    assert_eq!(header[name]["dtype"], "F32", "{name}");
    let offset = |i: usize| header[name]["data_offsets"][i].as_u64().unwrap() as usize;
    let range = offset(0) + 8 + header_len..offset(1) + 8 + header_len;
    let mut values: Vec<f32> = bytes[range.clone()]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    patch(&mut values);
    let patched: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    bytes[range].copy_from_slice(&patched);
    let path = tmpdir().join(out);
    std::fs::write(&path, &bytes).unwrap();
    path
}

const NL_FLAGS: &[&str] = &[
    "--label-nc",
    "12",
    "--contain-dontcare-label",
    "--no-instance",
    "--crop-size",
    "64",
];

/// The small normal_legacy model converted once per test process.
fn model() -> PathBuf {
    static ONCE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let out = tmpdir().join("nl.safetensors");
        {
            let pth = fixture("spade/normal_legacy/latest_net_G.pth");
            let mut args = vec![
                "convert",
                pth.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
            ];
            args.extend_from_slice(NL_FLAGS);
            ok(&args);
        }
        out
    })
    .clone()
}

fn gray_png(path: &Path, w: u32, h: u32, f: impl Fn(u32, u32) -> u8) {
    image::GrayImage::from_fn(w, h, |x, y| image::Luma([f(x, y)]))
        .save(path)
        .unwrap();
}

fn render(model: &Path, map: &Path, extra: &[&str]) -> String {
    let out = tmpdir().join("out.png");
    let mut args = vec![
        "render",
        "--weights",
        model.to_str().unwrap(),
        "--map",
        map.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ];
    if !extra.contains(&"--backend") {
        args.extend_from_slice(&["--backend", "cpu"]);
    }
    args.extend_from_slice(extra);
    fails(&args)
}

#[test]
fn missing_and_corrupt_maps() {
    let m = model();
    let e = render(&m, Path::new("/nonexistent/map.png"), &[]);
    assert!(e.contains("cannot read map /nonexistent/map.png"), "{e}");
    let bad = tmpdir().join("corrupt.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\nthis is not really a png").unwrap();
    let e = render(&m, &bad, &[]);
    assert!(
        e.contains("corrupt.png") && e.contains("not a readable PNG"),
        "{e}"
    );
}

#[test]
fn label_id_out_of_range_names_id_and_count() {
    let m = model();
    let map = tmpdir().join("bad_labels.png");
    gray_png(&map, 40, 30, |x, _| if x < 20 { 3 } else { 20 });
    let e = render(&m, &map, &[]);
    assert!(
        e.contains("label id 20") && e.contains("13 label channels"),
        "{e}"
    );
    // 255 is dontcare for this model and renders fine.
    let ok_map = tmpdir().join("dontcare.png");
    gray_png(&ok_map, 40, 30, |x, _| if x < 20 { 3 } else { 255 });
    let out = tmpdir().join("dc.png");
    ok(&[
        "render",
        "--weights",
        m.to_str().unwrap(),
        "--map",
        ok_map.to_str().unwrap(),
        "--backend",
        "cpu",
        "-o",
        out.to_str().unwrap(),
    ]);
}

#[test]
fn rgb_map_without_palette_is_refused() {
    let m = model();
    let map = tmpdir().join("rgb.png");
    image::RgbImage::from_fn(8, 8, |x, _| image::Rgb([x as u8 * 30, 0, 0]))
        .save(&map)
        .unwrap();
    let e = render(&m, &map, &[]);
    assert!(
        e.contains("RGB colour-coded map") && e.contains("no palette"),
        "{e}"
    );
}

#[test]
fn safetensors_missing_or_misshapen_tensor_is_named() {
    let m = model();
    let map = tmpdir().join("fine.png");
    gray_png(&map, 16, 16, |x, y| ((x + y) % 12) as u8);
    let mut store = spadework::weights::WeightStore::load(&m).unwrap();
    store.remove("up_1.norm_0.mlp_gamma.weight");
    let missing = tmpdir().join("missing.safetensors");
    store.save(&missing).unwrap();
    let e = render(&missing, &map, &[]);
    assert!(
        e.contains("missing tensor 'up_1.norm_0.mlp_gamma.weight'"),
        "{e}"
    );

    let mut store = spadework::weights::WeightStore::load(&m).unwrap();
    store.insert("conv_img.bias", vec![4], vec![0.0; 4]);
    let wrong = tmpdir().join("wrong.safetensors");
    store.save(&wrong).unwrap();
    let e = render(&wrong, &map, &[]);
    assert!(
        e.contains("'conv_img.bias' has shape [4], expected [3]"),
        "{e}"
    );

    let garbage = tmpdir().join("garbage.safetensors");
    std::fs::write(&garbage, b"not safetensors at all").unwrap();
    let e = render(&garbage, &map, &[]);
    assert!(e.contains("not a valid safetensors file"), "{e}");
}

#[test]
fn malicious_pth_is_refused_naming_the_global() {
    let out = tmpdir().join("evil.safetensors");
    for f in ["malicious.pkl", "malicious_zip.pth"] {
        let p = fixture(&format!("pth/{f}"));
        let e = fails(&["convert", p.to_str().unwrap(), "-o", out.to_str().unwrap()]);
        assert!(
            e.contains("refusing pickle global") && e.contains("system"),
            "{e}"
        );
    }
    assert!(!out.exists());
}

#[test]
fn wrong_convert_flags_name_the_fix() {
    let pth = fixture("spade/normal_legacy/latest_net_G.pth");
    let out = tmpdir().join("x.safetensors");
    let (p, o) = (pth.to_str().unwrap(), out.to_str().unwrap());
    // The checkpoint is label_nc 12 + dontcare, no instance, crop 64 (NL_FLAGS).
    let cases: &[(&str, &[&str])] = &[
        (
            "add --contain-dontcare-label",
            &["--label-nc", "12", "--no-instance", "--crop-size", "64"],
        ),
        (
            "add --no-instance",
            &[
                "--label-nc",
                "12",
                "--contain-dontcare-label",
                "--crop-size",
                "64",
            ],
        ),
        (
            "set --label-nc 12",
            &[
                "--label-nc",
                "20",
                "--contain-dontcare-label",
                "--no-instance",
            ],
        ),
        (
            "up_4",
            &[&NL_FLAGS[..4], &["--num-upsampling-layers", "most"]].concat(),
        ),
        ("drop --use-vae", &[NL_FLAGS, &["--use-vae"]].concat()),
        (
            "batch-norm running stats",
            &[NL_FLAGS, &["--norm-g", "spectralspadeinstance3x3"]].concat(),
        ),
    ];
    for (want, flags) in cases {
        let mut args = vec!["convert", p, "-o", o];
        args.extend_from_slice(flags);
        let e = fails(&args);
        assert!(e.contains(want), "{flags:?}: expected '{want}' in: {e}");
    }
    let e = fails(&["convert", "/nonexistent.pth", "-o", o]);
    assert!(e.contains("/nonexistent.pth"), "{e}");
}

#[test]
fn unknown_adapter_suggests_cpu() {
    let m = model();
    let map = tmpdir().join("fine2.png");
    gray_png(&map, 16, 16, |x, _| (x % 12) as u8);
    let e = render(
        &m,
        &map,
        &["--backend", "gpu", "--adapter", "no-such-adapter-xyz"],
    );
    assert!(e.contains("--backend cpu"), "{e}");
}

#[test]
fn vae_only_flags_are_refused_for_plain_models() {
    let m = model();
    let map = tmpdir().join("fine3.png");
    gray_png(&map, 16, 16, |x, _| (x % 12) as u8);
    let e = render(&m, &map, &["--seed", "3"]);
    assert!(e.contains("not a VAE generator"), "{e}");
}

/// A PNG header declaring 200000×200000 pixels (74 bytes): refused from the header, before any
/// allocation; `--max-pixels` names the way out.
#[test]
fn huge_images_are_refused_before_decoding() {
    let d = tmpdir();
    let big = d.join("huge.png");
    // A valid 1×1 grey PNG whose IHDR is rewritten to 200000×200000 (CRC fixed up).
    gray_png(&big, 1, 1, |_, _| 0);
    let mut b = std::fs::read(&big).unwrap();
    b[16..20].copy_from_slice(&200000u32.to_be_bytes());
    b[20..24].copy_from_slice(&200000u32.to_be_bytes());
    let crc = crc32(&b[12..29]);
    b[29..33].copy_from_slice(&crc.to_be_bytes());
    std::fs::write(&big, &b).unwrap();
    let e = render(&model(), &big, &[]);
    assert!(
        e.contains("200000x200000") && e.contains("over the limit") && e.contains("--max-pixels"),
        "{e}"
    );
    // The same budget for a style image / an init image goes through `open_image`; a small
    // budget refuses an ordinary map.
    let small = d.join("small.png");
    gray_png(&small, 64, 64, |_, _| 1);
    let e = render(&model(), &small, &["--max-pixels", "100"]);
    assert!(
        e.contains("64x64 = 4096 pixels, over the limit of 100"),
        "{e}"
    );
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// An output that is also an input is refused and the input survives.
#[test]
fn outputs_never_overwrite_inputs() {
    let m = model();
    let d = tmpdir();
    let map = d.join("keep_map.png");
    gray_png(&map, 64, 64, |x, _| (x / 8) as u8);
    let before = std::fs::read(&map).unwrap();
    let e = fails(&[
        "render",
        "--weights",
        m.to_str().unwrap(),
        "--map",
        map.to_str().unwrap(),
        "-o",
        map.to_str().unwrap(),
        "--backend",
        "cpu",
    ]);
    assert!(
        e.contains("-o") && e.contains("is also the input --map"),
        "{e}"
    );
    let e = fails(&[
        "render",
        "--weights",
        m.to_str().unwrap(),
        "--map",
        map.to_str().unwrap(),
        "-o",
        d.join("o.png").to_str().unwrap(),
        "--raw",
        m.to_str().unwrap(),
        "--backend",
        "cpu",
    ]);
    assert!(
        e.contains("--raw") && e.contains("is also the input --weights"),
        "{e}"
    );
    let e = fails(&[
        "repack",
        m.to_str().unwrap(),
        "-o",
        m.to_str().unwrap(),
        "--storage",
        "f16",
    ]);
    assert!(e.contains("is also the input"), "{e}");
    assert_eq!(std::fs::read(&map).unwrap(), before);
}

/// Non-finite weights are named at load (not rendered into a black image) and refused by repack.
#[test]
fn non_finite_weights_are_named_and_refused() {
    let m = model();
    let store = spadework::weights::WeightStore::load(&m).unwrap();
    let name = store
        .names()
        .find(|n| n.ends_with(".weight") && store.shape(n).unwrap().len() == 4)
        .unwrap()
        .to_string();
    // Rewrite the file with one NaN in that tensor.
    let bad_path = patched_copy(&m, &name, "nan.safetensors", |v| v[1] = f32::NAN);
    let map = tmpdir().join("nan_map.png");
    gray_png(&map, 64, 64, |_, _| 1);
    let e = render(&bad_path, &map, &[]);
    assert!(
        e.contains(&format!("'{name}'")) && e.contains("NaN at flat index 1"),
        "{e}"
    );
    let e = fails(&[
        "repack",
        bad_path.to_str().unwrap(),
        "-o",
        tmpdir().join("r.safetensors").to_str().unwrap(),
        "--storage",
        "int8",
    ]);
    assert!(e.contains("refusing to store non-finite weights"), "{e}");
}

/// Finite weights that overflow (f32::MAX in a conv) make a non-finite activation: the CPU
/// backend names the first layer that produced it.
#[test]
fn overflowing_layers_are_named() {
    let bad_path = patched_copy(
        &model(),
        "G_middle_0.conv_0.weight",
        "overflow.safetensors",
        |v| v.fill(f32::MAX),
    );
    let map = tmpdir().join("overflow_map.png");
    gray_png(&map, 64, 64, |x, _| (x / 16) as u8);
    let e = render(&bad_path, &map, &[]);
    assert!(
        e.contains("layer G_middle_0 is the first to produce a non-finite value"),
        "{e}"
    );
}

/// `convert` names key tensors of the wrong rank instead of indexing into them.
#[test]
fn convert_names_tensors_of_the_wrong_rank() {
    for (name, key) in [
        ("bad_head_0dim.pth", "'head_0.conv_0.weight' has shape []"),
        (
            "bad_mlp_1dim.pth",
            "'head_0.norm_0.mlp_shared.0.weight' has shape [3]",
        ),
    ] {
        let out = tmpdir().join(format!("{name}.safetensors"));
        let e = fails(&[
            "convert",
            fixture(&format!("pth/{name}")).to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ]);
        assert!(
            e.contains(key) && e.contains("not a 4-dim conv weight"),
            "{e}"
        );
    }
}

/// A negative BatchNorm running variance (a corrupt checkpoint) is named at load, instead of
/// rendering NaN.
#[test]
fn negative_running_variance_is_named() {
    let m = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/landscape.safetensors");
    let name = "head_0.norm_0.param_free_norm.running_var";
    let bad_path = patched_copy(&m, name, "negvar.safetensors", |v| v[3] = -0.25);
    let map = tmpdir().join("negvar_map.png");
    gray_png(&map, 64, 64, |_, _| 3);
    let e = render(&bad_path, &map, &[]);
    assert!(
        e.contains(&format!("'{name}'")) && e.contains("negative variance -0.25 at channel 3"),
        "{e}"
    );
}

/// A training checkpoint wrapping a DataParallel generator is unwrapped, saying so, and its
/// integer tensor is named as "not floating point" (not a decoding error about bytes)
/// (`tests/fixtures/pth/int_module.pth`: `{"state_dict": {"module.head_0.conv_0.weight": f32,
/// "module.fc.weight": int64}, "epoch": 3}`).
#[test]
fn integer_tensor_is_named_not_floating_point() {
    let out = tmpdir().join("int_module.safetensors");
    let e = fails(&[
        "convert",
        fixture("pth/int_module.pth").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--preset",
        "ade20k",
    ]);
    assert!(
        e.contains("a wrapped checkpoint; using the tensors under 'state_dict.module.'")
            && e.contains("tensor 'fc.weight' is not floating point"),
        "{e}"
    );
    assert!(!out.exists());
}

/// A `--z` with a NaN is named (the file and the index), not rendered as a black image.
#[test]
fn non_finite_z_is_named() {
    let mut z = vec![0.5f32; 256];
    z[5] = f32::NAN;
    let zp = tmpdir().join("nan_z.npy");
    spadework::io::npy::write_f32(&zp, &[1, 256], &z).unwrap();
    let map = tmpdir().join("nan_z_map.png");
    gray_png(&map, 64, 64, |_, _| 3);
    let m = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/landscape.safetensors");
    let e = render(&m, &map, &["--z", zp.to_str().unwrap()]);
    assert!(
        e.contains("--z") && e.contains("nan_z.npy") && e.contains("at index 5"),
        "{e}"
    );
}

/// A full stdout or stderr (/dev/full) ends with exit code 1, not a panic.
#[test]
#[cfg(target_os = "linux")]
fn full_stdout_or_stderr_is_not_a_panic() {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_spadework"))
        .arg("adapters")
        .env("XDG_RUNTIME_DIR", "/tmp")
        .stdout(full)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot write to stdout"), "{err}");
    // A full stderr: notes and the error message are lost, the exit code says it all.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_spadework"))
        .args([
            "render",
            "--map",
            "/nonexistent.png",
            "-o",
            "/tmp/x.png",
            "--backend",
            "cpu",
        ])
        .env("XDG_RUNTIME_DIR", "/tmp")
        .stderr(full)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

/// xorshift64*: the corpus's mutations, reproducible.
struct Mutator(u64);

impl Mutator {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A copy of `b` with a few bytes overwritten, a range duplicated or the tail cut.
    fn mutate(&mut self, b: &[u8]) -> Vec<u8> {
        let mut v = b.to_vec();
        match self.next() % 4 {
            0 => {
                for _ in 0..1 + self.next() % 8 {
                    let i = (self.next() as usize) % v.len().max(1);
                    if let Some(x) = v.get_mut(i) {
                        *x = self.next() as u8;
                    }
                }
            }
            1 => v.truncate((self.next() as usize) % v.len().max(1)),
            2 => {
                // A header-sized region: where lengths and dimensions live.
                let i = (self.next() as usize) % v.len().min(64).max(1);
                if let Some(x) = v.get_mut(i) {
                    *x = 0xff;
                }
            }
            _ => {
                let i = (self.next() as usize) % v.len().max(1);
                let j = (i + (self.next() as usize) % 64).min(v.len());
                let piece = v[i..j].to_vec();
                v.splice(i..i, piece);
            }
        }
        v
    }
}

/// The CLI over a corpus of damaged and hostile files (maps, model files, checkpoints, Stable
/// Diffusion folders and single files): every run ends with exit code 0 or 1, never a panic's
/// 101 or a signal.
#[test]
fn hostile_corpus_never_crashes() {
    let d = tmpdir().join("corpus");
    std::fs::create_dir_all(&d).unwrap();
    let m = model();
    let map = d.join("good_map.png");
    gray_png(&map, 64, 64, |x, y| ((x + y) / 16) as u8);
    let out = d.join("out.png");
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_spadework"))
            .args(args)
            .env("XDG_RUNTIME_DIR", "/tmp")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(
            matches!(o.status.code(), Some(0) | Some(1)) && !err.contains("panicked"),
            "{args:?} ended with {:?}:\n{err}",
            o.status
        );
    };
    let mut mu = Mutator(0x5eed);
    let s = |p: &Path| p.to_str().unwrap().to_string();
    // Label maps.
    let png = std::fs::read(&map).unwrap();
    for k in 0..40 {
        let p = d.join(format!("map{k}.png"));
        std::fs::write(&p, mu.mutate(&png)).unwrap();
        run(&[
            "render",
            "--weights",
            &s(&m),
            "--map",
            &s(&p),
            "-o",
            &s(&out),
            "--backend",
            "cpu",
        ]);
    }
    // Model files.
    let model_bytes = std::fs::read(&m).unwrap();
    for k in 0..40 {
        let p = d.join(format!("model{k}.safetensors"));
        std::fs::write(&p, mu.mutate(&model_bytes)).unwrap();
        run(&[
            "render",
            "--weights",
            &s(&p),
            "--map",
            &s(&map),
            "-o",
            &s(&out),
            "--backend",
            "cpu",
        ]);
        run(&[
            "repack",
            &s(&p),
            "-o",
            &s(&d.join("r.safetensors")),
            "--storage",
            "int8",
        ]);
    }
    // Checkpoints for convert (flags of the normal_legacy fixture).
    for name in [
        "spade/normal_legacy/latest_net_G.pth",
        "pth/sd_zip.pth",
        "pth/nested_legacy.pth",
    ] {
        let pth = std::fs::read(fixture(name)).unwrap();
        for k in 0..15 {
            let p = d.join(format!("ckpt{k}.pth"));
            std::fs::write(&p, mu.mutate(&pth)).unwrap();
            let o = s(&d.join("c.safetensors"));
            let mut args = vec!["convert", p.to_str().unwrap(), "-o", &o];
            args.extend_from_slice(NL_FLAGS);
            run(&args);
        }
    }
    // Stable Diffusion single files (a damaged .safetensors and .ckpt) and a folder whose
    // UNet weights are damaged.
    let sf = fixture("sd/single_file");
    for file in ["sd1.safetensors", "sd2.ckpt"] {
        let bytes = std::fs::read(sf.join(file)).unwrap();
        for k in 0..10 {
            let p = d.join(format!("sf{k}_{file}"));
            std::fs::write(&p, mu.mutate(&bytes)).unwrap();
            run(&[
                "txt2img",
                "--weights",
                &s(&p),
                "x",
                "--steps",
                "1",
                "--width",
                "16",
                "--height",
                "16",
                "--backend",
                "cpu",
                "-o",
                &s(&out),
            ]);
        }
    }
}

/// A checkpoint where a safetensors file is expected, and the other way round, are named.
#[test]
fn wrong_file_kinds_are_named() {
    let m = model();
    let d = tmpdir();
    let map = d.join("kinds_map.png");
    gray_png(&map, 64, 64, |_, _| 1);
    let pth = fixture("spade/normal_legacy/latest_net_G.pth");
    let e = render(&pth, &map, &[]);
    assert!(e.contains("this is a PyTorch checkpoint"), "{e}");
    let out = d.join("kinds.safetensors");
    let mut args = vec!["convert", m.to_str().unwrap(), "-o", out.to_str().unwrap()];
    args.extend_from_slice(NL_FLAGS);
    let e = fails(&args);
    assert!(e.contains("this is a safetensors file"), "{e}");
}

/// A map with thousands of ids the built-in model does not know gets a short error: the most
/// frequent few and how many more.
#[test]
fn many_unknown_ids_give_a_short_error() {
    let map = tmpdir().join("many_ids.png");
    image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_fn(64, 64, |x, y| {
        image::Luma([1000 + (y * 64 + x) as u16])
    })
    .save(&map)
    .unwrap();
    let out = tmpdir().join("many.png");
    let e = fails(&[
        "render",
        "--map",
        map.to_str().unwrap(),
        "--backend",
        "cpu",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(e.contains("and 4084 more"), "{e}");
    assert!(e.len() < 2000, "{} bytes: {e}", e.len());
}

/// The fuzzers' minimised corpora (`fuzz/corpus/<target>/`, committed) replayed through the same
/// entry points the libFuzzer targets call: every input the fuzzers kept for its coverage stays a
/// regression test, on every `cargo test`.
#[test]
fn fuzz_corpora_replay_without_panic() {
    use spadework::fuzz_entry as f;
    let targets: [(&str, fn(&[u8])); 5] = [
        ("pth", f::pth),
        ("safetensors", f::safetensors),
        ("map_png", f::map_png),
        ("image", f::image),
        ("npy", f::npy),
    ];
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (name, run) in targets {
        let dir = root.join(name);
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            run(&data);
            n += 1;
        }
        assert!(
            n >= 10,
            "{}: only {n} inputs; the corpus is missing",
            dir.display()
        );
    }
}
