//! Layout ops (kernels/layout.wgsl, src/ops/layout.rs): permute, token ↔ NCHW views, concat,
//! narrow, chunk and pad2d against index-by-index oracles on odd shapes, the GPU bit for bit
//! against the CPU, and named errors for bad dims and shapes.
use crate::common::*;
use crate::up;
use spadework::Tensor;
use spadework::backend::Device;
use spadework::ops;

/// Coordinates of flat index `i` in `shape` (row-major).
fn coords(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut c = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        c[d] = i % shape[d];
        i /= shape[d];
    }
    c
}

/// Flat index of coordinates `c` in `shape`.
fn flat(c: &[usize], shape: &[usize]) -> usize {
    c.iter().zip(shape).fold(0, |a, (&x, &n)| a * n + x)
}

fn vals(t: &Tensor) -> Vec<f32> {
    t.to_vec().unwrap()
}

/// The same op on both backends: the CPU result, checked bit for bit against the GPU's.
fn both(shapes: &[&[usize]], xs: &[Vec<f32>], f: &dyn Fn(&[&Tensor]) -> Tensor) -> Tensor {
    let mut out = None;
    for d in devices() {
        let ts: Vec<Tensor> = shapes.iter().zip(xs).map(|(s, x)| up(&d, s, x)).collect();
        let refs: Vec<&Tensor> = ts.iter().collect();
        let y = f(&refs);
        match &out {
            None => out = Some(Tensor::from_vec(&Device::Cpu, y.shape(), vals(&y)).unwrap()),
            Some(c) => {
                assert_eq!(y.shape(), c.shape(), "gpu shape");
                assert_eq!(
                    vals(&y),
                    vals(c),
                    "gpu values differ from cpu {:?}",
                    c.shape()
                );
            }
        }
    }
    out.unwrap()
}

#[test]
fn permute_matches_index_oracle() {
    let cases: &[(&[usize], &[usize])] = &[
        (&[2, 3, 5, 7], &[0, 2, 3, 1]),
        (&[2, 3, 5, 7], &[3, 1, 0, 2]),
        (&[1, 13, 1, 3], &[2, 3, 0, 1]),
        (&[7], &[0]),
        (&[2, 1, 3, 1, 2, 3], &[5, 4, 3, 2, 1, 0]),
        (&[3, 2, 2, 3, 2, 3], &[1, 3, 5, 0, 2, 4]),
    ];
    for (i, &(shape, perm)) in cases.iter().enumerate() {
        let n: usize = shape.iter().product();
        let x = rand_vec(n, 10 + i as u64);
        let y = both(&[shape], std::slice::from_ref(&x), &|t| {
            ops::permute(t[0], perm).unwrap()
        });
        let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
        assert_eq!(y.shape(), out_shape);
        let got = vals(&y);
        for (j, &v) in got.iter().enumerate() {
            let oc = coords(j, &out_shape);
            let mut xc = vec![0; shape.len()];
            for (k, &p) in perm.iter().enumerate() {
                xc[p] = oc[k];
            }
            assert_eq!(
                v,
                x[flat(&xc, shape)],
                "permute {shape:?} {perm:?} at {oc:?}"
            );
        }
    }
}

#[test]
fn tokens_and_nchw_round_trip() {
    for (i, &[b, c, h, w]) in [[2usize, 5, 3, 7], [1, 1, 1, 1], [1, 13, 7, 1], [2, 3, 1, 9]]
        .iter()
        .enumerate()
    {
        let x = rand_vec(b * c * h * w, 20 + i as u64);
        let tok = both(&[&[b, c, h, w]], std::slice::from_ref(&x), &|t| {
            ops::nchw_to_tokens(t[0]).unwrap()
        });
        assert_eq!(tok.shape(), [b, h * w, c]);
        let want =
            vals(&ops::permute(&up(&Device::Cpu, &[b, c, h, w], &x), &[0, 2, 3, 1]).unwrap());
        assert_eq!(vals(&tok), want, "nchw_to_tokens {b}x{c}x{h}x{w}");
        // The token layout: [b, y·w + x, c] holds x[b, c, y, x].
        let t = vals(&tok);
        assert_eq!(t[(h * w - 1) * c], x[h * w - 1]);
        let back = both(&[&[b, h * w, c]], &[t], &|t| {
            ops::tokens_to_nchw(t[0], h, w).unwrap()
        });
        assert_eq!(back.shape(), [b, c, h, w]);
        assert_eq!(vals(&back), x, "round trip {b}x{c}x{h}x{w}");
    }
}

#[test]
fn concat_narrow_chunk_match_index_oracle() {
    let base = [2usize, 3, 5, 7];
    for dim in 0..4 {
        // Pieces of 1, 4 and 2 (and an empty one) along `dim`.
        let sizes = [1usize, 4, 0, 2];
        let shapes: Vec<Vec<usize>> = sizes
            .iter()
            .map(|&s| {
                let mut v = base.to_vec();
                v[dim] = s;
                v
            })
            .collect();
        let xs: Vec<Vec<f32>> = shapes
            .iter()
            .enumerate()
            .map(|(i, s)| rand_vec(s.iter().product(), 30 + i as u64))
            .collect();
        let srefs: Vec<&[usize]> = shapes.iter().map(|s| &s[..]).collect();
        // Negative dims count from the end.
        let ndim = dim as isize - 4;
        let y = both(&srefs, &xs, &|t| {
            ops::concat(t, if dim % 2 == 0 { dim as isize } else { ndim }).unwrap()
        });
        let mut out_shape = base.to_vec();
        out_shape[dim] = sizes.iter().sum();
        assert_eq!(y.shape(), out_shape);
        let got = vals(&y);
        for (j, &v) in got.iter().enumerate() {
            let mut c = coords(j, &out_shape);
            let mut piece = 0;
            while c[dim] >= sizes[piece] {
                c[dim] -= sizes[piece];
                piece += 1;
            }
            assert_eq!(
                v,
                xs[piece][flat(&c, &shapes[piece])],
                "concat dim {dim} at {j}"
            );
        }
        // narrow takes each piece back out; chunk splits as torch.chunk.
        let mut at = 0;
        for (p, &s) in sizes.iter().enumerate() {
            let part = both(&[&out_shape], std::slice::from_ref(&got), &|t| {
                ops::narrow(t[0], dim as isize, at, s).unwrap()
            });
            assert_eq!(part.shape(), shapes[p]);
            assert_eq!(vals(&part), xs[p], "narrow dim {dim} piece {p}");
            at += s;
        }
        for d in devices() {
            let t = up(&d, &out_shape, &got);
            let parts = ops::chunk(&t, 3, dim as isize).unwrap();
            // 7 → 3, 3, 1.
            let lens: Vec<usize> = parts.iter().map(|p| p.shape()[dim]).collect();
            assert_eq!(lens, [3, 3, 1], "chunk of 7 into 3 along {dim}");
            let refs: Vec<&Tensor> = parts.iter().collect();
            assert_eq!(vals(&ops::concat(&refs, dim as isize).unwrap()), got);
        }
    }
    // torch.chunk(6, 4) gives 3 pieces of 2; chunk(2, -1) halves the last dim (GEGLU, CFG).
    let x = up(&Device::Cpu, &[2, 6], &rand_vec(12, 40));
    let p = ops::chunk(&x, 4, 1).unwrap();
    assert_eq!(
        p.iter().map(|t| t.shape()[1]).collect::<Vec<_>>(),
        [2, 2, 2]
    );
    let h = ops::chunk(&x, 2, -1).unwrap();
    assert_eq!(vals(&h[1]), [&vals(&x)[3..6], &vals(&x)[9..12]].concat());
}

#[test]
fn pad2d_matches_index_oracle() {
    let cases: &[(&[usize], [usize; 4])] = &[
        (&[2, 3, 5, 7], [0, 1, 0, 1]),
        (&[1, 1, 1, 1], [2, 0, 1, 3]),
        (&[3, 4, 5], [1, 2, 3, 0]),
        (&[1, 2, 13, 3], [0, 0, 0, 0]),
        (&[4, 1], [3, 1, 1, 1]),
    ];
    for (i, &(shape, pad)) in cases.iter().enumerate() {
        let [l, r, t, b] = pad;
        let n: usize = shape.iter().product();
        let x = rand_vec(n, 50 + i as u64);
        let y = both(&[shape], std::slice::from_ref(&x), &|ts| {
            ops::pad2d(ts[0], pad).unwrap()
        });
        let k = shape.len();
        let mut out_shape = shape.to_vec();
        out_shape[k - 2] += t + b;
        out_shape[k - 1] += l + r;
        assert_eq!(y.shape(), out_shape);
        for (j, &v) in vals(&y).iter().enumerate() {
            let mut c = coords(j, &out_shape);
            let (yy, xx) = (c[k - 2], c[k - 1]);
            let inside = yy >= t && yy < t + shape[k - 2] && xx >= l && xx < l + shape[k - 1];
            let want = if inside {
                c[k - 2] -= t;
                c[k - 1] -= l;
                x[flat(&c, shape)]
            } else {
                0.0
            };
            assert_eq!(v, want, "pad2d {shape:?} {pad:?} at {j}");
        }
    }
}

#[test]
fn bad_layout_arguments_are_named_errors() {
    for d in devices() {
        let t = |s: &[usize]| up(&d, s, &vec![0.0; s.iter().product()]);
        let err = |r: anyhow::Result<Tensor>| r.unwrap_err().to_string();
        let (a, b) = (t(&[2, 3, 4]), t(&[2, 5, 3]));
        let e = err(ops::concat(&[&a, &b], 1));
        assert!(
            e.contains("tensor 1 has shape [2, 5, 3]") && e.contains("outside dim 1"),
            "{e}"
        );
        let e = err(ops::concat(&[&a, &t(&[2, 3])], 0));
        assert!(e.contains("tensor 1 has shape [2, 3]"), "{e}");
        let e = err(ops::concat(&[&a], 3));
        assert!(e.contains("dim 3 is out of range for a 3-D tensor"), "{e}");
        let e = err(ops::concat(&[&a], -4));
        assert!(e.contains("dim -4 is out of range"), "{e}");
        assert!(
            ops::concat(&[], 0)
                .unwrap_err()
                .to_string()
                .contains("no tensors")
        );
        let e = err(ops::narrow(&a, 2, 3, 2));
        assert!(
            e.contains("3..5 is out of range for dim 2 of size 4"),
            "{e}"
        );
        let e = ops::chunk(&a, 0, 1).err().unwrap().to_string();
        assert!(e.contains("into 0 chunks"), "{e}");
        let e = err(ops::permute(&a, &[0, 0, 1]));
        assert!(e.contains("not a permutation"), "{e}");
        let e = err(ops::permute(&a, &[0, 1]));
        assert!(e.contains("not a permutation"), "{e}");
        let e = err(ops::pad2d(&t(&[5]), [1, 1, 1, 1]));
        assert!(e.contains("last two dims"), "{e}");
        let e = err(ops::tokens_to_nchw(&a, 2, 2));
        assert!(e.contains("3 tokens are not 2×2"), "{e}");
        let e = err(ops::nchw_to_tokens(&a));
        assert!(e.contains("4-D NCHW"), "{e}");
        // A 7-D permute whose dims do not merge exceeds the kernel's 6.
        let big = t(&[2, 3, 2, 3, 2, 3, 2]);
        let e = err(ops::permute(&big, &[6, 5, 4, 3, 2, 1, 0]));
        assert!(e.contains("more than the 6 supported"), "{e}");
        // One that merges back to fewer dims is fine.
        let y = ops::permute(&big, &[0, 1, 2, 3, 4, 6, 5]).unwrap();
        assert_eq!(y.shape(), [2, 3, 2, 3, 2, 2, 3]);
    }
}
