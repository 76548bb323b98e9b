//! Elementwise ops (kernels/elementwise.wgsl, src/ops/elementwise.rs): unary activations, add and
//! mul, broadcasting, linear combinations and GEGLU, against f64 formulas and the CPU twin.
use crate::common::*;
use crate::{close, up};
use spadework::Tensor;
use spadework::backend::Device;
use spadework::ops;

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

#[test]
fn silu_matches_its_formula_on_both_backends() {
    let x: Vec<f32> = (0..2001).map(|i| (i as f32 - 1000.0) / 50.0).collect();
    let want: Vec<f32> = x
        .iter()
        .map(|&v| {
            let v = v as f64;
            (v / (1.0 + (-v).exp())) as f32
        })
        .collect();
    for d in devices() {
        let got = ops::silu(&up(&d, &[3, 667], &x)).unwrap();
        assert_eq!(got.shape(), [3, 667]);
        close(
            &got.to_vec().unwrap(),
            &want,
            1e-6,
            &format!("silu on {d:?}"),
        );
    }
}

/// NumPy broadcasting, index by index: `a (op) b` over the right-aligned shapes.
fn naive_bcast(
    a: &[f32],
    sa: &[usize],
    b: &[f32],
    sb: &[usize],
    mul: bool,
) -> (Vec<usize>, Vec<f32>) {
    let r = sa.len().max(sb.len());
    let pad = |s: &[usize]| [vec![1; r - s.len()], s.to_vec()].concat();
    let (pa, pb) = (pad(sa), pad(sb));
    let out: Vec<usize> = (0..r).map(|d| pa[d].max(pb[d])).collect();
    let n: usize = out.iter().product();
    let at = |c: &[usize], s: &[usize]| {
        c.iter()
            .zip(s)
            .fold(0, |acc, (&x, &m)| acc * m + if m == 1 { 0 } else { x })
    };
    let v = (0..n)
        .map(|i| {
            let mut c = vec![0; r];
            let mut rem = i;
            for d in (0..r).rev() {
                c[d] = rem % out[d];
                rem /= out[d];
            }
            let (x, y) = (a[at(&c, &pa)], b[at(&c, &pb)]);
            if mul { x * y } else { x + y }
        })
        .collect();
    (out, v)
}

#[test]
fn broadcast_add_mul_match_index_oracle() {
    let cases: &[(&[usize], &[usize])] = &[
        // A [B, C] time embedding over a ResNet's [B, C, H, W] feature map.
        (&[2, 5, 3, 7], &[2, 5, 1, 1]),
        (&[2, 5, 3, 7], &[7]),
        (&[1, 5, 1, 1], &[2, 1, 3, 1]),
        (&[13], &[1]),
        (&[3, 1, 4], &[3, 4]),
        (&[2, 5, 3, 7], &[2, 5, 3, 7]),
        (&[1], &[1]),
    ];
    for (i, &(sa, sb)) in cases.iter().enumerate() {
        let a = rand_vec(sa.iter().product(), 110 + i as u64);
        let b = rand_vec(sb.iter().product(), 120 + i as u64);
        for mul in [false, true] {
            let (shape, want) = naive_bcast(&a, sa, &b, sb, mul);
            for d in devices() {
                let (ta, tb) = (up(&d, sa, &a), up(&d, sb, &b));
                let y = if mul {
                    ops::mul_bcast(&ta, &tb)
                } else {
                    ops::add_bcast(&ta, &tb)
                };
                let y = y.unwrap();
                assert_eq!(y.shape(), shape);
                close(
                    &y.to_vec().unwrap(),
                    &want,
                    0.0,
                    &format!("{sa:?} {sb:?} mul {mul} {d:?}"),
                );
            }
        }
    }
    // mul of equal shapes; add/mul insist on them, the broadcast forms name the clash.
    for d in devices() {
        let a = rand_vec(21, 130);
        let b = rand_vec(21, 131);
        let y = ops::mul(&up(&d, &[3, 7], &a), &up(&d, &[3, 7], &b)).unwrap();
        let want: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x * y).collect();
        assert_eq!(y.to_vec().unwrap(), want);
        let e = ops::mul(&up(&d, &[3, 7], &a), &up(&d, &[7, 3], &b)).unwrap_err();
        assert!(e.to_string().contains("mul: shapes differ"), "{e}");
        let e = ops::add_bcast(&up(&d, &[3, 7], &a), &up(&d, &[7, 3], &b)).unwrap_err();
        assert!(
            e.to_string()
                .contains("cannot broadcast shapes [3, 7] and [7, 3]"),
            "{e}"
        );
    }
}

#[test]
fn lincomb_matches_f64_sum_on_both_backends() {
    let shape = [2, 3, 5, 7];
    let n = 210;
    let xs: Vec<Vec<f32>> = (0..6).map(|i| rand_vec(n, 140 + i)).collect();
    let coef = [0.5f32, -1.25, 3.0, 0.1, -0.7, 2.5];
    for terms in 1..=6 {
        let want: Vec<f32> = (0..n)
            .map(|j| {
                (0..terms)
                    .map(|t| coef[t] as f64 * xs[t][j] as f64)
                    .sum::<f64>() as f32
            })
            .collect();
        for d in devices() {
            let ts: Vec<_> = xs[..terms].iter().map(|x| up(&d, &shape, x)).collect();
            let args: Vec<(f32, &Tensor)> = coef.iter().copied().zip(&ts).collect();
            let y = ops::lincomb(&args).unwrap();
            assert_eq!(y.shape(), shape);
            close(
                &y.to_vec().unwrap(),
                &want,
                1e-6,
                &format!("lincomb {terms} terms {d:?}"),
            );
        }
    }
    for d in devices() {
        let a = up(&d, &[3], &[1.0; 3]);
        let b = up(&d, &[1, 3], &[1.0; 3]);
        let e = ops::lincomb(&[(1.0, &a), (2.0, &b)]).unwrap_err();
        assert!(
            e.to_string()
                .contains("term 1 has shape [1, 3], term 0 has [3]"),
            "{e}"
        );
        assert!(
            ops::lincomb(&[])
                .unwrap_err()
                .to_string()
                .contains("no terms")
        );
    }
}

#[test]
fn geglu_matches_f64_formula_on_both_backends() {
    for (i, shape) in [&[2usize, 3, 14][..], &[1, 1, 2], &[5, 26], &[77, 2 * 1280]]
        .iter()
        .enumerate()
    {
        let n: usize = shape.iter().product();
        let x: Vec<f32> = rand_vec(n, 150 + i as u64)
            .iter()
            .map(|v| v * 4.0)
            .collect();
        let f = shape[shape.len() - 1] / 2;
        let want: Vec<f32> = x
            .chunks(2 * f)
            .flat_map(|r| {
                (0..f).map(move |j| {
                    let g = r[f + j] as f64;
                    (r[j] as f64 * 0.5 * g * (1.0 + erf_f64(g / std::f64::consts::SQRT_2))) as f32
                })
            })
            .collect();
        let mut out_shape = shape.to_vec();
        *out_shape.last_mut().unwrap() = f;
        for d in devices() {
            let y = ops::geglu(&up(&d, shape, &x)).unwrap();
            assert_eq!(y.shape(), out_shape);
            let err = max_abs_diff(&y.to_vec().unwrap(), &want);
            assert!(err < 4e-6, "geglu {shape:?} on {d:?}: max |Δ| {err}");
        }
    }
    for d in devices() {
        let e = ops::geglu(&up(&d, &[2, 7], &[0.0; 14])).unwrap_err();
        assert!(e.to_string().contains("even, non-zero last dim"), "{e}");
    }
}
