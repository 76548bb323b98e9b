//! The NVlabs SPADE generator (SPADE_SPEC §2), written like the paper's figure:
//! fc → head_0 → up → G_middle_0 → [up] → G_middle_1 → (up → up_i)* → lrelu → conv_img → tanh.
//! Field and tensor names are the checkpoint's keys verbatim.
use super::config::{NormKind, SpadeConfig};
use crate::backend::Device;
use crate::ops::{self, Conv2d, Linear, NearestRule, OneHotConv, ParamFreeNorm};
use crate::tensor::Tensor;
use crate::weights::vars::{Init, Vars};
use anyhow::{Result, bail};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Hidden width of every SPADE's shared MLP (hard-coded in NVlabs).
pub const NHIDDEN: usize = 128;
/// Negative slope of the block and final activations.
pub const LRELU: f32 = 0.2;

/// A conv that reads the one-hot label map (`weight` and `bias` under `v`), run as a gather.
fn onehot_conv(
    v: &Vars,
    shape: [usize; 4],
    has_edge: bool,
    pad: usize,
    relu: bool,
) -> Result<OneHotConv> {
    let w = v.get("weight", &shape, Init::FanIn)?;
    let b = v.get("bias", &shape[..1], Init::Uniform(-0.1, 0.1))?;
    OneHotConv::new(v.device(), &w, shape, &b, has_edge, pad, relu)
}

/// SPADE(C): param-free norm, then `n * (1 + gamma) + beta` from a conv MLP on the resized map.
pub struct Spade {
    param_free_norm: ParamFreeNorm,
    /// Reads the one-hot map: a gather (see [`OneHotConv`]).
    mlp_shared: OneHotConv,
    /// mlp_gamma and mlp_beta stacked into one conv with 2C outputs (one pass over the hidden map).
    mlp_gamma_beta: Conv2d,
    /// Padding of each of the two convs (kernel size / 2).
    pad: usize,
    /// γ/β for the last map seen, when the generator's cache is on.
    cache: Mutex<Option<GammaBetaCache>>,
}

/// γ/β depend on the map only, not on z or the trunk: the same map with a new style reuses them,
/// and a changed map recomputes only the window its changes reach (two k×k convs: 2·pad pixels
/// around the changed box), SIGE-style, and pastes it into the cached tensor in place.
struct GammaBetaCache {
    /// The [2, h, w] label map (channel index, edge bit) the values belong to.
    seg: Vec<f32>,
    h: usize,
    w: usize,
    gb: Arc<Tensor>,
}

/// A pixel box [y0, y1) × [x0, x1).
#[derive(Clone, Copy, Debug, PartialEq)]
struct PixBox {
    y0: usize,
    y1: usize,
    x0: usize,
    x1: usize,
}

impl PixBox {
    fn grow(self, d: usize, h: usize, w: usize) -> PixBox {
        PixBox {
            y0: self.y0.saturating_sub(d),
            y1: (self.y1 + d).min(h),
            x0: self.x0.saturating_sub(d),
            x1: (self.x1 + d).min(w),
        }
    }
    fn area(&self) -> usize {
        (self.y1 - self.y0) * (self.x1 - self.x0)
    }
}

/// The bounding box of the pixels where two [c, h, w] maps differ.
fn changed_box(a: &[f32], b: &[f32], c: usize, h: usize, w: usize) -> Option<PixBox> {
    let mut bx: Option<PixBox> = None;
    for ch in 0..c {
        for y in 0..h {
            let (ra, rb) = (&a[(ch * h + y) * w..][..w], &b[(ch * h + y) * w..][..w]);
            if ra == rb {
                continue;
            }
            let x0 = (0..w).find(|&x| ra[x] != rb[x]).unwrap();
            let x1 = (0..w).rfind(|&x| ra[x] != rb[x]).unwrap() + 1;
            bx = Some(match bx {
                None => PixBox {
                    y0: y,
                    y1: y + 1,
                    x0,
                    x1,
                },
                Some(p) => PixBox {
                    y0: p.y0.min(y),
                    y1: p.y1.max(y + 1),
                    x0: p.x0.min(x0),
                    x1: p.x1.max(x1),
                },
            });
        }
    }
    bx
}

/// Copies box `b` of a [c, h, w] array.
fn crop(v: &[f32], c: usize, h: usize, w: usize, b: PixBox) -> Vec<f32> {
    let mut out = Vec::with_capacity(c * b.area());
    for ch in 0..c {
        for y in b.y0..b.y1 {
            out.extend_from_slice(&v[(ch * h + y) * w + b.x0..(ch * h + y) * w + b.x1]);
        }
    }
    out
}

impl Spade {
    /// `v`: the weights under this SPADE's key (e.g. `head_0.norm_0`).
    fn load(v: &Vars, c: usize, cfg: &SpadeConfig) -> Result<Spade> {
        let (norm, ks) = (cfg.norm_g.norm, cfg.norm_g.kernel);
        let pad = ks / 2;
        let param_free_norm = match norm {
            NormKind::Batch => {
                let n = v.pp("param_free_norm");
                ParamFreeNorm::batch(
                    v.device(),
                    &n.get("running_mean", &[c], Init::Uniform(-0.1, 0.1))?,
                    &n.get("running_var", &[c], Init::Uniform(0.5, 1.5))?,
                )?
            }
            NormKind::Instance => ParamFreeNorm::Instance,
        };
        let mlp_shared = onehot_conv(
            &v.pp("mlp_shared").pp(0),
            [NHIDDEN, cfg.semantic_nc(), ks, ks],
            !cfg.no_instance,
            pad,
            true, // mlp_shared = Sequential(conv, ReLU)
        )?;
        let shape = [c, NHIDDEN, ks, ks];
        let bias = Init::Uniform(-0.1, 0.1);
        let (g, b) = (v.pp("mlp_gamma"), v.pp("mlp_beta"));
        let mlp_gamma_beta = Conv2d::with_storage(
            v.device(),
            &[
                g.get("weight", &shape, Init::FanIn)?,
                b.get("weight", &shape, Init::FanIn)?,
            ]
            .concat(),
            [2 * c, NHIDDEN, ks, ks],
            Some(&[g.get("bias", &[c], bias)?, b.get("bias", &[c], bias)?].concat()),
            1,
            pad,
            v.storage(),
        )?;
        Ok(Spade {
            param_free_norm,
            mlp_shared,
            mlp_gamma_beta,
            pad,
            cache: Mutex::new(None),
        })
    }

    /// `seg` must already be at x's resolution (see [`SegPyramid`]); with its host copy the
    /// γ/β cache is used. `act` fuses a leaky-ReLU.
    fn forward(&self, x: &Tensor, seg: Level, act: Option<f32>) -> Result<Tensor> {
        let gamma_beta = match seg.host {
            Some(host) => self.gamma_beta_cached(seg.map, host)?,
            None => Arc::new(self.gamma_beta(seg.map)?),
        };
        ops::modulate(x, &self.param_free_norm, &gamma_beta, act)
    }

    fn gamma_beta(&self, seg: &Tensor) -> Result<Tensor> {
        let actv = self.mlp_shared.forward(seg)?; // conv + ReLU
        self.mlp_gamma_beta.forward(&actv)
    }

    fn gamma_beta_cached(&self, seg: &Tensor, host: &[f32]) -> Result<Arc<Tensor>> {
        let (_, c, h, w) = seg.nchw()?;
        let mut slot = self.cache.lock().unwrap();
        if let Some(cache) = slot.as_mut()
            && (cache.h, cache.w) == (h, w)
        {
            let Some(changed) = changed_box(&cache.seg, host, c, h, w) else {
                return Ok(cache.gb.clone());
            };
            // The outputs a change reaches, and the input window that computes them exactly: on
            // sides inside the map the window's zero padding only spoils the 2·pad rim we drop.
            let out = changed.grow(2 * self.pad, h, w);
            let win = out.grow(2 * self.pad, h, w);
            if win.area() < h * w
                && let Some(gb) = Arc::get_mut(&mut cache.gb)
            {
                let (wh, ww) = (win.y1 - win.y0, win.x1 - win.x0);
                let part =
                    Tensor::from_vec(&seg.device(), &[1, c, wh, ww], crop(host, c, h, w, win))?;
                let part = self.gamma_beta(&part)?;
                let at = ops::PixRect {
                    y: out.y0,
                    x: out.x0,
                    h: out.y1 - out.y0,
                    w: out.x1 - out.x0,
                };
                ops::paste(gb, at, &part, (out.y0 - win.y0, out.x0 - win.x0))?;
                cache.seg = host.to_vec();
                return Ok(cache.gb.clone());
            }
        }
        let gb = Arc::new(self.gamma_beta(seg)?);
        *slot = Some(GammaBetaCache {
            seg: host.to_vec(),
            h,
            w,
            gb: gb.clone(),
        });
        Ok(gb)
    }
}

/// SPADEResnetBlock(fin, fout): learned shortcut iff fin != fout.
pub struct SpadeResnetBlock {
    conv_0: Conv2d,
    conv_1: Conv2d,
    conv_s: Option<Conv2d>,
    norm_0: Spade,
    norm_1: Spade,
    norm_s: Option<Spade>,
}

impl SpadeResnetBlock {
    /// `v`: the weights under the block's key (e.g. `up_0`).
    fn load(v: &Vars, fin: usize, fout: usize, cfg: &SpadeConfig) -> Result<Self> {
        let fmid = fin.min(fout);
        let learned = fin != fout;
        Ok(SpadeResnetBlock {
            conv_0: v.conv2d("conv_0", [fmid, fin, 3, 3], true, 1, 1)?,
            conv_1: v.conv2d("conv_1", [fout, fmid, 3, 3], true, 1, 1)?,
            conv_s: if learned {
                Some(v.conv2d("conv_s", [fout, fin, 1, 1], false, 1, 0)?)
            } else {
                None
            },
            norm_0: Spade::load(&v.pp("norm_0"), fin, cfg)?,
            norm_1: Spade::load(&v.pp("norm_1"), fmid, cfg)?,
            norm_s: if learned {
                Some(Spade::load(&v.pp("norm_s"), fin, cfg)?)
            } else {
                None
            },
        })
    }

    fn forward(&self, x: &Tensor, seg: Level) -> Result<Tensor> {
        // The shortcut has no activation; the main branch applies lrelu after each SPADE.
        let x_s = match (&self.conv_s, &self.norm_s) {
            (Some(conv_s), Some(norm_s)) => Some(conv_s.forward(&norm_s.forward(x, seg, None)?)?),
            _ => None,
        };
        let dx = self
            .conv_0
            .forward(&self.norm_0.forward(x, seg, Some(LRELU))?)?;
        let dx = self
            .conv_1
            .forward(&self.norm_1.forward(&dx, seg, Some(LRELU))?)?;
        ops::add(x_s.as_ref().unwrap_or(x), &dx)
    }
}

pub enum Fc {
    /// conv3x3 on the map nearest-resized to (sh, sw) (a gather on the one-hot map).
    Conv(OneHotConv),
    /// VAE mode: Linear(z_dim → 16·ngf·sh·sw), reshaped row-major to (N, 16·ngf, sh, sw).
    Linear(Linear),
}

/// The input map at every resolution the blocks need, each resized once from the full map with
/// the `F.interpolate` nearest rule; with `keep_host`, also a host copy of each level (one
/// download of the full map, resized by the CPU twin) for the γ/β cache.
pub struct SegPyramid {
    levels: Vec<((usize, usize), Tensor, Option<Vec<f32>>)>,
}

/// One level of a [`SegPyramid`].
#[derive(Clone, Copy)]
pub struct Level<'a> {
    pub map: &'a Tensor,
    pub host: Option<&'a [f32]>,
}

impl SegPyramid {
    pub fn new(seg: Tensor, sizes: &[(usize, usize)], keep_host: bool) -> Result<SegPyramid> {
        let (_, c, h, w) = seg.nchw()?;
        let full = if keep_host { Some(seg.to_vec()?) } else { None };
        let mut levels: Vec<((usize, usize), Tensor, Option<Vec<f32>>)> = Vec::new();
        for &(sh, sw) in sizes {
            if (sh, sw) != (h, w) && !levels.iter().any(|(s, _, _)| *s == (sh, sw)) {
                let host = full.as_ref().map(|f| {
                    ops::resize::resize_nearest_cpu(f, c, [h, w], [sh, sw], NearestRule::Torch)
                });
                levels.push((
                    (sh, sw),
                    ops::resize_nearest(&seg, sh, sw, NearestRule::Torch)?,
                    host,
                ));
            }
        }
        levels.push(((h, w), seg, full));
        Ok(SegPyramid { levels })
    }

    /// The map at x's resolution.
    pub fn at(&self, x: &Tensor) -> Result<Level<'_>> {
        let (_, _, h, w) = x.nchw()?;
        self.at_size(h, w)
    }

    pub fn at_size(&self, h: usize, w: usize) -> Result<Level<'_>> {
        self.levels
            .iter()
            .find(|(s, _, _)| *s == (h, w))
            .map(|(_, map, host)| Level {
                map,
                host: host.as_deref(),
            })
            .ok_or_else(|| anyhow::anyhow!("no map level {h}x{w}"))
    }
}

#[allow(non_snake_case)] // field names are the checkpoint's keys
pub struct SpadeGenerator {
    pub cfg: SpadeConfig,
    fc: Fc,
    head_0: SpadeResnetBlock,
    G_middle_0: SpadeResnetBlock,
    G_middle_1: SpadeResnetBlock,
    /// up_0 .. up_3 (and up_4 for `most`).
    ups: Vec<SpadeResnetBlock>,
    conv_img: Conv2d,
    /// Keep every SPADE's γ/β for the last map (see [`Self::set_gamma_beta_cache`]).
    gb_cache: AtomicBool,
}

impl SpadeGenerator {
    /// Builds the generator from the weights at the root of `v` (keys `fc.*`, `head_0.*`, …).
    pub fn load(v: &Vars, cfg: &SpadeConfig) -> Result<SpadeGenerator> {
        cfg.validate()?;
        let nf = cfg.ngf;
        let fc = if cfg.use_vae {
            let (sh, sw) = cfg.first_size()?;
            Fc::Linear(v.linear("fc", [16 * nf * sh * sw, cfg.z_dim], true)?)
        } else {
            Fc::Conv(onehot_conv(
                &v.pp("fc"),
                [16 * nf, cfg.semantic_nc(), 3, 3],
                !cfg.no_instance,
                1,
                false,
            )?)
        };
        let blocks = cfg.blocks()?;
        let mut it = blocks
            .iter()
            .map(|(n, fin, fout)| SpadeResnetBlock::load(&v.pp(n), *fin, *fout, cfg));
        let head_0 = it.next().unwrap()?;
        let g_middle_0 = it.next().unwrap()?;
        let g_middle_1 = it.next().unwrap()?;
        let ups = it.collect::<Result<Vec<_>>>()?;
        let last = if cfg.num_up()? == 7 { nf / 2 } else { nf };
        let conv_img = v.conv2d("conv_img", [3, last, 3, 3], true, 1, 1)?;
        Ok(SpadeGenerator {
            cfg: cfg.clone(),
            fc,
            head_0,
            G_middle_0: g_middle_0,
            G_middle_1: g_middle_1,
            ups,
            conv_img,
            gb_cache: AtomicBool::new(false),
        })
    }

    /// With the cache on, every SPADE keeps its γ/β for the last map: rendering the same map
    /// with another z reuses them, and a small edit recomputes only the window around it (on
    /// either backend). γ/β are ~80 % of SPADE's FLOPs.
    /// Costs the memory of all γ/β maps; off by default.
    pub fn set_gamma_beta_cache(&self, on: bool) {
        self.gb_cache.store(on, Ordering::Relaxed);
        if !on {
            for s in self.spades() {
                *s.cache.lock().unwrap() = None;
            }
        }
    }

    fn spades(&self) -> impl Iterator<Item = &Spade> {
        [&self.head_0, &self.G_middle_0, &self.G_middle_1]
            .into_iter()
            .chain(self.ups.iter())
            .flat_map(|b| [Some(&b.norm_0), Some(&b.norm_1), b.norm_s.as_ref()])
            .flatten()
    }

    /// seg: the `[1, 2, H, W]` label map (label channel index, instance-edge bit; see
    /// [`ops::onehot_conv::label_map`]), standing for the `[1, semantic_nc, H, W]` one-hot input;
    /// z: [1, z_dim] in VAE mode.
    /// Returns the tanh output [1, 3, sh·2ⁿ, sw·2ⁿ].
    pub fn forward(&self, seg: Tensor, z: Option<&Tensor>) -> Result<Tensor> {
        let (n, c, _, _) = seg.nchw()?;
        if (n, c) != (1, 2) {
            bail!(
                "the generator takes a [1, 2, H, W] label map, got {:?}",
                seg.shape()
            );
        }
        let (sh, sw) = self.cfg.first_size()?;
        let nup = self.cfg.num_up()?;
        let mut sizes = vec![(sh, sw), (2 * sh, 2 * sw)];
        let mut s = if nup >= 6 {
            (4 * sh, 4 * sw)
        } else {
            (2 * sh, 2 * sw)
        };
        sizes.push(s);
        for _ in 0..self.ups.len() {
            s = (2 * s.0, 2 * s.1);
            sizes.push(s);
        }
        let seg = SegPyramid::new(seg, &sizes, self.gb_cache.load(Ordering::Relaxed))?;

        let mut x = match &self.fc {
            Fc::Conv(fc) => fc.forward(seg.at_size(sh, sw)?.map)?,
            Fc::Linear(fc) => {
                let Some(z) = z else {
                    bail!("this VAE generator needs a z (--seed, --z or --style)")
                };
                fc.forward(z)?.reshape(&[n, 16 * self.cfg.ngf, sh, sw])?
            }
        };
        x = self.head_0.forward(&x, seg.at(&x)?)?;
        x = ops::upsample2x(&x)?;
        x = self.G_middle_0.forward(&x, seg.at(&x)?)?;
        if nup >= 6 {
            x = ops::upsample2x(&x)?;
        }
        x = self.G_middle_1.forward(&x, seg.at(&x)?)?;
        for up in &self.ups {
            x = ops::upsample2x(&x)?;
            x = up.forward(&x, seg.at(&x)?)?;
        }
        x = self.conv_img.forward(&ops::leaky_relu(&x, LRELU)?)?;
        ops::tanh(&x)
    }
}

/// What a model file whose tensors do not fit its config is told to check.
pub const FLAGS_HINT: &str = "check the flags (--num-upsampling-layers, --norm-g, --use-vae)";

/// Checks that `store` holds exactly the tensors of a generator (and, if the config has one, a
/// style encoder under `netE.`) with `cfg`, with the right shapes, by building both on the CPU.
pub fn check_weights(store: &crate::weights::WeightStore, cfg: &SpadeConfig) -> Result<()> {
    let v = Vars::new(store, &Device::Cpu);
    SpadeGenerator::load(&v, cfg)?;
    if cfg.has_encoder {
        super::encoder::ConvEncoder::load(&v.pp("netE"), cfg)?;
    }
    v.finish(FLAGS_HINT)
}

/// Multiply-adds × 2 of one forward pass at the config's native size, counted like SPADE_SPEC §6
/// (every conv and linear; one-hot convs counted dense, as in the paper's figures).
pub fn generator_flops(cfg: &SpadeConfig) -> Result<f64> {
    count_flops(cfg, cfg.semantic_nc() as f64, true)
}

/// The FLOPs of the trunk alone: [`generator_flops_executed`] without the SPADE MLPs
/// (`mlp_shared`, `mlp_gamma`, `mlp_beta`), i.e. what a render costs when every γ/β is cached.
pub fn generator_flops_trunk(cfg: &SpadeConfig) -> Result<f64> {
    count_flops(cfg, 1.0, false)
}

/// The FLOPs this engine executes: as [`generator_flops`], but each one-hot conv (`fc` without
/// the VAE, every `mlp_shared`) counts as the gather it runs, one tap per kernel position (plus
/// the instance-edge channel, which stays a dense input).
pub fn generator_flops_executed(cfg: &SpadeConfig) -> Result<f64> {
    count_flops(cfg, 1.0 + (!cfg.no_instance) as u8 as f64, true)
}

/// `snc`: the input channels a conv on the segmentation map costs (dense: semantic_nc);
/// `spade_mlps`: whether the SPADE MLPs (which the γ/β cache can skip) are counted.
fn count_flops(cfg: &SpadeConfig, snc: f64, spade_mlps: bool) -> Result<f64> {
    let (sh, sw) = cfg.first_size()?;
    let ks = cfg.norm_g.kernel;
    let nf = cfg.ngf as f64;
    let k2 = (ks * ks) as f64;
    let mut px = (sh * sw) as f64;
    let mut macs = if cfg.use_vae {
        cfg.z_dim as f64 * 16.0 * nf * px
    } else {
        16.0 * nf * snc * 9.0 * px
    };
    let spade = |c: f64, px: f64| {
        if spade_mlps {
            (NHIDDEN as f64 * snc * k2 + 2.0 * c * NHIDDEN as f64 * k2) * px
        } else {
            0.0
        }
    };
    for (i, (name, fin, fout)) in cfg.blocks()?.into_iter().enumerate() {
        let (fin, fout) = (fin as f64, fout as f64);
        let fmid = fin.min(fout);
        let upsample_before = name != "head_0" && (i != 2 || cfg.num_up()? >= 6);
        if upsample_before {
            px *= 4.0;
        }
        macs += (fmid * fin * 9.0 + fout * fmid * 9.0) * px + spade(fin, px) + spade(fmid, px);
        if fin != fout {
            macs += fout * fin * px + spade(fin, px);
        }
    }
    let last = if cfg.num_up()? == 7 { nf / 2.0 } else { nf };
    macs += 3.0 * last * 9.0 * px;
    Ok(2.0 * macs)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn flops_match_spec_section_6() {
        for (p, gflop) in [("ade20k", 362.3), ("coco", 382.3), ("cityscapes", 562.6)] {
            let f = generator_flops(&SpadeConfig::preset(p).unwrap()).unwrap() / 1e9;
            assert!((f - gflop).abs() < 0.1, "{p}: {f} GFLOP, spec says {gflop}");
        }
    }

    #[test]
    fn executed_flops_count_the_gather_not_the_dense_one_hot_conv() {
        // One class, no instance map: the one-hot conv is a 1-channel conv, nothing to save.
        let one = SpadeConfig {
            label_nc: 1,
            contain_dontcare_label: false,
            no_instance: true,
            ..SpadeConfig::preset("ade20k").unwrap()
        };
        let (d, e) = (
            generator_flops(&one).unwrap(),
            generator_flops_executed(&one).unwrap(),
        );
        assert_eq!(d, e);
        // ade20k: 151 one-hot channels become one gather tap; a quarter of the MACs go.
        let ade = SpadeConfig::preset("ade20k").unwrap();
        let (d, e) = (
            generator_flops(&ade).unwrap(),
            generator_flops_executed(&ade).unwrap(),
        );
        let saved = 1.0 - e / d;
        assert!((0.2..0.3).contains(&saved), "ade20k saves {saved}");
        // cityscapes keeps its instance-edge channel dense: 2 input channels, not 1.
        let cs = SpadeConfig::preset("cityscapes").unwrap();
        let two = SpadeConfig {
            label_nc: 1,
            contain_dontcare_label: false,
            ..cs.clone()
        };
        assert_eq!(
            generator_flops_executed(&cs).unwrap(),
            generator_flops(&two).unwrap()
        );
        // The trunk is what remains without the SPADE MLPs: under half of ade20k's executed work.
        let t = generator_flops_trunk(&ade).unwrap();
        assert!(t > 0.0 && t < 0.5 * e, "trunk {t} of {e}");
    }
}
