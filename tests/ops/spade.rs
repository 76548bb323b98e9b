//! SPADE modulation (kernels/spade.wgsl, src/ops/spade.rs) with the parameter-free norms that
//! feed it (batch norm with running statistics, instance norm), GPU against CPU.
use crate::common::*;
use crate::{close, up};
use spadework::backend::Device;
use spadework::ops::{self, ParamFreeNorm};

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
