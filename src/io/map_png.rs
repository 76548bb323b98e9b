//! Label and instance map PNGs read without any colour conversion: 8/16-bit grayscale (and
//! sub-byte) values and palette indices as ids (PIL mode 'P'), RGB(A) as colours.
use anyhow::{Context, Result};
use std::path::Path;

pub enum Pixels {
    /// Label (or instance) ids: gray values or palette indices.
    Ids(Vec<u32>),
    /// A colour-coded map, to be looked up in the model's palette.
    Rgb(Vec<[u8; 3]>),
}

pub struct MapImage {
    pub width: usize,
    pub height: usize,
    pub pixels: Pixels,
}

/// Reads a label/instance PNG without any colour conversion.
pub fn read_map_png(path: &Path) -> Result<MapImage> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read map {}", path.display()))?;
    decode_map_png(&bytes).with_context(|| {
        format!(
            "{}: not a readable PNG label map (maps must be lossless PNG)",
            path.display()
        )
    })
}

pub fn decode_map_png(bytes: &[u8]) -> Result<MapImage> {
    let mut dec = png::Decoder::new(std::io::Cursor::new(bytes));
    dec.set_transformations(png::Transformations::IDENTITY);
    let mut reader = dec.read_info()?;
    let (w, h) = (reader.info().width, reader.info().height);
    super::image::check_pixels("the map", w as u64, h as u64)?;
    let size = reader.output_buffer_size().context("image too large")?;
    let mut buf = vec![0u8; size];
    let info = reader.next_frame(&mut buf)?;
    let (w, h) = (info.width as usize, info.height as usize);
    let depth = info.bit_depth as usize;
    let line = info.line_size;
    use png::ColorType::*;
    let channels = match info.color_type {
        Grayscale | Indexed => 1,
        GrayscaleAlpha => 2,
        Rgb => 3,
        Rgba => 4,
    };
    // Sample `c` of pixel (x, y), at the file's bit depth.
    let sample = |x: usize, y: usize, c: usize| -> u32 {
        let row = &buf[y * line..(y + 1) * line];
        match depth {
            16 => {
                let i = (x * channels + c) * 2;
                u16::from_be_bytes([row[i], row[i + 1]]) as u32
            }
            8 => row[x * channels + c] as u32,
            d => {
                let bit = x * d;
                ((row[bit / 8] >> (8 - d - bit % 8)) & ((1 << d) - 1) as u8) as u32
            }
        }
    };
    let pixels = match info.color_type {
        Grayscale | GrayscaleAlpha | Indexed => Pixels::Ids(
            (0..h)
                .flat_map(|y| (0..w).map(move |x| (x, y)))
                .map(|(x, y)| sample(x, y, 0))
                .collect(),
        ),
        Rgb | Rgba => {
            let shift = if depth == 16 { 8 } else { 0 };
            Pixels::Rgb(
                (0..h)
                    .flat_map(|y| (0..w).map(move |x| (x, y)))
                    .map(|(x, y)| [0, 1, 2].map(|c| (sample(x, y, c) >> shift) as u8))
                    .collect(),
            )
        }
    };
    Ok(MapImage {
        width: w,
        height: h,
        pixels,
    })
}
