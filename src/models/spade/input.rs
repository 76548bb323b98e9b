//! The generator's input: label and instance maps prepared exactly as NVlabs `test.py` does
//! (SPADE_SPEC §4): ids from grayscale or palette PNGs (`crate::io::map_png`), RGB maps mapped
//! through the model's palette; PIL-nearest resize to the model size; 255 → dontcare; no ADE20K
//! shift; the instance map becomes the edge channel.
use super::config::SpadeConfig;
use crate::backend::Device;
use crate::io::map_png::{MapImage, Pixels};
use crate::ops::{self, NearestRule};
use crate::tensor::Tensor;
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;

/// Colour-coded map → ids through the model's palette; unknown colours are reported with counts.
pub fn colors_to_ids(rgb: &[[u8; 3]], cfg: &SpadeConfig, what: &str) -> Result<Vec<u32>> {
    if cfg.classes.is_empty() {
        bail!(
            "{what} is an RGB colour-coded map, but this model has no palette; give a grayscale label-id PNG or a palette PNG"
        );
    }
    let lut: BTreeMap<[u8; 3], u32> = cfg.classes.iter().map(|c| (c.color, c.id)).collect();
    let mut unknown: BTreeMap<[u8; 3], usize> = BTreeMap::new();
    let ids: Vec<u32> = rgb
        .iter()
        .map(|c| {
            lut.get(c).copied().unwrap_or_else(|| {
                *unknown.entry(*c).or_default() += 1;
                0
            })
        })
        .collect();
    if !unknown.is_empty() {
        let mut list: Vec<_> = unknown.into_iter().collect();
        list.sort_by(|a, b| b.1.cmp(&a.1));
        let shown: Vec<String> = list
            .iter()
            .take(8)
            .map(|(c, n)| format!("#{:02x}{:02x}{:02x} ({n} px)", c[0], c[1], c[2]))
            .collect();
        bail!(
            "{what}: {} colour(s) are not in the model's palette: {}{}",
            list.len(),
            shown.join(", "),
            if list.len() > 8 { ", ..." } else { "" }
        );
    }
    Ok(ids)
}

/// The prepared net input on the host: label ids and optional instance ids at the model's map size.
#[derive(Debug, Clone)]
pub struct PreparedMap {
    pub h: usize,
    pub w: usize,
    pub labels: Vec<u32>,
    pub instance: Option<Vec<u32>>,
}

/// The instance map of a texture-field model ([`SpadeConfig::texture_field`]): 1 where a hash
/// of (seed, y, x) falls below `density`, else 0 (Bernoulli dots, the same bits on every
/// platform). Its edges are the generator's per-pixel noise. Twin of `texture_field` in
/// `tools/train_landscape.py`, which trains the model on fresh fields.
pub fn texture_field(seed: u64, h: usize, w: usize, density: f64) -> Vec<u32> {
    use crate::rng::{GOLDEN, splitmix64};
    let threshold = (density * (1u64 << 24) as f64 + 0.5) as u64;
    let key = seed.wrapping_mul(GOLDEN);
    let mut out = Vec::with_capacity(h * w);
    for y in 0..h as u64 {
        for x in 0..w as u64 {
            let z = splitmix64((key ^ (y << 32 | x)).wrapping_add(GOLDEN));
            out.push(((z >> 40) < threshold) as u32);
        }
    }
    out
}

/// NVlabs `__getitem__` + `preprocess_input` up to the one-hot, on the host.
pub fn prepare(
    cfg: &SpadeConfig,
    map: &MapImage,
    map_name: &str,
    instance: Option<(&MapImage, &str)>,
    unknown_as: Option<&str>,
) -> Result<PreparedMap> {
    let (h, w) = cfg.map_size();
    let ids = match &map.pixels {
        Pixels::Ids(v) => v.clone(),
        Pixels::Rgb(c) => colors_to_ids(c, cfg, map_name)?,
    };
    if map.width == 0 || map.height == 0 {
        bail!("{map_name}: empty image");
    }
    let mut labels =
        ops::resize::resize_nearest_cpu(&ids, 1, [map.height, map.width], [h, w], NearestRule::Pil);
    remap_class_ids(&mut labels, cfg, unknown_as, map_name)?;
    let nc = cfg.onehot_nc();
    if cfg.contain_dontcare_label {
        for l in labels.iter_mut().filter(|l| **l == 255) {
            *l = cfg.label_nc as u32;
        }
    }
    let mut bad: BTreeMap<u32, (usize, usize)> = BTreeMap::new();
    for (i, &l) in labels.iter().enumerate() {
        if l as usize >= nc {
            bad.entry(l).or_insert((0, i)).0 += 1;
        }
    }
    if let Some((&id, &(count, first))) = bad.iter().next() {
        let names = if cfg.classes.is_empty() {
            String::new()
        } else {
            format!(
                "; the model's classes: {}",
                cfg.classes
                    .iter()
                    .map(|c| format!("{} {}", c.id, c.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        bail!(
            "{map_name}: label id {id} ({count} pixels after resizing to {w}x{h}, first at x={}, y={}) is not valid: \
             the model has {nc} label channels (label_nc {}{}), so ids must be < {nc}{}{names}",
            first % w,
            first / w,
            cfg.label_nc,
            if cfg.contain_dontcare_label {
                " + dontcare, 255 = dontcare"
            } else {
                ""
            },
            if bad.len() > 1 {
                format!(
                    " ({} invalid ids in all: {:?})",
                    bad.len(),
                    bad.keys().collect::<Vec<_>>()
                )
            } else {
                String::new()
            },
        );
    }
    let instance = match (instance, cfg.no_instance) {
        (Some((_, n)), true) => {
            bail!("{n}: this model takes no instance map (it was converted with --no-instance)")
        }
        (Some((_, n)), false) if cfg.texture_field.is_some() => bail!(
            "{n}: this model takes no instance map: its instance-edge channel carries its \
             texture field, drawn from the seed"
        ),
        // Filled at render time from the seed (SpadePipeline::render_seeded).
        (None, false) if cfg.texture_field.is_some() => None,
        (None, true) => None,
        // No instance map for an instance model: NVlabs needs one; use the label map (class boundaries).
        (None, false) => Some(labels.clone()),
        (Some((im, n)), false) => {
            let ids = match &im.pixels {
                Pixels::Ids(v) => v.clone(),
                Pixels::Rgb(c) => c
                    .iter()
                    .map(|p| u32::from_be_bytes([0, p[0], p[1], p[2]]))
                    .collect(),
            };
            if im.width == 0 || im.height == 0 {
                bail!("{n}: empty image");
            }
            Some(ops::resize::resize_nearest_cpu(
                &ids,
                1,
                [im.height, im.width],
                [h, w],
                NearestRule::Pil,
            ))
        }
    };
    Ok(PreparedMap {
        h,
        w,
        labels,
        instance,
    })
}

/// A model with a class list (`classes` in its config) takes the listed ids — e.g. ADE20K ids for
/// a compact demo model — and channel k is `classes[k]`. Ids are mapped to channels here; an id
/// not in the list is an error naming the model's classes, unless `unknown_as` (a class name or
/// id) says which class to use instead. 255 (dontcare) passes through.
pub fn remap_class_ids(
    labels: &mut [u32],
    cfg: &SpadeConfig,
    unknown_as: Option<&str>,
    map_name: &str,
) -> Result<()> {
    if cfg.classes.is_empty() {
        if unknown_as.is_some() {
            bail!("--unknown-as needs a model with a class list; this model has none");
        }
        return Ok(());
    }
    let lut: BTreeMap<u32, u32> = cfg
        .classes
        .iter()
        .enumerate()
        .map(|(k, c)| (c.id, k as u32))
        .collect();
    let fallback = match unknown_as {
        None => None,
        Some(u) => Some(
            cfg.classes
                .iter()
                .position(|c| c.name.eq_ignore_ascii_case(u) || c.id.to_string() == u)
                .with_context(|| {
                    format!(
                        "--unknown-as '{u}' is not one of the model's classes: {}",
                        class_list(cfg)
                    )
                })? as u32,
        ),
    };
    let mut unknown: BTreeMap<u32, usize> = BTreeMap::new();
    for l in labels.iter_mut() {
        if *l == 255 && cfg.contain_dontcare_label {
            continue;
        }
        match (lut.get(l), fallback) {
            (Some(&k), _) => *l = k,
            (None, Some(f)) => {
                *unknown.entry(*l).or_default() += 1;
                *l = f
            }
            (None, None) => *unknown.entry(*l).or_default() += 1,
        }
    }
    if !unknown.is_empty() {
        // The most frequent first, at most 12 named (a map can hold thousands of ids).
        let mut by_count: Vec<(&u32, &usize)> = unknown.iter().collect();
        by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let mut ids: Vec<String> = by_count
            .iter()
            .take(12)
            .map(|(id, n)| format!("{id} ({n} px)"))
            .collect();
        if by_count.len() > 12 {
            ids.push(format!("and {} more", by_count.len() - 12));
        }
        if fallback.is_none() {
            bail!(
                "{map_name}: label id(s) {} are not classes of this model; its classes are: {} (use --unknown-as <class> to remap)",
                ids.join(", "),
                class_list(cfg)
            );
        }
        crate::note!(
            "note: {map_name}: remapped unknown label id(s) {} to '{}'",
            ids.join(", "),
            unknown_as.unwrap_or("")
        );
    }
    Ok(())
}

fn class_list(cfg: &SpadeConfig) -> String {
    let mut v: Vec<String> = cfg
        .classes
        .iter()
        .take(40)
        .map(|c| format!("{} {}", c.id, c.name))
        .collect();
    if cfg.classes.len() > 40 {
        v.push(format!(
            "… ({} in all; see the model's class table)",
            cfg.classes.len()
        ));
    }
    v.join(", ")
}

impl PreparedMap {
    /// The dense [1, semantic_nc, H, W] one-hot (+ edge) tensor NVlabs feeds the net.
    pub fn to_onehot(&self, device: &Device, cfg: &SpadeConfig) -> Result<Tensor> {
        ops::seg_input(
            device,
            &self.labels,
            self.instance.as_deref(),
            self.h,
            self.w,
            cfg.onehot_nc(),
            cfg.semantic_nc(),
        )
    }

    /// The compact [1, 2, H, W] label map the generator reads (ids, edge bits computed here).
    pub fn to_label_map(&self, device: &Device) -> Result<Tensor> {
        let edges = self
            .instance
            .as_ref()
            .map(|i| ops::segmap::edges_cpu(i, self.h, self.w));
        ops::onehot_conv::label_map(device, &self.labels, edges.as_deref(), self.h, self.w)
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::spade::config::ClassInfo;

    #[test]
    fn texture_field_matches_the_training_script() {
        // tools/train_landscape.py: texture_field(seed, 4, 32, 0.25), rows as bit strings
        let want = [
            (
                7u64,
                [
                    "00100000001000001000001000101001",
                    "10010001000101011111000010100001",
                    "00100000010100001100000010101101",
                    "01001000000000000011000000000000",
                ],
            ),
            (
                (1u64 << 63) + 5,
                [
                    "01000000100100001000100100000000",
                    "00001100010010011000000001000000",
                    "00000010001011000000010100010000",
                    "10000001010101100110000100010000",
                ],
            ),
        ];
        for (seed, rows) in want {
            let got: String = texture_field(seed, 4, 32, 0.25)
                .iter()
                .map(|b| char::from(b'0' + *b as u8))
                .collect();
            assert_eq!(got, rows.concat(), "seed {seed}");
        }
        let big = texture_field(3, 128, 128, 0.125);
        let density = big.iter().sum::<u32>() as f64 / big.len() as f64;
        assert!((density - 0.125).abs() < 0.01, "density {density}");
        assert_ne!(big, texture_field(4, 128, 128, 0.125));
    }

    #[test]
    fn a_texture_field_model_refuses_an_instance_map() {
        let mut c = cfg();
        c.no_instance = false;
        c.texture_field = Some(0.125);
        let map = MapImage {
            width: 2,
            height: 2,
            pixels: Pixels::Ids(vec![3, 3, 5, 5]),
        };
        let e = prepare(&c, &map, "m.png", Some((&map, "inst.png")), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("inst.png") && e.contains("texture field"), "{e}");
        assert!(
            prepare(&c, &map, "m.png", None, None)
                .unwrap()
                .instance
                .is_none()
        );
        c.no_instance = true;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("no_instance")
        );
        c.no_instance = false;
        c.texture_field = Some(1.5);
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("texture_field 1.5")
        );
    }

    fn cfg() -> SpadeConfig {
        let mut c = SpadeConfig::preset("ade20k").unwrap();
        c.label_nc = 2;
        c.contain_dontcare_label = false;
        c.classes = vec![
            ClassInfo {
                id: 3,
                name: "sky".into(),
                color: [6, 230, 230],
            },
            ClassInfo {
                id: 5,
                name: "tree".into(),
                color: [4, 200, 3],
            },
        ];
        c
    }

    #[test]
    fn class_ids_map_to_channels() {
        let c = cfg();
        let mut l = vec![3, 5, 3];
        remap_class_ids(&mut l, &c, None, "m").unwrap();
        assert_eq!(l, vec![0, 1, 0]);
        let e = remap_class_ids(&mut [3, 7], &c, None, "m")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("7 (1 px)") && e.contains("3 sky, 5 tree") && e.contains("--unknown-as"),
            "{e}"
        );
        let mut l = vec![3, 7, 9];
        remap_class_ids(&mut l, &c, Some("tree"), "m").unwrap();
        assert_eq!(l, vec![0, 1, 1]);
        assert!(remap_class_ids(&mut [7], &c, Some("lava"), "m").is_err());
    }

    #[test]
    fn colours_map_through_palette_and_unknown_colours_are_counted() {
        let c = cfg();
        assert_eq!(
            colors_to_ids(&[[6, 230, 230], [4, 200, 3]], &c, "m").unwrap(),
            vec![3, 5]
        );
        let e = colors_to_ids(&[[1, 2, 3], [1, 2, 3], [4, 200, 3]], &c, "m")
            .unwrap_err()
            .to_string();
        assert!(e.contains("#010203 (2 px)"), "{e}");
    }
}
