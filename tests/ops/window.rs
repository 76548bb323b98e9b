//! Window paste (kernels/window.wgsl, src/ops/window.rs): GPU against CPU and the definition.
use crate::common::*;
use crate::{close, up};
use spadework::backend::Device;
use spadework::ops;

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
