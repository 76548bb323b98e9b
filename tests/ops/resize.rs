//! Nearest resizing (kernels/resize.wgsl, src/ops/resize.rs): both rules, GPU against CPU.
use crate::common::*;
use crate::up;
use spadework::backend::Device;
use spadework::ops::{self, NearestRule};

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
