//! What `spadework bench` measures: the device's attainable peak (GEMM-shaped work), SPADE's ops
//! at their shapes, end-to-end generator and text-encoder forwards, and the painter's demo loop.
//! Each workload is built just before it runs and knows its FLOPs and, with f16 weights, its error
//! against f32 weights.
use crate::backend::{Device, WeightStorage};
use crate::models::spade::input::PreparedMap;
use crate::models::vae::Tiling;
use crate::models::{
    AutoencoderKL, AutoencoderKLConfig, ClipTextConfig, ClipTextEncoder, SpadeConfig,
    UNet2DConditionConfig, UNet2DConditionModel,
};
use crate::ops::{self, Conv2d, OneHotConv, ParamFreeNorm};
use crate::pipelines::spade::SpadePipeline;
use crate::rng::Rng;
use crate::tensor::Tensor;
use crate::weights::vars::Vars;
use anyhow::{Context, Result};
use std::sync::Arc;

/// One benchmark: a name and how to build it. Workloads are built one at a time, just before they
/// run, so each one's memory figures are its own.
pub(super) struct Work<'a> {
    pub(super) name: String,
    pub(super) kind: &'static str,
    pub(super) build: Box<dyn FnOnce() -> Result<Ready<'a>> + 'a>,
}

/// A built workload: its FLOPs (2 per multiply-add; `flop` executed, `dense_flop` with one-hot
/// convs counted dense where that differs) and a closure that runs it once.
pub(super) struct Ready<'a> {
    pub(super) flop: f64,
    pub(super) dense_flop: Option<f64>,
    pub(super) run: Box<dyn FnMut() -> Result<()> + 'a>,
    /// (max, mean) |Δ| against f32 weights, for f16-weight rows.
    pub(super) err_vs_f32: Option<(f64, f64)>,
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

fn rand(n: usize, seed: u64) -> Vec<f32> {
    Rng::new(seed).uniform_vec(n, -1.0, 1.0)
}

/// The device's attainable dense rate: GEMM-shaped work (a 1×1 conv, 512→512 at 64², i.e.
/// 4096×512×512) on every GPU conv tile with f32 and f16 weights, or a 1024³ sgemm on the CPU;
/// the best row is the peak the other rows are compared with.
pub(super) fn peak_workloads(d: &Device, quick: bool) -> Vec<Work<'_>> {
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
pub(super) fn op_workloads(d: &Device, quick: bool) -> Vec<Work<'_>> {
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
pub(super) fn e2e_workloads(d: &Device, quick: bool) -> Result<Vec<Work<'_>>> {
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
    // Stable Diffusion 1.5's VAE decoding a 64×64 latent to a 512² image (random weights).
    if !quick && !d.is_gpu() {
        v.push(Work::new("VAE SD decode 512²", "e2e", move || {
            let vae = AutoencoderKL::load(&Vars::random(6, d), &AutoencoderKLConfig::sd15())?;
            let z = Tensor::from_vec(d, &[1, 4, 64, 64], rand(4 * 64 * 64, 13))?;
            let flop = vae.decode_flops(64, 64);
            Ok(Ready::new(flop, move || vae.decode(&z).map(drop)))
        }));
        // The same VAE at 1024² in diffusers' tiles (512² tiles overlapping by a quarter): the
        // RSS column is what a large image costs with tiling.
        v.push(Work::new("VAE SD decode 1024² tiled", "e2e", move || {
            let vae = AutoencoderKL::load(&Vars::random(6, d), &AutoencoderKLConfig::sd15())?;
            let z = Tensor::from_vec(d, &[1, 4, 128, 128], rand(4 * 128 * 128, 14))?;
            let (tile, _) = vae
                .tiles_for(128, 128, Tiling::Auto)
                .context("a 128² latent is tiled")?;
            // Tiles start every ⌊0.75 · tile⌋ latent pixels; those at the edges are cut.
            let starts: Vec<usize> = (0..128).step_by(tile * 3 / 4).collect();
            let flop: f64 = starts
                .iter()
                .flat_map(|&i| starts.iter().map(move |&j| (i, j)))
                .map(|(i, j)| vae.decode_flops(tile.min(128 - i), tile.min(128 - j)))
                .sum();
            Ok(Ready::new(flop, move || {
                vae.decode_with(&z, Tiling::Auto).map(drop)
            }))
        }));
    }
    if !quick {
        v.extend(demo_workloads(d));
        v.extend(text_to_image_workloads(d));
    }
    Ok(v)
}

/// The built-in text-to-image stack, stage by stage (default parameters, the built-in models;
/// no rows in a build without them): the MiniLM encoder, one guided call of each layout UNet,
/// and the whole `spadework txt2img "…"` run.
fn text_to_image_workloads(d: &Device) -> Vec<Work<'_>> {
    use crate::pipelines::layout_diffusion::LayoutParams;
    use crate::pipelines::text_to_image::TextToImage;
    const PROMPT: &str = "a calm lake below snowy mountains at dusk";
    if crate::pipelines::layout_diffusion::LayoutCascade::builtin(&Device::Cpu).is_err() {
        return Vec::new();
    }
    let stack = move || TextToImage::builtin(d, WeightStorage::F32);
    let unet_call = move |sr: bool| {
        move || -> Result<Ready<'_>> {
            let t = stack()?;
            let (m, side, b) = if sr {
                (&t.cascade.sr, t.cascade.meta.high, 1)
            } else {
                (&t.cascade.base, t.cascade.meta.low, 2)
            };
            let (cin, tokens) = (m.cfg.in_channels, t.cascade.meta.tokens);
            let w = t.encoder.model.cfg.hidden_size;
            let class = m.class_embedding.as_ref().map_or(0, |c| c.linear_1.fin);
            let x = Tensor::from_vec(d, &[b, cin, side, side], rand(b * cin * side * side, 21))?;
            let text = Tensor::from_vec(d, &[b, tokens, w], rand(b * tokens * w, 22))?;
            let vec = Tensor::from_vec(d, &[b, class], rand(b * class, 23))?;
            let flop = m.flops(b, side, side, tokens);
            Ok(Ready::new(flop, move || {
                let m = if sr { &t.cascade.sr } else { &t.cascade.base };
                m.forward(&x, &[500.0], &text, Some(&vec)).map(drop)
            }))
        }
    };
    vec![
        Work::new("txt2img MiniLM encode 32 tok", "e2e", move || {
            let t = stack()?;
            let c = &t.encoder.model.cfg;
            let (l, w, m) = (32.0, c.hidden_size as f64, c.intermediate_size as f64);
            let flop = c.num_hidden_layers as f64 * (2.0 * l * (4.0 * w * w + 2.0 * w * m))
                + c.num_hidden_layers as f64 * 4.0 * l * l * w;
            Ok(Ready::new(flop, move || {
                t.encoder.encode(PROMPT, 32).map(drop)
            }))
        }),
        Work::new("txt2img layout base call 32² ×2", "e2e", unet_call(false)),
        Work::new("txt2img layout SR call 128²", "e2e", unet_call(true)),
        Work::new("txt2img built-in end to end", "e2e", move || {
            let t = stack()?;
            let p = LayoutParams::default();
            let (lo, hi, tok) = (
                t.cascade.meta.low,
                t.cascade.meta.high,
                t.cascade.meta.tokens,
            );
            let guided = |g: f32| if g > 1.0 { 2 } else { 1 };
            let flop = p.steps as f64
                * (t.cascade.base.flops(guided(p.guidance), lo, lo, tok)
                    + t.cascade.sr.flops(guided(p.sr_guidance), hi, hi, tok))
                + crate::models::spade::generator_flops_executed(&t.spade.cfg)?;
            let mut seed = 0;
            Ok(Ready::new(flop, move || {
                seed += 1;
                t.generate(PROMPT, &p, seed, &mut || {}).map(drop)
            }))
        }),
    ]
}

/// The built-in demo model (without one, random weights with its architecture).
fn demo_model(d: &Device) -> Result<SpadePipeline> {
    let store = match crate::pipelines::spade::DEMO_MODEL {
        Some(_) => crate::pipelines::spade::load_store(None)?,
        None => {
            let classes = serde_json::from_str(include_str!("../../maps/classes.json"))?;
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
        Ok((ModelRenderer::new(model, 0), demo_canvases(&classes), trunk))
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
