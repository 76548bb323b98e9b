//! The PNG chart: a horizontal bar of GFLOP/s (log scale) per workload, coloured by device, with
//! its text drawn in an 8×8 bitmap font.
use super::Row;
use anyhow::{Context, Result};

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
