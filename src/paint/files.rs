//! The palette the painter shows, and map files: open (ids, palette or RGB PNGs), save as a
//! palette PNG in the model's colours or as a label-id grayscale PNG. Writes go to a temporary
//! file first and are renamed into place, so a crash never leaves half a file.
use super::canvas::Canvas;
use crate::io::map_png::{self, Pixels};
use crate::models::SpadeConfig;
use crate::models::spade::config::ClassInfo;
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::path::Path;

/// The id given to pixels of an RGB map whose colour is not in the palette (shown as unknown).
pub const UNKNOWN_COLOR_ID: u32 = 65535;

/// The classes a painter can pick: the model's class list, or for a model without one its
/// `label_nc` ids with generated names and colours.
#[derive(Clone, Debug)]
pub struct Palette {
    pub classes: Vec<ClassInfo>,
    /// True when names and colours were generated (the model file carries none).
    pub generated: bool,
}

impl Palette {
    pub fn for_model(cfg: &SpadeConfig) -> Palette {
        if !cfg.classes.is_empty() {
            return Palette {
                classes: cfg.classes.clone(),
                generated: false,
            };
        }
        let colors = label_colormap(cfg.label_nc);
        Palette {
            classes: (0..cfg.label_nc)
                .map(|i| ClassInfo {
                    id: i as u32,
                    name: format!("class {i}"),
                    color: colors[i],
                })
                .collect(),
            generated: true,
        }
    }

    pub fn find(&self, id: u32) -> Option<&ClassInfo> {
        self.classes.iter().find(|c| c.id == id)
    }

    /// A class by name (case-insensitive) or by id.
    pub fn lookup(&self, name_or_id: &str) -> Option<&ClassInfo> {
        let q = name_or_id.trim();
        self.classes
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(q) || c.id.to_string() == q)
    }

    /// Indices of the classes whose name contains `query` (case-insensitive) or whose id is it.
    pub fn search(&self, query: &str) -> Vec<usize> {
        let q = query.trim().to_lowercase();
        (0..self.classes.len())
            .filter(|&i| {
                let c = &self.classes[i];
                q.is_empty() || c.name.to_lowercase().contains(&q) || c.id.to_string() == q
            })
            .collect()
    }

    /// Pixel counts of the ids in `canvas` that are not classes of this palette.
    pub fn unknown_ids(&self, canvas: &Canvas) -> BTreeMap<u32, usize> {
        let known: std::collections::HashSet<u32> = self.classes.iter().map(|c| c.id).collect();
        let mut out = BTreeMap::new();
        for &v in &canvas.ids {
            if !known.contains(&v) {
                *out.entry(v).or_default() += 1;
            }
        }
        out
    }

    /// RGBA of every pixel; unknown ids get a magenta/black checker so they stand out.
    pub fn colorize(&self, canvas: &Canvas) -> Vec<[u8; 4]> {
        let lut: BTreeMap<u32, [u8; 3]> = self.classes.iter().map(|c| (c.id, c.color)).collect();
        let mut cache: Option<(u32, Option<[u8; 3]>)> = None;
        canvas
            .ids
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let col = match cache {
                    Some((id, c)) if id == v => c,
                    _ => {
                        let c = lut.get(&v).copied();
                        cache = Some((v, c));
                        c
                    }
                };
                match col {
                    Some([r, g, b]) => [r, g, b, 255],
                    None => {
                        let (x, y) = (i % canvas.w, i / canvas.w);
                        if (x / 4 + y / 4) % 2 == 0 {
                            [255, 0, 255, 255]
                        } else {
                            [0, 0, 0, 255]
                        }
                    }
                }
            })
            .collect()
    }
}

/// Distinct colours for `n` generated classes: the bits of i + 1 spread over the high bits of
/// r, g and b (the usual VOC-style label colormap).
pub fn label_colormap(n: usize) -> Vec<[u8; 3]> {
    (0..n)
        .map(|i| {
            let mut id = i + 1;
            let mut c = [0u8; 3];
            for j in 0..8 {
                for (k, ch) in c.iter_mut().enumerate() {
                    *ch |= (((id >> k) & 1) as u8) << (7 - j);
                }
                id >>= 3;
            }
            c
        })
        .collect()
}

/// What opening a map found besides the ids.
#[derive(Debug, Default)]
pub struct OpenReport {
    /// Pixels of an RGB map whose colour is not in the palette (they get [`UNKNOWN_COLOR_ID`]).
    pub unknown_colors: BTreeMap<[u8; 3], usize>,
}

/// Opens a label map PNG (grayscale ids, palette indices, or RGB through the palette). Ids the
/// model does not know are kept as they are (the caller marks them); unknown RGB colours
/// become [`UNKNOWN_COLOR_ID`] and are reported.
pub fn open_map(path: &Path, palette: &Palette) -> Result<(Canvas, OpenReport)> {
    let img = map_png::read_map_png(path)?;
    let mut report = OpenReport::default();
    let ids = match img.pixels {
        Pixels::Ids(v) => v,
        Pixels::Rgb(rgb) => {
            let lut: BTreeMap<[u8; 3], u32> =
                palette.classes.iter().map(|c| (c.color, c.id)).collect();
            rgb.iter()
                .map(|c| {
                    lut.get(c).copied().unwrap_or_else(|| {
                        *report.unknown_colors.entry(*c).or_default() += 1;
                        UNKNOWN_COLOR_ID
                    })
                })
                .collect()
        }
    };
    let canvas = Canvas::from_ids(img.width, img.height, ids)
        .with_context(|| format!("{}: bad map", path.display()))?;
    Ok((canvas, report))
}

/// Encodes a PNG and writes it atomically.
fn write_png(
    path: &Path,
    w: usize,
    h: usize,
    color: png::ColorType,
    depth: png::BitDepth,
    palette: Option<Vec<u8>>,
    data: &[u8],
) -> Result<()> {
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, w as u32, h as u32);
        enc.set_color(color);
        enc.set_depth(depth);
        if let Some(p) = palette {
            enc.set_palette(p);
        }
        enc.write_header()?.write_image_data(data)?;
    }
    crate::io::write_atomic(path, &bytes)
}

/// Saves the map as an 8-bit palette PNG: index = class id, palette = the model's colours, so
/// it opens as ids in our tools and as colours in any viewer.
pub fn save_palette_png(path: &Path, canvas: &Canvas, palette: &Palette) -> Result<()> {
    if let Some(&big) = canvas.ids.iter().find(|&&v| v > 255) {
        bail!(
            "{}: id {big} does not fit a palette PNG (ids 0-255); save a label-id PNG instead",
            path.display()
        );
    }
    let mut plte = vec![0u8; 256 * 3];
    for c in &palette.classes {
        if c.id < 256 {
            plte[c.id as usize * 3..c.id as usize * 3 + 3].copy_from_slice(&c.color);
        }
    }
    let data: Vec<u8> = canvas.ids.iter().map(|&v| v as u8).collect();
    write_png(
        path,
        canvas.w,
        canvas.h,
        png::ColorType::Indexed,
        png::BitDepth::Eight,
        Some(plte),
        &data,
    )
}

/// Saves the map as a grayscale PNG of label ids: 8-bit when every id fits, else 16-bit.
pub fn save_ids_png(path: &Path, canvas: &Canvas) -> Result<()> {
    let max = canvas.ids.iter().copied().max().unwrap_or(0);
    if max > 65535 {
        bail!("{}: id {max} does not fit a 16-bit PNG", path.display());
    }
    let (depth, data): (_, Vec<u8>) = if max < 256 {
        (
            png::BitDepth::Eight,
            canvas.ids.iter().map(|&v| v as u8).collect(),
        )
    } else {
        let be = canvas.ids.iter().flat_map(|&v| (v as u16).to_be_bytes());
        (png::BitDepth::Sixteen, be.collect())
    };
    write_png(
        path,
        canvas.w,
        canvas.h,
        png::ColorType::Grayscale,
        depth,
        None,
        &data,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn palette() -> Palette {
        let classes = vec![
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
        Palette {
            classes,
            generated: false,
        }
    }

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("spadework-files-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d.join(name)
    }

    #[test]
    fn palette_and_id_pngs_round_trip_exactly() {
        let p = palette();
        let ids: Vec<u32> = (0..35).map(|i| [3, 5, 3, 200][i % 4]).collect();
        let c = Canvas::from_ids(7, 5, ids).unwrap();
        let a = tmp("pal.png");
        save_palette_png(&a, &c, &p).unwrap();
        let (back, rep) = open_map(&a, &p).unwrap();
        assert_eq!(back, c);
        assert!(rep.unknown_colors.is_empty());
        let b = tmp("ids.png");
        save_ids_png(&b, &c).unwrap();
        assert_eq!(open_map(&b, &p).unwrap().0, c);
        // 16-bit when an id needs it.
        let mut c16 = c.clone();
        c16.ids[0] = 1000;
        save_ids_png(&b, &c16).unwrap();
        assert_eq!(open_map(&b, &p).unwrap().0, c16);
        assert!(save_palette_png(&a, &c16, &p).is_err());
        assert_eq!(p.unknown_ids(&c16), BTreeMap::from([(200, 8), (1000, 1)]));
    }

    #[test]
    fn rgb_maps_map_through_the_palette_and_report_unknown_colours() {
        let p = palette();
        let rgb = [6u8, 230, 230, 4, 200, 3, 1, 2, 3, 1, 2, 3];
        let path = tmp("rgb.png");
        crate::io::image::save_rgb_png(&path, &rgb, 2, 2).unwrap();
        let (c, rep) = open_map(&path, &p).unwrap();
        assert_eq!(c.ids, vec![3, 5, UNKNOWN_COLOR_ID, UNKNOWN_COLOR_ID]);
        assert_eq!(rep.unknown_colors, BTreeMap::from([([1, 2, 3], 2)]));
    }

    #[test]
    fn unknown_ids_are_marked_not_mapped() {
        let p = palette();
        let c = Canvas::from_ids(8, 1, vec![3, 5, 200, 200, 3, 200, 200, 200]).unwrap();
        let rgba = p.colorize(&c);
        assert_eq!(rgba[0], [6, 230, 230, 255]);
        assert_eq!(rgba[1], [4, 200, 3, 255]);
        // Unknown pixels get the magenta/black checker, never a class colour.
        assert_eq!(rgba[2], [255, 0, 255, 255]);
        assert_eq!(rgba[5], [0, 0, 0, 255]);
        assert_eq!(p.unknown_ids(&c), BTreeMap::from([(200, 5)]));
    }

    #[test]
    fn generated_palettes_have_distinct_colours_and_search_works() {
        let cols = label_colormap(183);
        let set: std::collections::HashSet<_> = cols.iter().collect();
        assert_eq!(set.len(), 183);
        let p = palette();
        assert_eq!(p.search("TR"), vec![1]);
        assert_eq!(p.search("3"), vec![0]);
        assert_eq!(p.search(""), vec![0, 1]);
        assert_eq!(p.lookup("Sky").unwrap().id, 3);
        assert_eq!(p.lookup("5").unwrap().name, "tree");
    }
}
