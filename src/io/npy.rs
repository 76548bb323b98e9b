//! Minimal numpy `.npy` (format 1.0/2.0/3.0) for float arrays: write f32, read f32 or f64, C order.
use anyhow::{Context, Result, bail};
use std::path::Path;

pub fn write_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_s = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_s}, }}");
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat(total.div_ceil(64) * 64 - total));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    super::write_atomic(path, &out)
}

/// Reads a little-endian f32/f64 C-order array → (shape, f32 values).
pub fn read_f32(path: &Path) -> Result<(Vec<usize>, Vec<f32>)> {
    let b = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_f32(&b, &path.display().to_string())
}

/// [`read_f32`] on a file's bytes; `p` names it in errors.
pub fn parse_f32(b: &[u8], p: &str) -> Result<(Vec<usize>, Vec<f32>)> {
    if b.len() < 10 || &b[..6] != b"\x93NUMPY" {
        bail!("{p}: not a .npy file");
    }
    let (hlen, hstart) = match b[6] {
        1 => (u16::from_le_bytes([b[8], b[9]]) as usize, 10),
        2 | 3 if b.len() >= 12 => (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12),
        v => bail!("{p}: unsupported .npy version {v}"),
    };
    let header = b
        .get(hstart..hstart + hlen)
        .map(String::from_utf8_lossy)
        .with_context(|| format!("{p}: truncated header"))?;
    let field = |key: &str| -> Option<String> {
        let i = header.find(&format!("'{key}'"))? + key.len() + 2;
        let rest = header[i..].trim_start().strip_prefix(':')?.trim_start();
        Some(rest.to_string())
    };
    let descr = field("descr").with_context(|| format!("{p}: no descr"))?;
    let size = if descr.starts_with("'<f4'") {
        4
    } else if descr.starts_with("'<f8'") {
        8
    } else {
        bail!(
            "{p}: dtype {} not supported (need little-endian float32 or float64)",
            descr.split(',').next().unwrap_or("")
        )
    };
    if field("fortran_order").is_some_and(|f| f.starts_with("True")) {
        bail!("{p}: Fortran-order arrays are not supported");
    }
    let shape_s = field("shape").with_context(|| format!("{p}: no shape"))?;
    let inner = shape_s
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .with_context(|| format!("{p}: bad shape"))?;
    let shape: Vec<usize> = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse())
        .collect::<Result<_, _>>()
        .with_context(|| format!("{p}: bad shape"))?;
    let bytes = shape
        .iter()
        .try_fold(size as usize, |a: usize, &d| a.checked_mul(d))
        .with_context(|| format!("{p}: shape {shape:?} is too large"))?;
    let data = &b[hstart + hlen..];
    if data.len() != bytes {
        bail!(
            "{p}: expected {bytes} data bytes for shape {shape:?}, found {}",
            data.len()
        );
    }
    let vals = if size == 4 {
        data.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    } else {
        data.chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
            .collect()
    };
    Ok((shape, vals))
}

#[cfg(test)]
mod tests {
    #[test]
    fn huge_or_short_shapes_are_errors() {
        let npy = |shape: &str, data: usize| {
            let h = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}\n");
            let mut b = b"\x93NUMPY\x01\x00".to_vec();
            b.extend((h.len() as u16).to_le_bytes());
            b.extend(h.as_bytes());
            b.extend(vec![0u8; data]);
            super::parse_f32(&b, "z.npy")
        };
        let e = npy("(4294967296, 4294967296, 16)", 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("too large"), "{e}");
        let e = npy("(3,)", 8).unwrap_err().to_string();
        assert!(e.contains("expected 12 data bytes"), "{e}");
        assert_eq!(npy("(3,)", 12).unwrap().1, [0.0; 3]);
    }

    #[test]
    fn roundtrip() {
        let p = std::env::temp_dir().join(format!("spadework_npy_{}.npy", std::process::id()));
        super::write_f32(&p, &[2, 3], &[1., 2., 3., 4., 5., -6.5]).unwrap();
        let (s, v) = super::read_f32(&p).unwrap();
        assert_eq!((s, v), (vec![2, 3], vec![1., 2., 3., 4., 5., -6.5]));
        std::fs::remove_file(p).ok();
    }
}
