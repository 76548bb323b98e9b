//! Output images (NVlabs `tensor2im`) and style images for the encoder.
use anyhow::{Context, Result, bail};
use std::path::Path;

/// NVlabs `tensor2im`: HWC, `((x + 1) / 2) * 255` in f32, clip to [0, 255], truncate to u8.
pub fn to_rgb8(chw: &[f32], h: usize, w: usize) -> Vec<u8> {
    let mut out = vec![0u8; h * w * 3];
    for c in 0..3 {
        for i in 0..h * w {
            let v = ((chw[c * h * w + i] + 1.0) / 2.0) * 255.0;
            out[i * 3 + c] = v.clamp(0.0, 255.0) as u8; // `as` truncates toward zero (NaN → 0)
        }
    }
    out
}

/// The default of [`max_pixels`]: 2²⁶ (8192 × 8192).
pub const DEFAULT_MAX_PIXELS: u64 = 1 << 26;
static MAX_PIXELS: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(DEFAULT_MAX_PIXELS);

/// The most pixels any image spadework reads may have (maps, instance maps, style, init and
/// mask images), checked against the file's header before anything is decoded.
pub fn max_pixels() -> u64 {
    MAX_PIXELS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Raises (or lowers) [`max_pixels`] for this process (the CLI's `--max-pixels`).
pub fn set_max_pixels(n: u64) {
    MAX_PIXELS.store(n, std::sync::atomic::Ordering::Relaxed)
}

/// Fails when a `w`×`h` image is over the pixel budget, naming `what`, the size and the limit.
pub fn check_pixels(what: &str, w: u64, h: u64) -> Result<()> {
    let (n, max) = (w.saturating_mul(h), max_pixels());
    if n > max {
        bail!(
            "{what} is {w}x{h} = {n} pixels, over the limit of {max} (raise it with \
             --max-pixels if you mean it)"
        );
    }
    Ok(())
}

/// An image file (any format the `image` crate reads), its size checked against
/// [`max_pixels`] from the header before decoding; `what` names it in errors.
pub fn open_image(path: &Path, what: &str) -> Result<image::DynamicImage> {
    let name = format!("{what} {}", path.display());
    let reader = image::ImageReader::open(path).with_context(|| format!("cannot read {name}"))?;
    decode(reader, &name)
}

/// [`open_image`] on a file's bytes.
pub fn decode_image(bytes: &[u8], what: &str) -> Result<image::DynamicImage> {
    decode(image::ImageReader::new(std::io::Cursor::new(bytes)), what)
}

fn decode<R: std::io::BufRead + std::io::Seek>(
    reader: image::ImageReader<R>,
    what: &str,
) -> Result<image::DynamicImage> {
    use image::ImageDecoder;
    let name = || format!("cannot read {what}");
    let mut decoder = reader
        .with_guessed_format()
        .with_context(name)?
        .into_decoder()
        .with_context(name)?;
    let (w, h) = decoder.dimensions();
    check_pixels(what, w as u64, h as u64)?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(w);
    limits.max_image_height = Some(h);
    // RGBA at 32-bit float is the largest buffer a decoder allocates per pixel.
    limits.max_alloc = Some((w as u64 * h as u64).saturating_mul(16).max(1 << 20));
    decoder.set_limits(limits).with_context(name)?;
    image::DynamicImage::from_decoder(decoder).with_context(name)
}

/// Writes an RGB8 image (format from the extension, as `image::save_buffer`) atomically (see
/// [`super::write_atomic`]).
pub fn save_rgb_png(path: &Path, rgb: &[u8], h: usize, w: usize) -> Result<()> {
    let what = || format!("cannot write image {}", path.display());
    let format = image::ImageFormat::from_path(path).with_context(what)?;
    let mut bytes = std::io::Cursor::new(Vec::new());
    image::write_buffer_with_format(
        &mut bytes,
        rgb,
        w as u32,
        h as u32,
        image::ExtendedColorType::Rgb8,
        format,
    )
    .with_context(what)?;
    super::write_atomic(path, bytes.get_ref())
}

/// A style photo as the encoder wants it: resized to the map size (bicubic; NVlabs uses PIL
/// BICUBIC), scaled to [-1, 1], then bilinearly resized to 256×256 (align_corners=False) if needed.
/// Returns [3, 256, 256] CHW.
pub fn load_style(path: &Path, (h, w): (usize, usize)) -> Result<Vec<f32>> {
    let img = open_image(path, "style image")?.to_rgb8();
    let img = if (img.height() as usize, img.width() as usize) != (h, w) {
        image::imageops::resize(
            &img,
            w as u32,
            h as u32,
            image::imageops::FilterType::CatmullRom,
        )
    } else {
        img
    };
    let mut chw = vec![0f32; 3 * h * w];
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            chw[c * h * w + i] = (p.0[c] as f32 / 255.0 - 0.5) / 0.5;
        }
    }
    if (h, w) == (256, 256) {
        return Ok(chw);
    }
    if h == 0 || w == 0 {
        bail!("empty style image");
    }
    Ok(bilinear(&chw, 3, (h, w), (256, 256)))
}

/// `F.interpolate(mode='bilinear', align_corners=False)` without antialiasing.
pub fn bilinear(
    x: &[f32],
    planes: usize,
    (h, w): (usize, usize),
    (oh, ow): (usize, usize),
) -> Vec<f32> {
    let coord = |d: usize, i: usize, o: usize| -> (usize, usize, f32) {
        let s = ((d as f32 + 0.5) * (i as f32 / o as f32) - 0.5).max(0.0);
        let i0 = (s as usize).min(i - 1);
        let i1 = (i0 + 1).min(i - 1);
        (i0, i1, s - i0 as f32)
    };
    let mut out = vec![0f32; planes * oh * ow];
    for p in 0..planes {
        for y in 0..oh {
            let (y0, y1, fy) = coord(y, h, oh);
            for xx in 0..ow {
                let (x0, x1, fx) = coord(xx, w, ow);
                let at = |yy: usize, xq: usize| x[(p * h + yy) * w + xq];
                let top = at(y0, x0) * (1.0 - fx) + at(y0, x1) * fx;
                let bot = at(y1, x0) * (1.0 - fx) + at(y1, x1) * fx;
                out[(p * oh + y) * ow + xx] = top * (1.0 - fy) + bot * fy;
            }
        }
    }
    out
}
