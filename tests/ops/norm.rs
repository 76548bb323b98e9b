//! Layer norm (kernels/norm.wgsl, src/ops/norm.rs) against an f64 oracle on both backends.
use crate::common::*;
use crate::{close, up};
use spadework::backend::Device;
use spadework::ops;

#[test]
fn layer_norm_matches_f64_oracle_on_both_backends() {
    // Rows of 1, 7, 300 (more than one pass of the 256-wide workgroup) and 768 features.
    for (i, &(rows, c)) in [(3usize, 1usize), (5, 7), (4, 300), (77, 768)]
        .iter()
        .enumerate()
    {
        let x: Vec<f32> = rand_vec(rows * c, 500 + i as u64)
            .iter()
            .map(|v| v * 3.0 + 1.5)
            .collect();
        let g = rand_vec(c, 600 + i as u64);
        let b = rand_vec(c, 700 + i as u64);
        let mut want = vec![0f32; rows * c];
        for r in 0..rows {
            let row = &x[r * c..(r + 1) * c];
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / c as f64;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / c as f64;
            for j in 0..c {
                want[r * c + j] = ((row[j] as f64 - mean) / (var + 1e-5).sqrt() * g[j] as f64
                    + b[j] as f64) as f32;
            }
        }
        for d in devices() {
            let ln = ops::LayerNorm::new(&d, &g, &b, 1e-5).unwrap();
            let got = ln.forward(&up(&d, &[1, rows, c], &x)).unwrap();
            assert_eq!(got.shape(), [1, rows, c]);
            close(
                &got.to_vec().unwrap(),
                &want,
                2e-6,
                &format!("layer norm {rows}x{c} {d:?}"),
            );
        }
    }
    let d = Device::Cpu;
    let ln = ops::LayerNorm::new(&d, &[1.0; 4], &[0.0; 4], 1e-5).unwrap();
    let e = ln
        .forward(&up(&d, &[2, 3], &[0.0; 6]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("layer norm over 3 features"), "{e}");
}
