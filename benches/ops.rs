//! Per-op timings at SPADE's shapes (ade20k, 256×256) on the CPU backend and the GPU adapter.
//!
//!   cargo bench --bench ops -- [--backend cpu|gpu|all] [--iters N] [--filter NAME]
//!
//! Each workload runs once to warm up (pipeline compilation), then N times; the GPU is synced
//! after each run. GFLOP/s counts 2 FLOPs per multiply-add.
use spadework::Tensor;
use spadework::backend::{BackendChoice, Device};
use spadework::ops::{Conv2d, OneHotConv};
use std::time::Instant;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--test" || a == "--list") {
        return Ok(());
    }
    let iters: usize = arg(&args, "--iters")
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(3);
    let filter = arg(&args, "--filter").unwrap_or_default();
    let choices = match arg(&args, "--backend").as_deref() {
        Some("gpu") => vec![BackendChoice::Gpu],
        Some("all") => vec![BackendChoice::Cpu, BackendChoice::Gpu],
        _ => vec![BackendChoice::Cpu],
    };
    // (name, cin, cout, h=w, k): SPADE's 3×3 main convs and the stacked γ/β conv.
    let convs: &[(&str, usize, usize, usize, usize)] = &[
        ("G_middle conv 1024→1024 @16", 1024, 1024, 16, 3),
        ("up_1.conv_0 512→256 @64", 512, 256, 64, 3),
        ("up_2.conv_0 256→128 @128", 256, 128, 128, 3),
        ("up_3 mlp_gamma_beta 128→256 @256", 128, 256, 256, 3),
        ("up_3.conv_s 128→64 1x1 @256", 128, 64, 256, 1),
    ];
    for choice in choices {
        let d = Device::select(choice, arg(&args, "--adapter").as_deref())?;
        eprintln!("{}", d.describe());
        let rng = |n: usize, s: u64| spadework::rng::Rng::new(s).uniform_vec(n, -1.0, 1.0);
        for &(name, cin, cout, hw, k) in convs {
            if !name.contains(&filter) {
                continue;
            }
            let conv = Conv2d::new(
                &d,
                &rng(cout * cin * k * k, 1),
                [cout, cin, k, k],
                Some(&rng(cout, 2)),
                1,
                k / 2,
            )?;
            let x = Tensor::from_vec(&d, &[1, cin, hw, hw], rng(cin * hw * hw, 3))?;
            let flop = 2.0 * (cout * cin * k * k * hw * hw) as f64;
            time(&d, name, flop, iters, || conv.forward(&x).map(drop))?;
        }
        let name = "up_3 mlp_shared one-hot 151→128 @256";
        if name.contains(&filter) {
            let (hw, nc) = (256, 151);
            let conv = OneHotConv::new(
                &d,
                &rng(128 * nc * 9, 4),
                [128, nc, 3, 3],
                &rng(128, 5),
                false,
                1,
                true,
            )?;
            let labels: Vec<u32> = (0..hw * hw)
                .map(|i| ((i / hw / 16 * 7 + i % hw / 16 * 3) % nc) as u32)
                .collect();
            let lm = spadework::ops::onehot_conv::label_map(&d, &labels, None, hw, hw)?;
            // FLOPs of the dense conv it replaces.
            time(
                &d,
                name,
                2.0 * (128 * nc * 9 * hw * hw) as f64,
                iters,
                || conv.forward(&lm).map(drop),
            )?;
        }
    }
    Ok(())
}

fn time(
    d: &Device,
    name: &str,
    flop: f64,
    iters: usize,
    mut f: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    f()?;
    d.sync()?;
    let mut ms = Vec::new();
    for _ in 0..iters {
        let t = Instant::now();
        f()?;
        d.sync()?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let med = ms[ms.len() / 2];
    println!(
        "{:<4} {name:<38} median {med:9.2} ms  min {:9.2} ms  {:7.1} GFLOP/s",
        if d.is_gpu() { "gpu" } else { "cpu" },
        ms[0],
        flop / med / 1e6
    );
    Ok(())
}
