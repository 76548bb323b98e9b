//! Every WGSL kernel against its CPU twin on awkward shapes (odd sizes, non-multiples of the
//! 4×4 conv tile, stride 2, 1×1 and 3×3 and 5×5), and the CPU conv against a naive f64 oracle.
mod common;
use common::*;
use spadework::Tensor;
use spadework::backend::{Device, WeightStorage};
use spadework::ops::{self, Conv2d, Linear, NearestRule, ParamFreeNorm};

fn up(d: &Device, shape: &[usize], v: &[f32]) -> Tensor {
    Tensor::from_vec(d, shape, v.to_vec()).unwrap()
}

fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let d = max_abs_diff(a, b);
    assert!(d <= tol * scale, "{what}: max |Δ| {d} > {tol} × {scale}");
}

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

#[test]
fn elementwise_gpu_matches_cpu() {
    let Some(g) = gpu() else { return };
    let n = 3 * 1007;
    let a: Vec<f32> = rand_vec(n, 1).iter().map(|v| v * 30.0).collect();
    let b = rand_vec(n, 2);
    let shape = [1, 3, 1, 1007];
    for (name, f) in [
        (
            "relu",
            &(|t: &Tensor| ops::relu(t).unwrap()) as &dyn Fn(&Tensor) -> Tensor,
        ),
        ("lrelu", &|t: &Tensor| ops::leaky_relu(t, 0.2).unwrap()),
        ("tanh", &|t: &Tensor| ops::tanh(t).unwrap()),
    ] {
        let want = f(&up(&Device::Cpu, &shape, &a)).to_vec().unwrap();
        let got = f(&up(&g, &shape, &a)).to_vec().unwrap();
        close(&got, &want, 1e-6, name);
    }
    let want = ops::add(&up(&Device::Cpu, &shape, &a), &up(&Device::Cpu, &shape, &b))
        .unwrap()
        .to_vec()
        .unwrap();
    let got = ops::add(&up(&g, &shape, &a), &up(&g, &shape, &b))
        .unwrap()
        .to_vec()
        .unwrap();
    close(&got, &want, 0.0, "add");
}

#[test]
fn large_elementwise_uses_2d_grid() {
    // More than 65535 × 256 elements: the flat index must be rebuilt from a 2-D dispatch.
    let Some(g) = gpu() else { return };
    let n = 65535 * 256 + 1000;
    let a: Vec<f32> = (0..n).map(|i| (i % 1000) as f32 - 500.0).collect();
    let got = ops::relu(&up(&g, &[1, 1, 1, n], &a))
        .unwrap()
        .to_vec()
        .unwrap();
    assert!(got.iter().zip(&a).all(|(y, x)| *y == x.max(0.0)));
}

#[test]
fn norms_and_modulation_gpu_match_cpu() {
    let Some(g) = gpu() else { return };
    for &(n, c, h, w) in &[
        (1usize, 3usize, 5usize, 7usize),
        (2, 5, 9, 4),
        (1, 4, 33, 31),
    ] {
        let x: Vec<f32> = rand_vec(n * c * h * w, 3)
            .iter()
            .map(|v| v * 4.0 + 1.5)
            .collect();
        let gb = rand_vec(n * 2 * c * h * w, 4);
        let mean = rand_vec(c, 5);
        let var: Vec<f32> = rand_vec(c, 6).iter().map(|v| v.abs() + 0.1).collect();
        let shape = [n, c, h, w];
        let gbs = [n, 2 * c, h, w];
        let run = |d: &Device| {
            let xt = up(d, &shape, &x);
            let bn = ParamFreeNorm::batch(d, &mean, &var).unwrap();
            let inorm = ops::instance_norm(&xt).unwrap().to_vec().unwrap();
            let bnorm = bn.forward(&xt).unwrap().to_vec().unwrap();
            let gbt = up(d, &gbs, &gb);
            let m1 = ops::modulate(&xt, &bn, &gbt, Some(0.2))
                .unwrap()
                .to_vec()
                .unwrap();
            let m2 = ops::modulate(&xt, &ParamFreeNorm::Instance, &gbt, None)
                .unwrap()
                .to_vec()
                .unwrap();
            (inorm, bnorm, m1, m2)
        };
        let (a, b, c1, d1) = run(&Device::Cpu);
        let (a2, b2, c2, d2) = run(&g);
        close(&a2, &a, 2e-5, "instance_norm");
        close(&b2, &b, 1e-6, "batch_norm");
        close(&c2, &c1, 1e-6, "modulate+bn+lrelu");
        close(&d2, &d1, 2e-5, "modulate+in");
        // Instance-normalised planes have mean 0, variance 1.
        let hw = h * w;
        let plane = &a[..hw];
        let m = plane.iter().sum::<f32>() / hw as f32;
        let v = plane.iter().map(|x| (x - m) * (x - m)).sum::<f32>() / hw as f32;
        assert!(
            m.abs() < 1e-4 && (v - 1.0).abs() < 1e-3,
            "instance norm stats {m} {v}"
        );
    }
}

#[test]
fn resize_rules_gpu_match_cpu_and_spec() {
    // torch rule: 256 → 8 samples 0, 32, 64, ...; PIL rule is center-aligned.
    assert_eq!(
        (0..8)
            .map(|d| NearestRule::Torch.src(d, 256, 8))
            .collect::<Vec<_>>(),
        (0..8).map(|d| d * 32).collect::<Vec<_>>()
    );
    assert_eq!(
        (0..4)
            .map(|d| NearestRule::Pil.src(d, 8, 4))
            .collect::<Vec<_>>(),
        vec![1, 3, 5, 7]
    );
    let Some(g) = gpu() else { return };
    let (n, c, h, w) = (1, 3, 13, 17);
    let x = rand_vec(n * c * h * w, 9);
    for rule in [NearestRule::Torch, NearestRule::Pil] {
        for (oh, ow) in [(5, 8), (26, 34), (31, 7), (13, 17)] {
            let want = ops::resize_nearest(&up(&Device::Cpu, &[n, c, h, w], &x), oh, ow, rule)
                .unwrap()
                .to_vec()
                .unwrap();
            let got = ops::resize_nearest(&up(&g, &[n, c, h, w], &x), oh, ow, rule)
                .unwrap()
                .to_vec()
                .unwrap();
            assert_eq!(got, want, "{rule:?} {oh}x{ow}");
        }
    }
    let want = ops::upsample2x(&up(&Device::Cpu, &[n, c, h, w], &x))
        .unwrap()
        .to_vec()
        .unwrap();
    let got = ops::upsample2x(&up(&g, &[n, c, h, w], &x))
        .unwrap()
        .to_vec()
        .unwrap();
    assert_eq!(got, want);
    assert_eq!(want[0..2], [x[0], x[0]]);
}

#[test]
fn segmap_gpu_matches_cpu() {
    let (h, w, classes) = (11, 9, 6);
    let labels: Vec<u32> = (0..h * w)
        .map(|i| ((i * 7 + i / 5) % classes) as u32)
        .collect();
    let inst: Vec<u32> = (0..h * w)
        .map(|i| ((i % w) / 3 + 10 * ((i / w) / 4)) as u32)
        .collect();
    let cpu = ops::seg_input(
        &Device::Cpu,
        &labels,
        Some(&inst),
        h,
        w,
        classes,
        classes + 1,
    )
    .unwrap()
    .to_vec()
    .unwrap();
    // One-hot: each pixel has exactly one 1 among the class channels.
    for i in 0..h * w {
        let s: f32 = (0..classes).map(|c| cpu[c * h * w + i]).sum();
        assert_eq!(s, 1.0);
        assert_eq!(cpu[labels[i] as usize * h * w + i], 1.0);
    }
    // Edges: pixel (0,2) and (0,3) differ horizontally (instance 0 vs 1).
    let e = &cpu[classes * h * w..];
    assert_eq!((e[2], e[3], e[0]), (1.0, 1.0, 0.0));
    assert!(
        ops::seg_input(&Device::Cpu, &[0, 9], None, 1, 2, 6, 6)
            .unwrap_err()
            .to_string()
            .contains("label id 9")
    );
    let Some(g) = gpu() else { return };
    let got = ops::seg_input(&g, &labels, Some(&inst), h, w, classes, classes + 1)
        .unwrap()
        .to_vec()
        .unwrap();
    assert_eq!(got, cpu);
}

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
fn onehot_gather_conv_matches_dense_conv_on_both_backends() {
    use spadework::ops::OneHotConv;
    use spadework::ops::onehot_conv::label_map;
    for &(h, w, classes, edge, cout, k) in &[
        (7usize, 9usize, 5usize, false, 6usize, 3usize),
        (13, 6, 4, true, 130, 3),
        (5, 5, 3, true, 3, 1),
        (1, 1, 2, false, 4, 3),
    ] {
        let labels: Vec<u32> = (0..h * w)
            .map(|i| ((i * 5 + i / 3) % classes) as u32)
            .collect();
        let inst: Vec<u32> = (0..h * w).map(|i| ((i % w) / 2) as u32).collect();
        let chans = classes + edge as usize;
        let wt = rand_vec(cout * chans * k * k, 21);
        let b = rand_vec(cout, 22);
        let dense = ops::seg_input(
            &Device::Cpu,
            &labels,
            edge.then_some(&inst[..]),
            h,
            w,
            classes,
            chans,
        )
        .unwrap();
        let want = Conv2d::new(&Device::Cpu, &wt, [cout, chans, k, k], Some(&b), 1, k / 2)
            .unwrap()
            .forward(&dense)
            .unwrap()
            .to_vec()
            .unwrap();
        let edges = edge.then(|| ops::segmap::edges_cpu(&inst, h, w));
        for d in devices() {
            let lm = label_map(&d, &labels, edges.as_deref(), h, w).unwrap();
            for relu in [false, true] {
                let conv =
                    OneHotConv::new(&d, &wt, [cout, chans, k, k], &b, edge, k / 2, relu).unwrap();
                let got = conv.forward(&lm).unwrap().to_vec().unwrap();
                let want: Vec<f32> = want
                    .iter()
                    .map(|&v| if relu { v.max(0.0) } else { v })
                    .collect();
                close(
                    &got,
                    &want,
                    1e-5,
                    &format!("onehot conv {h}x{w} c{classes} edge {edge} relu {relu} on {d:?}"),
                );
            }
        }
    }
}

#[test]
fn paste_gpu_matches_cpu() {
    let Some(g) = gpu() else { return };
    // [n, c, sh, sw] source, [dh, dw] destination, box at (y, x) of h × w from (sy, sx).
    for (i, (n, c, (sh, sw), (dh, dw), at, from)) in [
        (
            1,
            3,
            (9, 7),
            (13, 11),
            ops::PixRect {
                y: 2,
                x: 3,
                h: 5,
                w: 4,
            },
            (1, 2),
        ),
        (
            2,
            5,
            (4, 4),
            (4, 4),
            ops::PixRect {
                y: 0,
                x: 0,
                h: 4,
                w: 4,
            },
            (0, 0),
        ),
        (
            1,
            1,
            (300, 3),
            (301, 5),
            ops::PixRect {
                y: 1,
                x: 2,
                h: 299,
                w: 3,
            },
            (1, 0),
        ),
        (
            1,
            2,
            (6, 6),
            (6, 6),
            ops::PixRect {
                y: 5,
                x: 5,
                h: 1,
                w: 1,
            },
            (0, 5),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let src = rand_vec(n * c * sh * sw, 300 + i as u64);
        let dst = rand_vec(n * c * dh * dw, 400 + i as u64);
        let mut want = up(&Device::Cpu, &[n, c, dh, dw], &dst);
        ops::paste(
            &mut want,
            at,
            &up(&Device::Cpu, &[n, c, sh, sw], &src),
            from,
        )
        .unwrap();
        let mut got = up(&g, &[n, c, dh, dw], &dst);
        ops::paste(&mut got, at, &up(&g, &[n, c, sh, sw], &src), from).unwrap();
        let (want, got) = (want.to_vec().unwrap(), got.to_vec().unwrap());
        close(&got, &want, 0.0, &format!("paste case {i}"));
        // The box holds the source; everything else is untouched.
        for p in 0..n * c {
            for y in 0..dh {
                for x in 0..dw {
                    let inside =
                        (at.y..at.y + at.h).contains(&y) && (at.x..at.x + at.w).contains(&x);
                    let v = want[(p * dh + y) * dw + x];
                    let expect = if inside {
                        src[(p * sh + from.0 + y - at.y) * sw + from.1 + x - at.x]
                    } else {
                        dst[(p * dh + y) * dw + x]
                    };
                    assert_eq!(v, expect, "paste case {i} at plane {p} ({y}, {x})");
                }
            }
        }
    }
    // A box that does not fit is an error naming the sizes.
    let mut d = up(&g, &[1, 1, 4, 4], &[0.0; 16]);
    let s = up(&g, &[1, 1, 4, 4], &[0.0; 16]);
    let e = ops::paste(
        &mut d,
        ops::PixRect {
            y: 2,
            x: 0,
            h: 3,
            w: 1,
        },
        &s,
        (0, 0),
    )
    .unwrap_err();
    assert!(e.to_string().contains("does not fit"), "{e}");
}

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

/// erf by its Taylor series in f64 (|x| ≤ 4 here; 60 terms are far past f32 precision).
fn erf_f64(x: f64) -> f64 {
    let (mut term, mut sum) = (x, x);
    for n in 1..60 {
        term *= -x * x / n as f64;
        sum += term / (2 * n + 1) as f64;
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

#[test]
fn gelu_variants_match_their_formulas_on_both_backends() {
    let x: Vec<f32> = (0..2001).map(|i| (i as f32 - 1000.0) / 250.0).collect();
    for (op, f) in [
        (
            ops::Unary::QuickGelu,
            &(|v: f64| v / (1.0 + (-1.702 * v).exp())) as &dyn Fn(f64) -> f64,
        ),
        (ops::Unary::Gelu, &|v: f64| {
            0.5 * v * (1.0 + erf_f64(v / std::f64::consts::SQRT_2))
        }),
    ] {
        let want: Vec<f32> = x.iter().map(|&v| f(v as f64) as f32).collect();
        for d in devices() {
            let got = ops::unary(&up(&d, &[1, 1, 1, x.len()], &x), op).unwrap();
            let got = got.to_vec().unwrap();
            let err = max_abs_diff(&got, &want);
            assert!(err < 2e-6, "{op:?} on {d:?}: max |Δ| {err}");
        }
    }
}
