//! burn-wgpu on SPADE's conv and GEMM shapes: the peer `tools/bench_burn.py` compares
//! `spadework bench` with. Workload names match `spadework bench`'s so the two join by name.
//!
//! `burn_bench [--quick] [--runs N] [--only TEXT] [--device wgpu|vulkan]`: one JSON line per
//! workload on stdout: {"workload", "median_ms", "min_ms", "gflops", "runs"}.
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, DeviceKind, Distribution, Tensor};
use std::time::Instant;

struct Args {
    quick: bool,
    runs: usize,
    only: Option<String>,
    device: String,
}

fn args() -> Args {
    let default_device = if cfg!(feature = "vulkan") { "vulkan" } else { "wgpu" };
    let mut a = Args { quick: false, runs: 5, only: None, device: default_device.into() };
    let mut it = std::env::args().skip(1);
    while let Some(s) = it.next() {
        match s.as_str() {
            "--quick" => a.quick = true,
            "--runs" => a.runs = it.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            "--only" => a.only = it.next(),
            "--device" => a.device = it.next().expect("--device wgpu|vulkan"),
            _ => {
                eprintln!("usage: burn_bench [--quick] [--runs N] [--only TEXT] [--device wgpu|vulkan]");
                std::process::exit(2);
            }
        }
    }
    a
}

/// Warm-up (compilation and burn's autotune), then `runs` timed runs, each ended by a device sync.
fn time(device: &Device, runs: usize, mut f: impl FnMut()) -> (f64, f64) {
    for _ in 0..3 {
        f();
        device.sync().expect("sync");
    }
    let mut ms: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            device.sync().expect("sync");
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    (ms[ms.len() / 2], ms[0])
}

fn main() {
    let a = args();
    let device = match a.device.as_str() {
        #[cfg(feature = "vulkan")]
        "vulkan" => Device::vulkan(DeviceKind::DefaultDevice),
        "wgpu" => Device::wgpu(DeviceKind::DefaultDevice),
        d => {
            eprintln!("--device {d}: this build has wgpu{}", if cfg!(feature = "vulkan") { " and vulkan" } else { "" });
            std::process::exit(2);
        }
    };
    let s = if a.quick { 4 } else { 1 };
    let u = || Distribution::Uniform(-1.0, 1.0);
    let wanted = |name: &str| a.only.as_deref().map_or(true, |o| name.contains(o));
    let report = |name: &str, flop: f64, (median, min): (f64, f64)| {
        println!(
            "{{\"workload\": \"{name}\", \"median_ms\": {median:.3}, \"min_ms\": {min:.3}, \"gflops\": {:.3}, \"runs\": {}}}",
            flop / median / 1e6,
            a.runs
        );
    };
    // The same list as `op_workloads` in src/bench/workloads.rs (name, c_in, c_out, size, kernel).
    let convs: &[(&str, usize, usize, usize, usize)] = &[
        ("conv3x3 1024→1024 @16", 1024, 1024, 16, 3),
        ("conv3x3 512→256 @64", 512, 256, 64, 3),
        ("conv3x3 256→128 @128", 256, 128, 128, 3),
        ("conv3x3 γβ 128→256 @256", 128, 256, 256, 3),
        ("conv1x1 128→64 @256", 128, 64, 256, 1),
    ];
    for &(name, cin, cout, hw0, k) in convs {
        let hw = (hw0 / s).max(4);
        let name = name.replace(&format!("@{hw0}"), &format!("@{hw}"));
        if !wanted(&name) {
            continue;
        }
        let x = Tensor::<4>::random([1, cin, hw, hw], u(), &device);
        let w = Tensor::<4>::random([cout, cin, k, k], u(), &device);
        let b = Tensor::<1>::random([cout], u(), &device);
        let opt = ConvOptions::new([1, 1], [k / 2, k / 2], [1, 1], 1);
        let r = time(&device, a.runs, || {
            let _ = conv2d(x.clone(), w.clone(), Some(b.clone()), opt.clone());
        });
        report(&name, 2.0 * (cout * cin * k * k * hw * hw) as f64, r);
    }
    let n = 1024 / s;
    let name = format!("GEMM {n}×{n}×{n}");
    if wanted(&name) {
        let x = Tensor::<2>::random([n, n], u(), &device);
        let w = Tensor::<2>::random([n, n], u(), &device);
        let r = time(&device, a.runs, || {
            let _ = x.clone().matmul(w.clone());
        });
        report(&name, 2.0 * (n * n * n) as f64, r);
    }
}
