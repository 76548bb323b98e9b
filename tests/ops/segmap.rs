//! Segmentation-map input (kernels/segmap.wgsl, src/ops/segmap.rs): one-hot and edges, GPU
//! against CPU.
use crate::common::*;
use spadework::backend::Device;
use spadework::ops;

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
