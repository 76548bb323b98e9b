//! Conv2d (kernels/conv2d*.wgsl, src/ops/conv2d.rs): the CPU conv against a naive f64 oracle and
//! every GPU register tile (f32 and f16 weights) against the CPU, on odd sizes, non-multiples of
//! the 4×4 tile, stride 2, 1×1, 3×3 and 5×5.
use crate::common::*;
use crate::{close, up};
use spadework::backend::{Device, WeightStorage};
use spadework::ops::{self, Conv2d};

// (n, cin, h, w, cout, k, stride, pad)
const CONV_SHAPES: &[[usize; 8]] = &[
    [1, 3, 7, 9, 5, 3, 1, 1],
    [2, 5, 11, 6, 7, 3, 2, 1],
    [1, 8, 5, 5, 4, 1, 1, 0],
    [1, 6, 9, 13, 9, 1, 2, 0],
    [1, 4, 6, 6, 3, 5, 1, 2],
    [1, 17, 12, 10, 13, 3, 1, 1],
    [1, 2, 1, 1, 6, 3, 1, 1],
    [1, 33, 16, 16, 130, 3, 1, 1],
    // 3×3 stride 1 runs the row kernels: no padding, padding 2, rows not a multiple of the tile.
    [2, 5, 9, 19, 11, 3, 1, 0],
    [1, 4, 5, 3, 20, 3, 1, 2],
    // 1×1 stride 1 unpadded runs the GEMM kernels: two images, 15 pixels.
    [2, 7, 3, 5, 9, 1, 1, 0],
];

#[test]
fn conv2d_cpu_matches_naive_oracle() {
    for (i, &[n, cin, h, w, cout, k, s, p]) in CONV_SHAPES.iter().enumerate() {
        let x = rand_vec(n * cin * h * w, i as u64);
        let wt = rand_vec(cout * cin * k * k, 100 + i as u64);
        let b = rand_vec(cout, 200 + i as u64);
        for bias in [None, Some(&b[..])] {
            let got = ops::conv2d::conv2d_cpu(&x, [n, cin, h, w], &wt, bias, [cout, k, k], s, p);
            let want = ops::conv2d::conv2d_naive(&x, [n, cin, h, w], &wt, bias, [cout, k, k], s, p);
            close(&got, &want, 1e-5, &format!("cpu conv {:?}", CONV_SHAPES[i]));
        }
    }
}

#[test]
fn conv2d_gpu_matches_cpu() {
    let Some(g) = gpu() else { return };
    for (i, &[n, cin, h, w, cout, k, s, p]) in CONV_SHAPES.iter().enumerate() {
        let x = rand_vec(n * cin * h * w, i as u64);
        let wt = rand_vec(cout * cin * k * k, 100 + i as u64);
        let b = rand_vec(cout, 200 + i as u64);
        for bias in [None, Some(&b[..])] {
            let cc = Conv2d::new(&Device::Cpu, &wt, [cout, cin, k, k], bias, s, p).unwrap();
            let gc = Conv2d::new(&g, &wt, [cout, cin, k, k], bias, s, p).unwrap();
            let want = cc.forward(&up(&Device::Cpu, &[n, cin, h, w], &x)).unwrap();
            // Every register tile the autotuner may pick.
            for tile in spadework::ops::conv2d::TILES {
                let got = gc.forward_tile(&up(&g, &[n, cin, h, w], &x), tile).unwrap();
                assert_eq!(got.shape(), want.shape());
                close(
                    &got.to_vec().unwrap(),
                    &want.to_vec().unwrap(),
                    1e-5,
                    &format!("gpu conv {:?} tile {tile:?}", CONV_SHAPES[i]),
                );
            }
            // f16 weight storage computes the same conv on the weights rounded to f16.
            let wt16: Vec<f32> = wt
                .iter()
                .map(|&v| half::f16::from_f32(v).to_f32())
                .collect();
            let want16 = Conv2d::new(&Device::Cpu, &wt16, [cout, cin, k, k], bias, s, p)
                .unwrap()
                .forward(&up(&Device::Cpu, &[n, cin, h, w], &x))
                .unwrap()
                .to_vec()
                .unwrap();
            let hc =
                Conv2d::with_storage(&g, &wt, [cout, cin, k, k], bias, s, p, WeightStorage::F16);
            let Device::Gpu(ctx) = &g else { unreachable!() };
            if !ctx.f16_in_f32 {
                // An adapter that cannot unpack halves says so.
                let e = hc
                    .err()
                    .expect("f16 weights on an adapter without f16 unpacking");
                assert!(e.to_string().contains("SHADER_F16_IN_F32"), "{e}");
                continue;
            }
            let hc = hc.unwrap();
            for tile in spadework::ops::conv2d::TILES {
                let got = hc.forward_tile(&up(&g, &[n, cin, h, w], &x), tile).unwrap();
                let got = got.to_vec().unwrap();
                close(
                    &got,
                    &want16,
                    1e-5,
                    &format!("gpu conv f16 weights {:?} tile {tile:?}", CONV_SHAPES[i]),
                );
                // And the rounding shows: f16 storage is not silently f32.
                if tile == spadework::ops::conv2d::TILES[0] && i == 0 {
                    let exact = want.to_vec().unwrap();
                    assert!(
                        max_abs_diff(&got, &exact) > 0.0,
                        "f16 weights gave f32 results"
                    );
                }
            }
        }
    }
}

#[test]
fn f16_weights_out_of_range_are_an_error() {
    let Some(g) = gpu() else { return };
    let mut wt = vec![0.5f32; 2 * 3 * 9];
    wt[2 * 9 + 4] = 1e5;
    let e = Conv2d::with_storage(&g, &wt, [2, 3, 3, 3], None, 1, 1, WeightStorage::F16)
        .err()
        .expect("1e5 does not fit in f16");
    let msg = e.to_string();
    assert!(
        msg.contains("f16 range") && msg.contains("output 0, index 22"),
        "{msg}"
    );
}
