//! The SPADE generator configuration, with NVlabs option names (SPADE_SPEC §1). Stored as JSON in
//! the safetensors header (`spade_config`), so a converted file needs nothing else to render.
use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ClassInfo {
    pub id: u32,
    pub name: String,
    pub color: [u8; 3],
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SpadeConfig {
    pub label_nc: usize,
    pub contain_dontcare_label: bool,
    pub no_instance: bool,
    pub crop_size: usize,
    pub aspect_ratio: f64,
    /// "normal" | "more" | "most"
    pub num_upsampling_layers: String,
    pub use_vae: bool,
    pub z_dim: usize,
    pub ngf: usize,
    #[serde(rename = "norm_G")]
    pub norm_g: NormG,
    /// Label names/colours when known (palette maps, the paint tool).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<ClassInfo>,
    /// Whether the file also holds the VAE style encoder (`netE.*` tensors).
    #[serde(default)]
    pub has_encoder: bool,
    /// Stride-2 layers of the style encoder as found in its checkpoint (NVlabs builds 6 when
    /// crop_size ≥ 256, else 5; our demo model trains the 6-layer encoder at crop 128).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder_layers: Option<usize>,
    /// spadework's texture field, not an NVlabs option: the instance-edge channel carries the
    /// edges of seeded Bernoulli dots of this density ([`crate::models::spade::input::texture_field`])
    /// instead of an instance map's, which gives the generator per-pixel noise to make texture
    /// from (`tools/train_landscape.py --noise`). Needs `no_instance` false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub texture_field: Option<f64>,
}

/// The parameter-free norm named by norm_G.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NormKind {
    Batch,
    Instance,
}

/// NVlabs' `norm_G`, `[spectral]spade<batch|syncbatch|instance><k>x<k>`, parsed once: whether the
/// convs carry spectral norm, the SPADE's parameter-free norm and its conv kernel size. Stored in
/// model files as the original string.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NormG {
    pub spectral: bool,
    /// `batch` and `syncbatch` (the same at test time) or `instance`, as written.
    pub norm_name: String,
    pub norm: NormKind,
    /// The SPADE convs' kernel size (odd, 1 to 9: padding k/2 keeps the size).
    pub kernel: usize,
}

impl std::str::FromStr for NormG {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<NormG> {
        let bad = |why: &str| {
            anyhow::anyhow!(
                "norm_G '{s}' is not of the form [spectral]spade<batch|syncbatch|instance><k>x<k>: {why}"
            )
        };
        let (spectral, rest) = match s.strip_prefix("spectral") {
            Some(r) => (true, r),
            None => (false, s),
        };
        let rest = rest
            .strip_prefix("spade")
            .ok_or_else(|| bad("no 'spade' after the optional 'spectral'"))?;
        let digits = rest
            .find(|c: char| c.is_ascii_digit())
            .ok_or_else(|| bad("no kernel size"))?;
        let norm_name = &rest[..digits];
        let norm = match norm_name {
            "batch" | "syncbatch" => NormKind::Batch,
            "instance" => NormKind::Instance,
            other => bail!(
                "norm_G '{s}': param-free norm '{other}' is not supported (batch, syncbatch, instance)"
            ),
        };
        let (kh, kw) = rest[digits..]
            .split_once('x')
            .ok_or_else(|| bad("the kernel size is not <k>x<k>"))?;
        let (kh, kw): (usize, usize) = match (kh.parse(), kw.parse()) {
            (Ok(a), Ok(b)) => (a, b),
            _ => return Err(bad("the kernel size is not <k>x<k>")),
        };
        if kh != kw || kh % 2 == 0 || kh > 9 {
            return Err(bad(&format!(
                "the kernel {kh}x{kw} must be square and odd, 1x1 to 9x9"
            )));
        }
        Ok(NormG {
            spectral,
            norm_name: norm_name.to_string(),
            norm,
            kernel: kh,
        })
    }
}

impl std::fmt::Display for NormG {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let spectral = if self.spectral { "spectral" } else { "" };
        let k = self.kernel;
        write!(f, "{spectral}spade{}{k}x{k}", self.norm_name)
    }
}

impl TryFrom<String> for NormG {
    type Error = anyhow::Error;
    fn try_from(s: String) -> Result<NormG> {
        s.parse()
    }
}

impl From<NormG> for String {
    fn from(n: NormG) -> String {
        n.to_string()
    }
}

/// Bounds [`SpadeConfig::validate`] enforces: NVlabs' models go up to crop 1024, ngf 64, 182
/// labels and z_dim 256.
pub const MAX_CROP: usize = 8192;
pub const MAX_OUTPUT_PIXELS: usize = 1 << 24;
pub const MAX_NGF: usize = 1024;
pub const MAX_LABELS: usize = 65536;
pub const MAX_Z: usize = 65536;

/// Python's `round()` (half to even), as NVlabs uses for `sh = round(sw / aspect_ratio)`.
pub fn py_round(x: f64) -> i64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 {
        (2.0 * (x / 2.0).round()) as i64
    } else {
        r as i64
    }
}

impl SpadeConfig {
    /// NVlabs test-time defaults for a published checkpoint (SPADE_SPEC §1).
    pub fn preset(name: &str) -> Result<SpadeConfig> {
        let base = SpadeConfig {
            label_nc: 150,
            contain_dontcare_label: true,
            no_instance: true,
            ..Self::nvlabs_defaults()
        };
        Ok(match name {
            "ade20k" => base,
            "coco" => SpadeConfig {
                label_nc: 182,
                no_instance: false,
                ..base
            },
            "cityscapes" => SpadeConfig {
                label_nc: 35,
                contain_dontcare_label: false,
                no_instance: false,
                crop_size: 512,
                aspect_ratio: 2.0,
                num_upsampling_layers: "more".into(),
                ..base
            },
            other => bail!("unknown preset '{other}' (known: ade20k, coco, cityscapes)"),
        })
    }

    /// NVlabs defaults when no preset is given.
    pub fn nvlabs_defaults() -> SpadeConfig {
        SpadeConfig {
            label_nc: 182,
            contain_dontcare_label: false,
            no_instance: false,
            crop_size: 256,
            aspect_ratio: 1.0,
            num_upsampling_layers: "normal".into(),
            use_vae: false,
            z_dim: 256,
            ngf: 64,
            norm_g: NormG {
                spectral: true,
                norm_name: "syncbatch".into(),
                norm: NormKind::Batch,
                kernel: 3,
            },
            classes: vec![],
            has_encoder: false,
            encoder_layers: None,
            texture_field: None,
        }
    }

    /// Channels of the one-hot part: label_nc (+1 dontcare).
    pub fn onehot_nc(&self) -> usize {
        self.label_nc + self.contain_dontcare_label as usize
    }

    /// semantic_nc = label_nc + dontcare + instance edge.
    pub fn semantic_nc(&self) -> usize {
        self.onehot_nc() + (!self.no_instance) as usize
    }

    pub fn num_up(&self) -> Result<usize> {
        Ok(match self.num_upsampling_layers.as_str() {
            "normal" => 5,
            "more" => 6,
            "most" => 7,
            o => bail!("num_upsampling_layers must be normal, more or most, not '{o}'"),
        })
    }

    /// First-layer size (sh, sw).
    pub fn first_size(&self) -> Result<(usize, usize)> {
        let sw = self.crop_size >> self.num_up()?;
        let sh = py_round(sw as f64 / self.aspect_ratio);
        if sw == 0 || sh <= 0 {
            bail!(
                "crop size {} with aspect ratio {} and {} upsampling layers gives an empty first layer ({}x{})",
                self.crop_size,
                self.aspect_ratio,
                self.num_upsampling_layers,
                sh,
                sw
            );
        }
        Ok((sh as usize, sw))
    }

    /// Generator output (H, W) = (sh·2ⁿ, sw·2ⁿ).
    pub fn output_size(&self) -> Result<(usize, usize)> {
        let (sh, sw) = self.first_size()?;
        let n = self.num_up()?;
        Ok((sh << n, sw << n))
    }

    /// Size the label map is resized to (PIL nearest) before it enters the net: W = crop_size,
    /// H = round(crop_size / aspect_ratio).
    pub fn map_size(&self) -> (usize, usize) {
        (
            py_round(self.crop_size as f64 / self.aspect_ratio).max(1) as usize,
            self.crop_size,
        )
    }

    /// Checks every size a model file's config sets against bounds, before anything is
    /// allocated from it (shared by `convert` and loading): a config from a hostile or damaged
    /// file is an error naming the key, its value and the limit.
    pub fn validate(&self) -> Result<()> {
        self.num_up()?;
        if !(self.aspect_ratio.is_finite() && (1.0 / 16.0..=16.0).contains(&self.aspect_ratio)) {
            bail!(
                "aspect_ratio {} is outside [1/16, 16] (NVlabs' models use 1 and 2)",
                self.aspect_ratio
            );
        }
        if !(1..=MAX_CROP).contains(&self.crop_size) {
            bail!("crop_size {} is outside 1..={MAX_CROP}", self.crop_size);
        }
        self.first_size()?;
        let (h, w) = self.output_size()?;
        if h.saturating_mul(w) > MAX_OUTPUT_PIXELS {
            bail!(
                "crop_size {} and aspect_ratio {} give a {w}x{h} output, over {MAX_OUTPUT_PIXELS} \
                 pixels",
                self.crop_size,
                self.aspect_ratio
            );
        }
        if self.ngf == 0 || self.ngf > MAX_NGF {
            bail!("ngf {} is outside 1..={MAX_NGF}", self.ngf);
        }
        for (name, fin, fout) in self.blocks()? {
            if fin == 0 || fout == 0 {
                bail!(
                    "ngf {} gives {name} {fin} input and {fout} output channels (NVlabs' up_4 has \
                     ngf/2 with num_upsampling_layers most); every layer needs at least one",
                    self.ngf
                );
            }
        }
        if self.label_nc == 0 || self.label_nc > MAX_LABELS {
            bail!("label_nc {} is outside 1..={MAX_LABELS}", self.label_nc);
        }
        if self.z_dim == 0 || self.z_dim > MAX_Z {
            bail!("z_dim {} is outside 1..={MAX_Z}", self.z_dim);
        }
        if let Some(n) = self.encoder_layers
            && !(1..=6).contains(&n)
        {
            bail!("encoder_layers {n} is outside 1..=6 (NVlabs' style encoder has 5 or 6)");
        }
        if let Some(d) = self.texture_field {
            if !(d > 0.0 && d < 1.0) {
                bail!("texture_field {d} is outside (0, 1): it is the density of the field's dots");
            }
            if self.no_instance {
                bail!(
                    "texture_field needs the instance-edge channel, but no_instance is true \
                     (convert without --no-instance)"
                );
            }
        }
        Ok(())
    }

    /// Block names in forward order with their (fin, fout).
    pub fn blocks(&self) -> Result<Vec<(String, usize, usize)>> {
        let nf = self.ngf;
        let mut v = vec![
            ("head_0".to_string(), 16 * nf, 16 * nf),
            ("G_middle_0".into(), 16 * nf, 16 * nf),
            ("G_middle_1".into(), 16 * nf, 16 * nf),
            ("up_0".into(), 16 * nf, 8 * nf),
            ("up_1".into(), 8 * nf, 4 * nf),
            ("up_2".into(), 4 * nf, 2 * nf),
            ("up_3".into(), 2 * nf, nf),
        ];
        if self.num_up()? == 7 {
            v.push(("up_4".into(), nf, nf / 2));
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_configs_are_refused_by_name() {
        let base = SpadeConfig::preset("ade20k").unwrap();
        let bad = |f: &dyn Fn(&mut SpadeConfig), needle: &str| {
            let mut c = base.clone();
            f(&mut c);
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(needle), "{needle:?} not in {e}");
        };
        bad(&|c| c.crop_size = 1_000_000, "crop_size 1000000");
        bad(&|c| c.aspect_ratio = 1e-3, "aspect_ratio 0.001");
        bad(&|c| c.aspect_ratio = f64::NAN, "aspect_ratio NaN");
        bad(&|c| c.encoder_layers = Some(7), "encoder_layers 7");
        bad(&|c| c.encoder_layers = Some(0), "encoder_layers 0");
        bad(
            &|c| c.encoder_layers = Some(1_000_000_000),
            "encoder_layers 1000000000",
        );
        bad(&|c| c.ngf = 0, "ngf 0");
        bad(
            &|c| (c.ngf, c.num_upsampling_layers) = (1, "most".into()),
            "up_4 1 input and 0 output channels",
        );
        bad(&|c| c.label_nc = usize::MAX, "label_nc");
        bad(&|c| c.z_dim = 0, "z_dim 0");
        bad(
            &|c| (c.crop_size, c.aspect_ratio) = (8192, 1.0),
            "over 16777216 pixels",
        );
        base.validate().unwrap();
    }
    #[test]
    fn presets_match_spec_table() {
        let a = SpadeConfig::preset("ade20k").unwrap();
        assert_eq!(
            (
                a.semantic_nc(),
                a.first_size().unwrap(),
                a.output_size().unwrap()
            ),
            (151, (8, 8), (256, 256))
        );
        let c = SpadeConfig::preset("coco").unwrap();
        assert_eq!(c.semantic_nc(), 184);
        let s = SpadeConfig::preset("cityscapes").unwrap();
        assert_eq!(
            (
                s.semantic_nc(),
                s.first_size().unwrap(),
                s.output_size().unwrap(),
                s.map_size()
            ),
            (36, (4, 8), (256, 512), (256, 512))
        );
        assert_eq!(
            (a.norm_g.spectral, a.norm_g.norm, a.norm_g.kernel),
            (true, NormKind::Batch, 3)
        );
        for bad in [
            "spadegroup3x3",
            "spadeinstance3x7junk",
            "spadeinstance3x5",
            "spadebatch2x2",
            "spectralbatch3x3",
            "spadeinstance",
        ] {
            assert!(bad.parse::<NormG>().is_err(), "{bad}");
        }
        for good in [
            "spectralspadesyncbatch3x3",
            "spadeinstance5x5",
            "spadebatch1x1",
        ] {
            assert_eq!(good.parse::<NormG>().unwrap().to_string(), good);
        }
        // A model file whose header holds a bad norm_G does not load.
        let json = serde_json::to_string(&a).unwrap();
        assert!(
            json.contains(r#""norm_G":"spectralspadesyncbatch3x3""#),
            "{json}"
        );
        let bad = json.replace("syncbatch3x3", "syncbatch3x3junk");
        let e = serde_json::from_str::<SpadeConfig>(&bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains("syncbatch3x3junk"), "{e}");
        assert_eq!(
            (py_round(0.5), py_round(1.5), py_round(2.5), py_round(2.6)),
            (0, 2, 2, 3)
        );
    }
}
