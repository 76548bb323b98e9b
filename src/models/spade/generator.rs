//! The NVlabs SPADE generator (SPADE_SPEC §2), written like the paper's figure:
//! fc → head_0 → up → G_middle_0 → [up] → G_middle_1 → (up → up_i)* → lrelu → conv_img → tanh.
//! Field and tensor names are the checkpoint's keys verbatim.
use super::config::SpadeConfig;
use super::input::SegPyramid;
use super::norm::{NHIDDEN, Spade, onehot_conv};
use super::resblock::{LRELU, SpadeResnetBlock};
use crate::ops::{self, Conv2d, Linear, OneHotConv};
use crate::tensor::{Tensor, check_layer};
use crate::weights::vars::Vars;
use anyhow::{Result, bail};
use std::sync::atomic::{AtomicBool, Ordering};

pub enum Fc {
    /// conv3x3 on the map nearest-resized to (sh, sw) (a gather on the one-hot map).
    Conv(OneHotConv),
    /// VAE mode: Linear(z_dim → 16·ngf·sh·sw), reshaped row-major to (N, 16·ngf, sh, sw).
    Linear(Linear),
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
        // Each block's output is checked finite on the CPU (`check_layer`): a NaN is reported
        // at the layer that made it, not as a black image.
        x = check_layer(x, "fc")?;
        x = check_layer(self.head_0.forward(&x, seg.at(&x)?)?, "head_0")?;
        x = ops::upsample2x(&x)?;
        x = check_layer(self.G_middle_0.forward(&x, seg.at(&x)?)?, "G_middle_0")?;
        if nup >= 6 {
            x = ops::upsample2x(&x)?;
        }
        x = check_layer(self.G_middle_1.forward(&x, seg.at(&x)?)?, "G_middle_1")?;
        for (i, up) in self.ups.iter().enumerate() {
            x = ops::upsample2x(&x)?;
            x = check_layer(up.forward(&x, seg.at(&x)?)?, &format!("up_{i}"))?;
        }
        x = check_layer(
            self.conv_img.forward(&ops::leaky_relu(&x, LRELU)?)?,
            "conv_img",
        )?;
        ops::tanh(&x)
    }
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
