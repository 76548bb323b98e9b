//! `spadework bench`: the same workloads on every adapter wgpu finds and on the CPU backend, with
//! warm-up, medians, GFLOP/s, peak memory, a table and JSON for comparing machines.
use crate::backend::{Device, GpuContext, WeightStorage};
use crate::models::spade::input::PreparedMap;
use crate::models::{
    ClipTextConfig, ClipTextEncoder, SpadeConfig, UNet2DConditionConfig, UNet2DConditionModel,
};
use crate::ops::{self, Conv2d, OneHotConv, ParamFreeNorm};
use crate::pipelines::spade::SpadePipeline;
use crate::rng::Rng;
use crate::tensor::Tensor;
use crate::weights::vars::Vars;
use anyhow::{Context, Result};
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;

#[derive(Serialize, Clone, Debug)]
pub struct Row {
    pub adapter: String,
    pub backend: String,
    pub workload: String,
    pub kind: String,
    pub runs: usize,
    pub median_ms: f64,
    pub min_ms: f64,
    /// Executed GFLOP/s: one-hot convs count as the gather they run.
    pub gflops: f64,
    /// GFLOP/s with one-hot convs counted dense, as the SPADE paper counts them (equal to `gflops`
    /// where no one-hot conv runs).
    pub dense_equiv_gflops: f64,
    /// Executed GFLOP/s as a share of the device's own peak, measured in the same run by the tuned
    /// microbenchmark (the `peak` rows: GEMM-shaped work on the best conv tile, or sgemm on the CPU).
    pub pct_of_peak: f64,
    /// Device memory (GPU): the most held at once during the timed runs, what was held before
    /// them (weights, inputs, γ/β caches), and the two largest buffers the runs allocated.
    pub peak_device_mib: f64,
    pub resident_device_mib: f64,
    pub largest2_device_mib: f64,
    /// Host resident-set peak while this workload was built and run (Linux; its own peak where
    /// the kernel lets the mark be reset, else the process's).
    pub host_rss_mib: f64,
    /// Rows with f16 weight storage (`f16w`): the largest and mean |Δ| of the output against the
    /// same work with f32 weights on the same device and input (NaN, i.e. null, elsewhere).
    pub max_err_vs_f32: f64,
    pub mean_err_vs_f32: f64,
}

#[derive(Serialize)]
pub struct DeviceReport {
    pub adapter: String,
    pub backend: String,
    pub info: serde_json::Value,
    pub rows: Vec<Row>,
}

/// One benchmark: a name and how to build it. Workloads are built one at a time, just before they
/// run, so each one's memory figures are its own.
struct Work<'a> {
    name: String,
    kind: &'static str,
    build: Box<dyn FnOnce() -> Result<Ready<'a>> + 'a>,
}

/// A built workload: its FLOPs (2 per multiply-add; `flop` executed, `dense_flop` with one-hot
/// convs counted dense where that differs) and a closure that runs it once.
struct Ready<'a> {
    flop: f64,
    dense_flop: Option<f64>,
    run: Box<dyn FnMut() -> Result<()> + 'a>,
    /// (max, mean) |Δ| against f32 weights, for f16-weight rows.
    err_vs_f32: Option<(f64, f64)>,
}

impl<'a> Work<'a> {
    fn new(
        name: impl Into<String>,
        kind: &'static str,
        build: impl FnOnce() -> Result<Ready<'a>> + 'a,
    ) -> Work<'a> {
        Work {
            name: name.into(),
            kind,
            build: Box::new(build),
        }
    }
}

impl<'a> Ready<'a> {
    fn new(flop: f64, run: impl FnMut() -> Result<()> + 'a) -> Ready<'a> {
        Ready {
            flop,
            dense_flop: None,
            run: Box::new(run),
            err_vs_f32: None,
        }
    }

    fn with_err(mut self, err: Option<(f64, f64)>) -> Ready<'a> {
        self.err_vs_f32 = err;
        self
    }
}

/// (max, mean) |a − b|.
fn abs_err(a: &[f32], b: &[f32]) -> (f64, f64) {
    let (mut max, mut sum) = (0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let d = (*x as f64 - *y as f64).abs();
        max = max.max(d);
        sum += d;
    }
    (max, sum / a.len().max(1) as f64)
}

/// For f16 storage: the (max, mean) |Δ| of a stride-1 conv's output with f16 weights against
/// f32 weights on the same device; None for f32 storage.
fn f16_conv_err(
    d: &Device,
    wt: &[f32],
    shape: [usize; 4],
    bias: Option<&[f32]>,
    pad: usize,
    x: &Tensor,
    storage: WeightStorage,
) -> Result<Option<(f64, f64)>> {
    if storage == WeightStorage::F32 {
        return Ok(None);
    }
    let run = |st| -> Result<Vec<f32>> {
        Conv2d::with_storage(d, wt, shape, bias, 1, pad, st)?
            .forward(x)?
            .to_vec()
    };
    Ok(Some(abs_err(
        &run(WeightStorage::F16)?,
        &run(WeightStorage::F32)?,
    )))
}

/// The storages a device's rows run with: f16 weights only on a GPU that can unpack them (the
/// CPU keeps f32).
fn storages(d: &Device) -> &'static [WeightStorage] {
    match d {
        Device::Gpu(ctx) if ctx.f16_in_f32 => &[WeightStorage::F32, WeightStorage::F16],
        _ => &[WeightStorage::F32],
    }
}

/// The suffix of rows with f16 weights.
fn storage_suffix(s: WeightStorage) -> &'static str {
    match s {
        WeightStorage::F32 => "",
        WeightStorage::F16 => " f16w",
    }
}

/// Resets the process's resident-set high-water mark (Linux ≥ 4.0), so `host_rss_mib` reports the
/// next workload's own peak; false where that is not possible.
pub fn reset_rss_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Host resident-set high-water mark (Linux), MiB.
pub fn host_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn rand(n: usize, seed: u64) -> Vec<f32> {
    Rng::new(seed).uniform_vec(n, -1.0, 1.0)
}

/// The device's attainable dense rate: GEMM-shaped work (a 1×1 conv, 512→512 at 64², i.e.
/// 4096×512×512) on every GPU conv tile with f32 and f16 weights, or a 1024³ sgemm on the CPU;
/// the best row is the peak the other rows are compared with.
fn peak_workloads(d: &Device, quick: bool) -> Vec<Work<'_>> {
    let mut v: Vec<Work> = Vec::new();
    match d {
        Device::Gpu(_) => {
            let (c, hw) = if quick { (256, 32) } else { (512, 64) };
            let configs = crate::ops::conv2d::TILES
                .into_iter()
                .flat_map(|t| storages(d).iter().map(move |&st| (t, st)));
            for (tile, st) in configs {
                let name = format!(
                    "peak: GEMM {}×{c}×{c} tile {}x{}{}",
                    hw * hw,
                    tile.0,
                    tile.1,
                    storage_suffix(st)
                );
                v.push(Work::new(name, "peak", move || {
                    let w = rand(c * c, 11);
                    let x = Tensor::from_vec(d, &[1, c, hw, hw], rand(c * hw * hw, 12))?;
                    let err = f16_conv_err(d, &w, [c, c, 1, 1], None, 0, &x, st)?;
                    let conv = Conv2d::with_storage(d, &w, [c, c, 1, 1], None, 1, 0, st)?;
                    let ready = Ready::new(2.0 * (c * c * hw * hw) as f64, move || {
                        conv.forward_tile(&x, tile).map(drop)
                    });
                    Ok(ready.with_err(err))
                }));
            }
        }
        Device::Cpu => {
            let n = if quick { 512 } else { 1024 };
            v.push(Work::new(format!("peak: sgemm {n}³"), "peak", move || {
                let lin = ops::Linear::new(d, &rand(n * n, 9), [n, n], None)?;
                let xm = Tensor::from_vec(d, &[n, n], rand(n * n, 10))?;
                Ok(Ready::new(2.0 * (n * n * n) as f64, move || {
                    lin.forward(&xm).map(drop)
                }))
            }));
        }
    }
    v
}

/// Per-op workloads at SPADE's shapes (`quick`: 1/4 of the spatial size).
fn op_workloads(d: &Device, quick: bool) -> Vec<Work<'_>> {
    let s = if quick { 4 } else { 1 };
    let mut v: Vec<Work> = Vec::new();
    let convs: &[(&str, usize, usize, usize, usize)] = &[
        ("conv3x3 1024→1024 @16", 1024, 1024, 16, 3),
        ("conv3x3 512→256 @64", 512, 256, 64, 3),
        ("conv3x3 256→128 @128", 256, 128, 128, 3),
        ("conv3x3 γβ 128→256 @256", 128, 256, 256, 3),
        ("conv1x1 128→64 @256", 128, 64, 256, 1),
    ];
    for (&(name, cin, cout, hw, k), &storage) in convs
        .iter()
        .flat_map(|c| storages(d).iter().map(move |st| (c, st)))
    {
        let hw = (hw / s).max(4);
        let name =
            name.replace(&format!("@{}", hw * s), &format!("@{hw}")) + storage_suffix(storage);
        v.push(Work::new(name, "op", move || {
            let wt = rand(cout * cin * k * k, 1);
            let b = rand(cout, 2);
            let x = Tensor::from_vec(d, &[1, cin, hw, hw], rand(cin * hw * hw, 3))?;
            let shape = [cout, cin, k, k];
            let err = f16_conv_err(d, &wt, shape, Some(&b), k / 2, &x, storage)?;
            let conv = Conv2d::with_storage(d, &wt, shape, Some(&b), 1, k / 2, storage)?;
            let ready = Ready::new(2.0 * (cout * cin * k * k * hw * hw) as f64, move || {
                conv.forward(&x).map(drop)
            });
            Ok(ready.with_err(err))
        }));
    }
    let hw = 256 / s;
    let nc = 151;
    v.push(Work::new(
        format!("one-hot gather 151→128 @{hw}"),
        "op",
        move || {
            let g = OneHotConv::new(
                d,
                &rand(128 * nc * 9, 4),
                [128, nc, 3, 3],
                &rand(128, 5),
                false,
                1,
                true,
            )?;
            let labels: Vec<u32> = (0..hw * hw)
                .map(|i| ((i / hw / 16 * 7 + i % hw / 16 * 3) % nc) as u32)
                .collect();
            let lm = ops::onehot_conv::label_map(d, &labels, None, hw, hw)?;
            Ok(Ready {
                flop: 2.0 * (128 * 9 * hw * hw) as f64,
                dense_flop: Some(2.0 * (128 * nc * 9 * hw * hw) as f64),
                run: Box::new(move || g.forward(&lm).map(drop)),
                err_vs_f32: None,
            })
        },
    ));
    v.push(Work::new(
        format!("fused SPADE modulate 128ch @{hw}"),
        "op",
        move || {
            let c = 128;
            let x = Tensor::from_vec(d, &[1, c, hw, hw], rand(c * hw * hw, 6))?;
            let gb = Tensor::from_vec(d, &[1, 2 * c, hw, hw], rand(2 * c * hw * hw, 7))?;
            let bn = ParamFreeNorm::batch(d, &rand(c, 8), &vec![1.0; c])?;
            Ok(Ready::new(5.0 * (c * hw * hw) as f64, move || {
                ops::modulate(&x, &bn, &gb, Some(0.2)).map(drop)
            }))
        },
    ));
    // Attention at the shapes of a text-to-image stack: the self- and cross-attention of an SD
    // 1.x UNet's 64² level (4096 tokens, 8 heads × 40; 77 text tokens), its 16² level's wide heads
    // (256 tokens, 8 heads × 160), a VAE mid-block's single 512-wide head (at 32², 1024 tokens)
    // and a CLIP text encoder layer (77 tokens, 12 heads × 64, causal).
    let tok = 4096 / (s * s);
    let attn: [(String, usize, usize, usize, usize, bool); 5] = [
        (
            format!("attention self {tok} tok 8×40"),
            tok,
            tok,
            8,
            40,
            false,
        ),
        (
            format!("attention cross {tok}×77 tok 8×40"),
            tok,
            77,
            8,
            40,
            false,
        ),
        ("attention causal 77 tok 12×64".into(), 77, 77, 12, 64, true),
        (
            format!("attention self {} tok 8×160", tok / 16),
            tok / 16,
            tok / 16,
            8,
            160,
            false,
        ),
        (
            format!("attention self {} tok 1×512", tok / 4),
            tok / 4,
            tok / 4,
            1,
            512,
            false,
        ),
    ];
    for (name, lq, lk, heads, hd, causal) in attn {
        v.push(Work::new(name, "op", move || {
            let c = heads * hd;
            let q = Tensor::from_vec(d, &[1, lq, c], rand(lq * c, 13))?;
            let k = Tensor::from_vec(d, &[1, lk, c], rand(lk * c, 14))?;
            let vv = Tensor::from_vec(d, &[1, lk, c], rand(lk * c, 15))?;
            let shape = ops::attention::AttnShape {
                batch: 1,
                lq,
                lk,
                heads,
                head_dim: hd,
            };
            Ok(Ready::new(shape.flops(causal), move || {
                let mask = ops::AttnMask {
                    causal,
                    key_bias: None,
                };
                ops::attention(&q, &k, &vv, heads, mask).map(drop)
            }))
        }));
    }
    let n = 1024 / s;
    v.push(Work::new(format!("GEMM {n}×{n}×{n}"), "op", move || {
        let lin = ops::Linear::new(d, &rand(n * n, 9), [n, n], None)?;
        let xm = Tensor::from_vec(d, &[n, n], rand(n * n, 10))?;
        Ok(Ready::new(2.0 * (n * n * n) as f64, move || {
            lin.forward(&xm).map(drop)
        }))
    }));
    v
}

/// End-to-end generator forwards with random weights (`quick`: a 64×64 ngf-16 ade20k layout).
fn e2e_workloads(d: &Device, quick: bool) -> Result<Vec<Work<'_>>> {
    let presets: Vec<(String, SpadeConfig)> = if quick {
        let cfg = SpadeConfig {
            crop_size: 64,
            ngf: 16,
            ..SpadeConfig::preset("ade20k")?
        };
        vec![("SPADE ade20k-layout 64² ngf16".into(), cfg)]
    } else {
        vec![
            ("SPADE ade20k 256²".into(), SpadeConfig::preset("ade20k")?),
            ("SPADE coco 256²".into(), SpadeConfig::preset("coco")?),
            (
                "SPADE cityscapes 256×512".into(),
                SpadeConfig::preset("cityscapes")?,
            ),
        ]
    };
    let mut v: Vec<Work> = Vec::new();
    for (name, cfg, storage) in presets.into_iter().flat_map(|(name, cfg)| {
        storages(d)
            .iter()
            .map(move |&st| (format!("{name}{}", storage_suffix(st)), cfg.clone(), st))
    }) {
        v.push(Work::new(name, "e2e", move || {
            let flop = crate::models::spade::generator_flops_executed(&cfg)?;
            let dense_flop = crate::models::spade::generator_flops(&cfg)?;
            // The weights are dropped once the model is built, as `spadework render` does.
            let build = |st: WeightStorage| -> Result<SpadePipeline> {
                SpadePipeline::build(&Vars::random(1, d).with_storage(st), cfg.clone())
            };
            let (h, w) = cfg.map_size();
            let labels = (0..h * w)
                .map(|i| (((i / w) / 16 * 7 + (i % w) / 16 * 3) % cfg.onehot_nc()) as u32)
                .collect();
            let map = PreparedMap {
                h,
                w,
                instance: (!cfg.no_instance)
                    .then(|| (0..h * w).map(|i| ((i % w) / 40) as u32).collect()),
                labels,
            };
            // f16 rows: the image against f32 weights' (that model is dropped before timing).
            let err_vs_f32 = match storage {
                WeightStorage::F32 => None,
                WeightStorage::F16 => {
                    let exact = build(WeightStorage::F32)?.render(&map, None)?.0;
                    let half = build(WeightStorage::F16)?.render(&map, None)?.0;
                    Some(abs_err(&half, &exact))
                }
            };
            let model = build(storage)?;
            Ok(Ready {
                flop,
                dense_flop: Some(dense_flop),
                run: Box::new(move || model.render(&map, None).map(drop)),
                err_vs_f32,
            })
        }));
    }
    // The text encoder of Stable Diffusion 1.x (`quick`: 4 layers of 256), random weights, one
    // 77-token prompt.
    let (name, tcfg) = if quick {
        let cfg = ClipTextConfig {
            vocab_size: 1000,
            hidden_size: 256,
            num_hidden_layers: 4,
            num_attention_heads: 4,
            intermediate_size: 1024,
            ..ClipTextConfig::vit_l14()
        };
        ("CLIP-layout text encoder 77 tok 4×256", cfg)
    } else {
        (
            "CLIP ViT-L/14 text encoder 77 tok",
            ClipTextConfig::vit_l14(),
        )
    };
    for &storage in storages(d) {
        let tcfg = tcfg.clone();
        let name = format!("{name}{}", storage_suffix(storage));
        v.push(Work::new(name, "e2e", move || {
            let build = |st| ClipTextEncoder::load(&Vars::random(3, d).with_storage(st), &tcfg);
            let ids: Vec<u32> = (0..77)
                .map(|i| (i * 7919 % tcfg.vocab_size) as u32)
                .collect();
            // f16 rows: the hidden state against f32 weights'.
            let err = match storage {
                WeightStorage::F32 => None,
                WeightStorage::F16 => {
                    let exact = build(WeightStorage::F32)?.forward(&ids)?.to_vec()?;
                    let half = build(WeightStorage::F16)?.forward(&ids)?.to_vec()?;
                    Some(abs_err(&half, &exact))
                }
            };
            let enc = build(storage)?;
            let ready = Ready::new(tcfg.flops(ids.len()), move || enc.forward(&ids).map(drop));
            Ok(ready.with_err(err))
        }));
    }
    // One call of Stable Diffusion 1.5's UNet (random weights at its real config) on the CPU:
    // a 64×64 latent batch of 2 (classifier-free guidance's pair) with 77 text tokens.
    if !quick && !d.is_gpu() {
        v.push(Work::new(
            "UNet SD1.5 call 64² ×2 77 tok",
            "e2e",
            move || {
                let cfg = UNet2DConditionConfig::sd15();
                let unet = UNet2DConditionModel::load(&Vars::random(5, d), &cfg)?;
                let (b, hw, tokens) = (2, 64, 77);
                let sample = Tensor::from_vec(d, &[b, 4, hw, hw], rand(b * 4 * hw * hw, 11))?;
                let text = Tensor::from_vec(d, &[b, tokens, 768], rand(b * tokens * 768, 12))?;
                let flop = unet.flops(b, hw, hw, tokens);
                Ok(Ready::new(flop, move || {
                    unet.forward(&sample, &[999.0], &text, None).map(drop)
                }))
            },
        ));
    }
    if !quick {
        v.extend(demo_workloads(d));
    }
    Ok(v)
}

/// The built-in demo model (without one, random weights with its architecture).
fn demo_model(d: &Device) -> Result<SpadePipeline> {
    let store = match crate::pipelines::spade::DEMO_MODEL {
        Some(_) => crate::pipelines::spade::load_store(None)?,
        None => {
            let classes = serde_json::from_str(include_str!("../maps/classes.json"))?;
            let cfg = SpadeConfig {
                label_nc: 14,
                contain_dontcare_label: false,
                no_instance: true,
                crop_size: 128,
                ngf: 32,
                use_vae: true,
                classes,
                ..SpadeConfig::nvlabs_defaults()
            };
            SpadePipeline::random_store(&cfg, 1)?
        }
    };
    SpadePipeline::from_store(&store, d, WeightStorage::F32)
}

/// Two 256² canvases as the painter holds them: sky over grass with a lake, and the same after
/// one 6-px brush stroke over 60 px.
fn demo_canvases(classes: &[u32]) -> [Arc<crate::paint::Canvas>; 2] {
    let (sky, grass, water, tree) = (classes[0], classes[2], classes[5], classes[1]);
    let mut a = crate::paint::Editor::new(crate::paint::Canvas::new(256, 256, sky));
    a.begin("fill");
    a.stroke((0.0, 180.0), (256.0, 180.0), 40.0, grass);
    a.stroke((60.0, 200.0), (180.0, 200.0), 15.0, water);
    a.end();
    let ca = Arc::new(a.canvas().clone());
    a.begin("brush");
    a.stroke((100.0, 150.0), (160.0, 130.0), 6.0, tree);
    a.end();
    [ca, Arc::new(a.canvas().clone())]
}

/// The built-in demo model as the painter runs it, through the painter's own renderer (canvas →
/// prepare → generator → RGB): a full render, a new style on the same map (γ/β cached), and the
/// paint loop — a brush stroke, then the refreshed image (forward with windowed γ/β), alternating
/// two canvases that differ by one stroke.
fn demo_workloads(d: &Device) -> Vec<Work<'_>> {
    use crate::paint::worker::{ModelRenderer, Renderer, Request, Style};
    let req = |canvas: &Arc<crate::paint::Canvas>, seed| Request {
        seq: 0,
        canvas: canvas.clone(),
        style: Style::Seed(seed),
        unknown_as: None,
    };
    // With γ/β cached only the trunk runs (plus, after a stroke, the SPADE MLPs in a small
    // window, not counted): the FLOPs of the two cached rows are the trunk's.
    let setup = move || -> Result<(ModelRenderer, [Arc<crate::paint::Canvas>; 2], f64)> {
        let model = demo_model(d)?;
        let classes: Vec<u32> = model.cfg.classes.iter().map(|c| c.id).collect();
        let trunk = crate::models::spade::generator_flops_trunk(&model.cfg)?;
        Ok((ModelRenderer::new(model), demo_canvases(&classes), trunk))
    };
    vec![
        Work::new("demo 128² render", "e2e", move || {
            let (mut full, [ca, _], _) = setup()?;
            full.model.generator.set_gamma_beta_cache(false);
            let flop = crate::models::spade::generator_flops_executed(&full.model.cfg)?;
            let dense_flop = crate::models::spade::generator_flops(&full.model.cfg)?;
            Ok(Ready {
                flop,
                dense_flop: Some(dense_flop),
                run: Box::new(move || full.render(&req(&ca, 0)).map(drop)),
                err_vs_f32: None,
            })
        }),
        Work::new("demo new style (γβ cached)", "e2e", move || {
            let (mut style, [ca, _], trunk) = setup()?;
            let mut seed = 0u64;
            Ok(Ready::new(trunk, move || {
                seed += 1;
                style.render(&req(&ca, seed)).map(drop)
            }))
        }),
        Work::new("demo paint stroke 256² canvas", "e2e", move || {
            let (mut stroke, [ca, cb], trunk) = setup()?;
            let mut flip = false;
            Ok(Ready::new(trunk, move || {
                flip = !flip;
                stroke
                    .render(&req(if flip { &cb } else { &ca }, 0))
                    .map(drop)
            }))
        }),
    ]
}

/// Runs every workload on `d`: one warm-up (pipeline compilation), then `runs` timed runs, each
/// followed by a device sync.
pub fn run_device(
    d: &Device,
    adapter: &str,
    quick: bool,
    runs: usize,
    only: Option<&str>,
    progress: &indicatif::ProgressBar,
) -> Result<Vec<Row>> {
    let mut works = op_workloads(d, quick);
    works.extend(e2e_workloads(d, quick)?);
    // Last, on a warm machine (first in the list it measured 20 % low on the CPU).
    works.extend(peak_workloads(d, quick));
    if let Some(f) = only {
        works.retain(|w| w.kind == "peak" || f.split(',').any(|p| w.name.contains(p.trim())));
    }
    progress.inc_length(works.len() as u64);
    run_works(d, adapter, quick, runs, works, progress)
}

fn run_works(
    d: &Device,
    adapter: &str,
    quick: bool,
    runs: usize,
    works: Vec<Work>,
    progress: &indicatif::ProgressBar,
) -> Result<Vec<Row>> {
    let backend = if d.is_gpu() { "gpu" } else { "cpu" };
    let mut rows = Vec::new();
    for wk in works {
        progress.set_message(format!("{adapter}: {}", wk.name));
        // Each workload's memory is its own: the previous one is dropped, the pool emptied and
        // the high-water marks reset before it is built.
        if let Device::Gpu(ctx) = d {
            ctx.sync()?;
            ctx.trim_pool();
            ctx.reset_mem_stats();
        }
        crate::backend::cpu::release_freed_memory();
        reset_rss_peak();
        let mut ready = (wk.build)()?;
        // What the build freed (f16 rows also build and run an f32 twin for their error) leaves
        // the pool: the warm-up below starts from the workload's own weights and inputs.
        if let Device::Gpu(ctx) = d {
            ctx.sync()?;
            ctx.trim_pool();
            ctx.reset_mem_stats();
        }
        // The peak microbenchmark gets extra warm-up and runs, and reports its best run.
        let peak = wk.kind == "peak";
        for _ in 0..if peak { 3 } else { 1 } {
            (ready.run)()?;
            d.sync()?;
        }
        // Held after the warm-up: weights, inputs and caches (γ/β); the timed runs' peak above
        // it is their working set.
        let resident = match d {
            Device::Gpu(ctx) => ctx.mem_stats().live,
            Device::Cpu => 0,
        };
        if let Device::Gpu(ctx) = d {
            ctx.reset_mem_stats();
        }
        let n = if wk.kind == "e2e" && d.is_gpu() && !quick {
            1
        } else if peak {
            runs.max(5)
        } else {
            runs
        };
        let mut ms = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            (ready.run)()?;
            d.sync()?;
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        ms.sort_by(|a, b| a.total_cmp(b));
        let median = ms[ms.len() / 2];
        // The rate of a peak row is its best run; of every other row, its median.
        let rate_ms = if peak { ms[0] } else { median };
        let (peak_dev, largest) = match d {
            Device::Gpu(ctx) => {
                let m = ctx.mem_stats();
                (m.peak, m.largest[0] + m.largest[1])
            }
            Device::Cpu => (0, 0),
        };
        let mib = |b: u64| b as f64 / 1048576.0;
        rows.push(Row {
            adapter: adapter.to_string(),
            backend: backend.into(),
            workload: wk.name,
            kind: wk.kind.into(),
            runs: n,
            median_ms: median,
            min_ms: ms[0],
            gflops: ready.flop / rate_ms / 1e6,
            dense_equiv_gflops: ready.dense_flop.unwrap_or(ready.flop) / rate_ms / 1e6,
            pct_of_peak: f64::NAN,
            peak_device_mib: mib(peak_dev),
            resident_device_mib: mib(resident),
            largest2_device_mib: mib(largest),
            host_rss_mib: host_rss_mib(),
            max_err_vs_f32: ready.err_vs_f32.map_or(f64::NAN, |e| e.0),
            mean_err_vs_f32: ready.err_vs_f32.map_or(f64::NAN, |e| e.1),
        });
        drop(ready);
        progress.inc(1);
    }
    let peak = rows
        .iter()
        .filter(|r| r.kind == "peak")
        .map(|r| r.gflops)
        .fold(0.0, f64::max);
    for r in &mut rows {
        r.pct_of_peak = if peak > 0.0 {
            100.0 * r.gflops / peak
        } else {
            f64::NAN
        };
    }
    Ok(rows)
}

/// Only the per-op workloads whose name contains `filter` (for kernel experiments).
pub fn run_ops(
    d: &Device,
    adapter: &str,
    quick: bool,
    runs: usize,
    filter: &str,
) -> Result<Vec<Row>> {
    let mut works: Vec<Work> = op_workloads(d, quick)
        .into_iter()
        .filter(|w| w.name.contains(filter))
        .collect();
    works.extend(peak_workloads(d, quick));
    run_works(
        d,
        adapter,
        quick,
        runs,
        works,
        &indicatif::ProgressBar::hidden(),
    )
}

pub fn gpu_info(ctx: &Arc<GpuContext>) -> serde_json::Value {
    let t = crate::ops::conv2d::gpu_tile(ctx);
    let tile = format!("{}x{}", t.0, t.1);
    let i = &ctx.info;
    let l = &ctx.limits;
    serde_json::json!({
        "name": i.name, "backend": format!("{:?}", i.backend), "device_type": format!("{:?}", i.device_type),
        "driver": i.driver, "driver_info": i.driver_info, "vendor": i.vendor, "device": i.device,
        "features": format!("{:?}", ctx.device.features()),
        "conv_tile": tile,
        "limits": {
            "max_storage_buffer_binding_size": l.max_storage_buffer_binding_size,
            "max_buffer_size": l.max_buffer_size,
            "max_compute_workgroup_storage_size": l.max_compute_workgroup_storage_size,
            "max_compute_invocations_per_workgroup": l.max_compute_invocations_per_workgroup,
            "max_compute_workgroups_per_dimension": l.max_compute_workgroups_per_dimension,
        }
    })
}

pub fn print_table(rows: &[Row]) {
    println!(
        "{:<34} {:<4} {:<44} {:>10} {:>10} {:>9} {:>9} {:>7} {:>9} {:>9} {:>9} {:>8} {:>10}",
        "adapter",
        "be",
        "workload",
        "median ms",
        "min ms",
        "GFLOP/s",
        "dense-eq",
        "% peak",
        "dev MiB",
        "resident",
        "2 largest",
        "RSS MiB",
        "err vs f32"
    );
    for r in rows {
        let name: String = r.adapter.chars().take(34).collect();
        println!(
            "{:<34} {:<4} {:<44} {:>10.2} {:>10.2} {:>9.1} {:>9.1} {:>7.0} {:>9.0} {:>9.0} {:>9.0} {:>8.0} {:>10}",
            name,
            r.backend,
            r.workload,
            r.median_ms,
            r.min_ms,
            r.gflops,
            r.dense_equiv_gflops,
            r.pct_of_peak,
            r.peak_device_mib,
            r.resident_device_mib,
            r.largest2_device_mib,
            r.host_rss_mib,
            if r.max_err_vs_f32.is_nan() {
                "-".to_string()
            } else {
                format!("{:.1e}", r.max_err_vs_f32)
            }
        );
    }
}

/// ASCII stand-ins for the few non-ASCII characters in workload names (the 8×8 font is ASCII).
fn ascii(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '²' => '2',
            '→' => '>',
            '×' => 'x',
            'γ' => 'g',
            'β' => 'b',
            c if c.is_ascii() => c,
            _ => '?',
        })
        .collect()
}

fn draw_text(img: &mut image::RgbImage, x: u32, y: u32, text: &str, scale: u32, color: [u8; 3]) {
    for (i, ch) in ascii(text).chars().enumerate() {
        let glyph = font8x8::legacy::BASIC_LEGACY[(ch as usize) & 127];
        for (gy, row) in glyph.iter().enumerate() {
            for gx in 0..8 {
                if row >> gx & 1 == 1 {
                    for dy in 0..scale {
                        for dx in 0..scale {
                            let px = x + (i as u32 * 8 + gx) * scale + dx;
                            let py = y + gy as u32 * scale + dy;
                            if px < img.width() && py < img.height() {
                                img.put_pixel(px, py, image::Rgb(color));
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A horizontal bar chart of GFLOP/s per workload and device, written as PNG.
pub fn plot(rows: &[Row], path: &std::path::Path) -> Result<()> {
    const PALETTE: [[u8; 3]; 4] = [[52, 101, 164], [204, 102, 0], [78, 154, 6], [117, 80, 123]];
    let rows: Vec<&Row> = rows.iter().filter(|r| r.gflops.is_finite()).collect();
    let devices: Vec<&str> = rows.iter().fold(Vec::new(), |mut v, r| {
        if !v.contains(&r.adapter.as_str()) {
            v.push(r.adapter.as_str());
        }
        v
    });
    let (label_w, bar_w, row_h, top) = (600u32, 560u32, 22u32, 40u32);
    let height = top + rows.len() as u32 * row_h + 20 + devices.len() as u32 * 20;
    let mut img =
        image::RgbImage::from_pixel(label_w + bar_w + 140, height, image::Rgb([255, 255, 255]));
    draw_text(
        &mut img,
        10,
        10,
        "spadework bench: executed GFLOP/s, log scale",
        2,
        [0, 0, 0],
    );
    let max = rows.iter().map(|r| r.gflops).fold(1e-9, f64::max);
    for (i, r) in rows.iter().enumerate() {
        let y = top + i as u32 * row_h;
        let di = devices.iter().position(|d| *d == r.adapter).unwrap_or(0);
        let color = PALETTE[di % PALETTE.len()];
        let label: String = ascii(&r.workload).chars().take(36).collect();
        draw_text(&mut img, 10, y + 3, &label, 2, [30, 30, 30]);
        // log scale from 0.1 GFLOP/s to the maximum
        let frac =
            ((r.gflops.max(0.1) / 0.1).log10() / (max.max(0.2) / 0.1).log10()).clamp(0.0, 1.0);
        let len = (frac * bar_w as f64).round().max(1.0) as u32;
        for yy in y + 2..y + row_h - 2 {
            for xx in label_w..label_w + len {
                img.put_pixel(xx, yy, image::Rgb(color));
            }
        }
        draw_text(
            &mut img,
            label_w + len + 6,
            y + 3,
            &format!("{:.1}", r.gflops),
            2,
            [30, 30, 30],
        );
    }
    for (i, d) in devices.iter().enumerate() {
        let y = top + rows.len() as u32 * row_h + 10 + i as u32 * 20;
        let c = PALETTE[i % PALETTE.len()];
        for yy in y..y + 14 {
            for xx in 10..30 {
                img.put_pixel(xx, yy, image::Rgb(c));
            }
        }
        draw_text(&mut img, 40, y, d, 2, [0, 0, 0]);
    }
    img.save(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
