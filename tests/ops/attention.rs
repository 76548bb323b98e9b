//! Attention (kernels/attention.wgsl, src/ops/attention.rs): the CPU twin against a naive f64
//! oracle, and the WGSL kernel against the CPU twin, on shapes that are not multiples of the
//! kernel's 64-query workgroup or 4-key block, with self-, cross- and causal attention and a key
//! padding bias; head sizes up to 512 (the wide entry points).
use crate::common::*;
use spadework::Tensor;
use spadework::backend::Device;
use spadework::ops::attention::{AttnShape, attention_cpu};
use spadework::ops::{AttnMask, attention};

/// softmax(q·kᵀ/√D + bias, causal) · v in f64, straight from the definition.
fn naive(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    s: AttnShape,
    causal: bool,
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let (c, d) = (s.heads * s.head_dim, s.head_dim);
    let mut out = vec![0f32; s.batch * s.lq * c];
    for b in 0..s.batch {
        for h in 0..s.heads {
            for i in 0..s.lq {
                let vis = if causal { (i + 1).min(s.lk) } else { s.lk };
                let sc: Vec<f64> = (0..vis)
                    .map(|j| {
                        let dot: f64 = (0..d)
                            .map(|t| {
                                q[(b * s.lq + i) * c + h * d + t] as f64
                                    * k[(b * s.lk + j) * c + h * d + t] as f64
                            })
                            .sum();
                        dot / (d as f64).sqrt() + bias.map_or(0.0, |x| x[b * s.lk + j] as f64)
                    })
                    .collect();
                let m = sc.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = sc.iter().map(|x| (x - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for t in 0..d {
                    let o: f64 = (0..vis)
                        .map(|j| e[j] * v[(b * s.lk + j) * c + h * d + t] as f64)
                        .sum();
                    out[(b * s.lq + i) * c + h * d + t] = (o / z) as f32;
                }
            }
        }
    }
    out
}

// (batch, lq, lk, heads, head_dim)
const SHAPES: &[[usize; 5]] = &[
    [1, 5, 5, 1, 4],
    [2, 37, 19, 3, 8],
    [1, 70, 77, 2, 40],
    [2, 9, 130, 4, 12],
    [1, 66, 66, 1, 128],
    [1, 3, 1, 2, 16],
    // Enough queries for the 4- and 8-row register blocks (≥ 1024 and ≥ 2048), not multiples of
    // their 256 and 512 rows per workgroup.
    [1, 1100, 9, 2, 8],
    [1, 2100, 13, 1, 4],
];

fn shape(a: [usize; 5]) -> AttnShape {
    AttnShape {
        batch: a[0],
        lq: a[1],
        lk: a[2],
        heads: a[3],
        head_dim: a[4],
    }
}

/// A key bias that masks the last third of each batch's keys (not the first key).
fn padding_bias(s: AttnShape) -> Vec<f32> {
    (0..s.batch * s.lk)
        .map(|i| {
            if i % s.lk > 0 && i % s.lk >= s.lk * 2 / 3 {
                -1e9
            } else {
                0.0
            }
        })
        .collect()
}

fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    let d = max_abs_diff(a, b);
    assert!(d <= tol, "{what}: max |Δ| {d} > {tol}");
}

#[test]
fn attention_cpu_matches_naive_oracle() {
    for &a in SHAPES {
        let s = shape(a);
        let c = s.heads * s.head_dim;
        let q = rand_vec(s.batch * s.lq * c, 1);
        let k = rand_vec(s.batch * s.lk * c, 2);
        let v = rand_vec(s.batch * s.lk * c, 3);
        let bias = padding_bias(s);
        for (causal, b) in [(false, None), (true, None), (false, Some(&bias[..]))] {
            let got = attention_cpu(&q, &k, &v, s, 1.0 / (s.head_dim as f32).sqrt(), causal, b);
            let want = naive(&q, &k, &v, s, causal, b);
            close(
                &got,
                &want,
                2e-5,
                &format!("{a:?} causal {causal} bias {}", b.is_some()),
            );
        }
    }
}

#[test]
fn attention_gpu_matches_cpu() {
    let Some(g) = gpu() else { return };
    for &a in SHAPES {
        let s = shape(a);
        let c = s.heads * s.head_dim;
        let q = rand_vec(s.batch * s.lq * c, 4);
        let k = rand_vec(s.batch * s.lk * c, 5);
        let v = rand_vec(s.batch * s.lk * c, 6);
        let bias = padding_bias(s);
        let run = |d: &Device, causal: bool, b: bool| {
            let t = |shape: &[usize], x: &[f32]| Tensor::from_vec(d, shape, x.to_vec()).unwrap();
            let bt = t(&[s.batch, s.lk], &bias);
            attention(
                &t(&[s.batch, s.lq, c], &q),
                &t(&[s.batch, s.lk, c], &k),
                &t(&[s.batch, s.lk, c], &v),
                s.heads,
                AttnMask {
                    causal,
                    key_bias: b.then_some(&bt),
                },
            )
            .unwrap()
            .to_vec()
            .unwrap()
        };
        for (causal, b) in [(false, false), (true, false), (false, true), (true, true)] {
            close(
                &run(&g, causal, b),
                &run(&Device::Cpu, causal, b),
                2e-5,
                &format!("gpu {a:?} causal {causal} bias {b}"),
            );
        }
    }
}

#[test]
fn fully_masked_rows_are_zero_and_bad_shapes_are_named() {
    let s = shape([1, 3, 4, 1, 4]);
    let q = rand_vec(12, 7);
    let k = rand_vec(16, 8);
    let bias = vec![f32::NEG_INFINITY; 4];
    let out = attention_cpu(&q, &k, &k, s, 0.5, false, Some(&bias));
    assert!(out.iter().all(|&x| x == 0.0), "{out:?}");
    for d in devices() {
        let t = |shape: &[usize]| {
            Tensor::from_vec(&d, shape, vec![0.0; shape.iter().product()]).unwrap()
        };
        let e = attention(
            &t(&[1, 3, 12]),
            &t(&[1, 4, 12]),
            &t(&[1, 4, 12]),
            5,
            AttnMask::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("12 channels do not split into 5 heads"), "{e}");
        let e = attention(
            &t(&[1, 3, 12]),
            &t(&[2, 4, 12]),
            &t(&[2, 4, 12]),
            3,
            AttnMask::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("does not match query"), "{e}");
        let bt = t(&[1, 5]);
        let m = AttnMask {
            causal: false,
            key_bias: Some(&bt),
        };
        let e = attention(&t(&[1, 3, 12]), &t(&[1, 4, 12]), &t(&[1, 4, 12]), 3, m)
            .unwrap_err()
            .to_string();
        assert!(e.contains("key bias must be [batch, keys] = [1, 4]"), "{e}");
        if d.is_gpu() {
            let e = attention(
                &t(&[1, 3, 10]),
                &t(&[1, 4, 10]),
                &t(&[1, 4, 10]),
                1,
                AttnMask::default(),
            )
            .unwrap_err()
            .to_string();
            assert!(e.contains("multiple of 4"), "{e}");
            let g = Tensor::from_vec(&d, &[1, 4], bias.clone()).unwrap();
            let m = AttnMask {
                causal: false,
                key_bias: Some(&g),
            };
            let qq = Tensor::from_vec(&d, &[1, 3, 4], q.clone()).unwrap();
            let kk = Tensor::from_vec(&d, &[1, 4, 4], k.clone()).unwrap();
            let o = attention(&qq, &kk, &kk, 1, m).unwrap().to_vec().unwrap();
            assert!(o.iter().all(|&x| x == 0.0), "gpu fully masked: {o:?}");
        }
    }
}

// Head sizes above 128 run the wide entry points: SD's 1280-channel levels (8 heads × 160), the
// VAE mid-block (1 head × 512), sizes that are not powers of two, and enough queries for their
// 2- and 4-row blocks (≥ 128 and ≥ 256), not multiples of their 128 and 256 rows per workgroup.
const WIDE_SHAPES: &[[usize; 5]] = &[
    [1, 37, 19, 2, 160],
    [2, 9, 13, 1, 512],
    [1, 70, 77, 1, 132],
    [1, 5, 7, 3, 260],
    [1, 130, 11, 2, 160],
    [1, 600, 9, 1, 160],
    [1, 300, 5, 1, 512],
];

#[test]
fn wide_shapes_cover_every_wide_entry() {
    let mut used: Vec<&str> = WIDE_SHAPES
        .iter()
        .map(|a| spadework::ops::attention::gpu_entry(a[1], a[4]).1)
        .collect();
    used.sort();
    used.dedup();
    assert_eq!(used, ["main_wide_r1", "main_wide_r2", "main_wide_r4"]);
}

#[test]
fn wide_heads_cpu_matches_naive_and_gpu_matches_cpu() {
    let g = gpu();
    for &a in WIDE_SHAPES {
        let s = shape(a);
        let c = s.heads * s.head_dim;
        let q = rand_vec(s.batch * s.lq * c, 31);
        let k = rand_vec(s.batch * s.lk * c, 32);
        let v = rand_vec(s.batch * s.lk * c, 33);
        let bias = padding_bias(s);
        let scale = 1.0 / (s.head_dim as f32).sqrt();
        for (causal, b) in [(false, false), (true, false), (false, true)] {
            let bb = b.then_some(&bias[..]);
            let cpu = attention_cpu(&q, &k, &v, s, scale, causal, bb);
            let what = format!("{a:?} causal {causal} bias {b}");
            close(
                &cpu,
                &naive(&q, &k, &v, s, causal, bb),
                2e-5,
                &format!("cpu {what}"),
            );
            let Some(g) = &g else { continue };
            let t = |shape: &[usize], x: &[f32]| Tensor::from_vec(g, shape, x.to_vec()).unwrap();
            let bt = t(&[s.batch, s.lk], &bias);
            let got = attention(
                &t(&[s.batch, s.lq, c], &q),
                &t(&[s.batch, s.lk, c], &k),
                &t(&[s.batch, s.lk, c], &v),
                s.heads,
                AttnMask {
                    causal,
                    key_bias: b.then_some(&bt),
                },
            )
            .unwrap()
            .to_vec()
            .unwrap();
            close(&got, &cpu, 2e-5, &format!("gpu {what}"));
        }
    }
    let Some(g) = g else { return };
    let t =
        |shape: &[usize]| Tensor::from_vec(&g, shape, vec![0.0; shape.iter().product()]).unwrap();
    let e = attention(
        &t(&[1, 3, 516]),
        &t(&[1, 4, 516]),
        &t(&[1, 4, 516]),
        1,
        AttnMask::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("at most 512, got 516"), "{e}");
}

/// Times the GPU kernel at SD's wide-head shapes (run with `--ignored --nocapture`).
#[test]
#[ignore]
fn wide_heads_gpu_timing() {
    let Some(g) = gpu() else { return };
    for (lq, lk, heads, d) in [
        (256, 256, 8, 160),
        (256, 77, 8, 160),
        (1024, 1024, 1, 512),
        (4096, 4096, 8, 40),
        (1024, 1024, 8, 80),
    ] {
        let c = heads * d;
        let t = |n: usize, seed| Tensor::from_vec(&g, &[1, n, c], rand_vec(n * c, seed)).unwrap();
        let (q, k, v) = (t(lq, 1), t(lk, 2), t(lk, 3));
        let run = || {
            attention(&q, &k, &v, heads, AttnMask::default())
                .unwrap()
                .to_vec()
                .unwrap()
        };
        run();
        let reps = 3;
        let t0 = std::time::Instant::now();
        for _ in 0..reps {
            run();
        }
        let dt = t0.elapsed().as_secs_f64() / reps as f64;
        let s = AttnShape {
            batch: 1,
            lq,
            lk,
            heads,
            head_dim: d,
        };
        println!(
            "attention {lq}×{lk} tok {heads}×{d}: {:.1} ms, {:.2} GFLOP/s ({})",
            dt * 1e3,
            s.flops(false) / dt / 1e9,
            spadework::ops::attention::gpu_entry(lq, d).1
        );
    }
}
