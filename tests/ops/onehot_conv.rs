//! One-hot gather conv (kernels/onehot_conv.wgsl, src/ops/onehot_conv.rs) against the dense conv
//! of the one-hot input on both backends.
use crate::close;
use crate::common::*;
use spadework::backend::Device;
use spadework::ops::{self, Conv2d};

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
