//! GroupNorm (kernels/group_norm.wgsl, src/ops/group_norm.rs): the CPU twin against a naive f64
//! oracle and the GPU against the CPU, with and without the fused SiLU, on odd shapes (groups of
//! one channel, one group, groups of several channels, 1×1 and 3-D inputs, runs longer than the
//! 256-wide reduction), and named errors for groups that do not divide and bad shapes.
use crate::common::*;
use crate::{close, up};
use spadework::ops::GroupNorm;

/// torch.nn.GroupNorm in f64, straight from the definition. `x: [n, c, hw]`.
fn naive(
    x: &[f32],
    [n, c, hw]: [usize; 3],
    g: usize,
    w: &[f32],
    b: &[f32],
    silu: bool,
) -> Vec<f32> {
    let cpg = c / g;
    let mut out = vec![0f32; x.len()];
    for s in 0..n {
        for k in 0..g {
            let idx = |ch: usize, i: usize| (s * c + k * cpg + ch) * hw + i;
            let vals: Vec<f64> = (0..cpg)
                .flat_map(|ch| (0..hw).map(move |i| (ch, i)))
                .map(|(ch, i)| x[idx(ch, i)] as f64)
                .collect();
            let m = vals.iter().sum::<f64>() / vals.len() as f64;
            let v = vals.iter().map(|a| (a - m).powi(2)).sum::<f64>() / vals.len() as f64;
            for ch in 0..cpg {
                let cc = k * cpg + ch;
                for i in 0..hw {
                    let y = (x[idx(ch, i)] as f64 - m) / (v + 1e-5).sqrt() * w[cc] as f64
                        + b[cc] as f64;
                    let y = if silu { y / (1.0 + (-y).exp()) } else { y };
                    out[idx(ch, i)] = y as f32;
                }
            }
        }
    }
    out
}

#[test]
fn group_norm_matches_f64_oracle_on_both_backends() {
    // (shape, groups)
    let cases: &[(&[usize], usize)] = &[
        (&[1, 5, 3, 7], 5),
        (&[1, 5, 3, 7], 1),
        (&[2, 6, 7, 13], 3),
        (&[2, 32, 4, 4], 32),
        (&[1, 4, 1, 1], 2),
        (&[2, 6, 11], 2),
        (&[1, 8, 33, 31], 2),
        (&[2, 64, 9, 9], 32),
    ];
    for (i, &(shape, g)) in cases.iter().enumerate() {
        let (n, c) = (shape[0], shape[1]);
        let hw: usize = shape[2..].iter().product();
        // An offset and scale, so that a one-pass variance would lose digits.
        let x: Vec<f32> = rand_vec(n * c * hw, 60 + i as u64)
            .iter()
            .map(|v| v * 3.0 + 20.0)
            .collect();
        let w = rand_vec(c, 70 + i as u64);
        let b = rand_vec(c, 80 + i as u64);
        for silu in [false, true] {
            let want = naive(&x, [n, c, hw], g, &w, &b, silu);
            for d in devices() {
                let gn = GroupNorm::new(&d, &w, &b, g, 1e-5).unwrap();
                let xt = up(&d, shape, &x);
                let y = if silu {
                    gn.forward_silu(&xt)
                } else {
                    gn.forward(&xt)
                }
                .unwrap();
                assert_eq!(y.shape(), shape);
                close(
                    &y.to_vec().unwrap(),
                    &want,
                    1e-5,
                    &format!("group norm {shape:?} groups {g} silu {silu} on {d:?}"),
                );
            }
        }
    }
    // affine=False normalises to mean 0, variance 1 per group.
    for d in devices() {
        let x: Vec<f32> = rand_vec(2 * 6 * 5, 90)
            .iter()
            .map(|v| v * 7.0 - 3.0)
            .collect();
        let gn = GroupNorm::without_affine(&d, 6, 2, 1e-5).unwrap();
        let y = gn
            .forward(&up(&d, &[2, 6, 5], &x))
            .unwrap()
            .to_vec()
            .unwrap();
        for run in y.chunks(15) {
            let m = run.iter().sum::<f32>() / 15.0;
            let v = run.iter().map(|a| (a - m) * (a - m)).sum::<f32>() / 15.0;
            assert!(
                m.abs() < 1e-5 && (v - 1.0).abs() < 1e-4,
                "{d:?}: mean {m} var {v}"
            );
        }
    }
}

#[test]
fn bad_group_norms_are_named_errors() {
    for d in devices() {
        let e = GroupNorm::new(&d, &[1.0; 5], &[0.0; 5], 2, 1e-5)
            .err()
            .unwrap();
        assert!(
            e.to_string()
                .contains("5 channels do not split into 2 groups"),
            "{e}"
        );
        let e = GroupNorm::new(&d, &[1.0; 4], &[0.0; 4], 0, 1e-5)
            .err()
            .unwrap();
        assert!(e.to_string().contains("do not split into 0 groups"), "{e}");
        let e = GroupNorm::new(&d, &[1.0; 4], &[0.0; 3], 2, 1e-5)
            .err()
            .unwrap();
        assert!(e.to_string().contains("4 weights but 3 biases"), "{e}");
        let gn = GroupNorm::new(&d, &[1.0; 4], &[0.0; 4], 2, 1e-5).unwrap();
        for shape in [&[1, 6, 2, 2][..], &[4][..]] {
            let x = up(&d, shape, &vec![0.0; shape.iter().product()]);
            let e = gn.forward(&x).unwrap_err().to_string();
            assert!(e.contains("expects [N, 4, ..]"), "{e}");
        }
    }
}
