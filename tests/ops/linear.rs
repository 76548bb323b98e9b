//! Linear (kernels/linear*.wgsl, src/ops/linear.rs): against a naive sum and GPU against CPU, with
//! f32 and f16 weights, on 2-D rows and on inputs with more leading dims.
use crate::common::*;
use crate::{close, up};
use spadework::backend::{Device, WeightStorage};
use spadework::ops::Linear;

#[test]
fn linear_gpu_matches_cpu() {
    let Some(g) = gpu() else { return };
    // Rows and features that are not multiples of the 4-row × 16-feature register tile.
    for &(n, fin, fout) in &[
        (1usize, 7usize, 5usize),
        (2, 256, 130),
        (1, 33, 1),
        (37, 19, 33),
        (5, 64, 16),
    ] {
        let x = rand_vec(n * fin, 11);
        let wt = rand_vec(fout * fin, 12);
        let b = rand_vec(fout, 13);
        let naive: Vec<f32> = (0..n * fout)
            .map(|i| {
                b[i % fout]
                    + (0..fin)
                        .map(|k| x[(i / fout) * fin + k] * wt[(i % fout) * fin + k])
                        .sum::<f32>()
            })
            .collect();
        let c = Linear::new(&Device::Cpu, &wt, [fout, fin], Some(&b))
            .unwrap()
            .forward(&up(&Device::Cpu, &[n, fin], &x))
            .unwrap()
            .to_vec()
            .unwrap();
        let gg = Linear::new(&g, &wt, [fout, fin], Some(&b))
            .unwrap()
            .forward(&up(&g, &[n, fin], &x))
            .unwrap()
            .to_vec()
            .unwrap();
        close(&c, &naive, 1e-5, "linear cpu");
        close(&gg, &c, 1e-5, "linear gpu");
        let nb = |d: &Device| {
            Linear::new(d, &wt, [fout, fin], None)
                .unwrap()
                .forward(&up(d, &[n, fin], &x))
                .unwrap()
                .to_vec()
                .unwrap()
        };
        close(&nb(&g), &nb(&Device::Cpu), 1e-5, "linear gpu, no bias");
        // f16 weight storage: the same layer on the weights rounded to f16.
        let Device::Gpu(ctx) = &g else { unreachable!() };
        if ctx.f16_in_f32 {
            let wt16: Vec<f32> = wt
                .iter()
                .map(|&v| half::f16::from_f32(v).to_f32())
                .collect();
            let want = Linear::new(&Device::Cpu, &wt16, [fout, fin], Some(&b))
                .unwrap()
                .forward(&up(&Device::Cpu, &[n, fin], &x))
                .unwrap()
                .to_vec()
                .unwrap();
            let got = Linear::with_storage(&g, &wt, [fout, fin], Some(&b), WeightStorage::F16)
                .unwrap()
                .forward(&up(&g, &[n, fin], &x))
                .unwrap()
                .to_vec()
                .unwrap();
            close(
                &got,
                &want,
                1e-5,
                &format!("linear gpu f16 weights {n}x{fin}→{fout}"),
            );
            assert!(max_abs_diff(&got, &c) > 0.0, "f16 weights gave f32 results");
        }
    }
}

#[test]
fn linear_on_leading_dims_matches_2d_rows() {
    // [.., fin] inputs: the rows flatten and the leading dims come back.
    let (fin, fout) = (13usize, 7usize);
    let wt = rand_vec(fout * fin, 14);
    let b = rand_vec(fout, 15);
    for (i, lead) in [&[2usize, 3][..], &[1, 1, 1], &[5], &[2, 1, 3, 2]]
        .iter()
        .enumerate()
    {
        let rows: usize = lead.iter().product();
        let x = rand_vec(rows * fin, 16 + i as u64);
        let mut shape = lead.to_vec();
        shape.push(fin);
        for d in devices() {
            let lin = Linear::new(&d, &wt, [fout, fin], Some(&b)).unwrap();
            let want = lin.forward(&up(&d, &[rows, fin], &x)).unwrap();
            let got = lin.forward(&up(&d, &shape, &x)).unwrap();
            let mut out_shape = lead.to_vec();
            out_shape.push(fout);
            assert_eq!(got.shape(), out_shape);
            assert_eq!(want.shape(), [rows, fout]);
            close(
                &got.to_vec().unwrap(),
                &want.to_vec().unwrap(),
                0.0,
                &format!("linear {shape:?} on {d:?}"),
            );
        }
    }
    for d in devices() {
        let lin = Linear::new(&d, &wt, [fout, fin], None).unwrap();
        let e = lin
            .forward(&up(&d, &[2, 3, 12], &[0.0; 72]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("expects 13 input features, got 12"), "{e}");
        let e = lin.forward(&up(&d, &[], &[0.0])).unwrap_err().to_string();
        assert!(e.contains("0-D"), "{e}");
    }
}
