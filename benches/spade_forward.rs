//! Full SPADE generator forward, end to end (map → tanh output on the host), on the CPU backend
//! and the GPU adapter. A bench binary rather than criterion: one lavapipe forward of ade20k
//! takes minutes, far beyond criterion's minimum sample count.
//!
//!   cargo bench --bench spade_forward -- [--preset ade20k] [--backend cpu|gpu|all] [--iters 5]
//!                                         [--weights W.safetensors --map M.png [--instance I.png]] [--json]
//!
//! Prints median/min ms, GFLOP/s (SPADE_SPEC §6 MAC counting), and peak memory: host RSS high-water
//! mark (VmHWM) and, on the GPU, peak device buffer bytes.
use spadework::backend::WeightStorage;
use spadework::backend::{BackendChoice, Device};
use spadework::models::SpadeConfig;
use spadework::models::spade::input::PreparedMap;
use spadework::pipelines::spade::SpadePipeline;
use spadework::weights::WeightStore;
use std::time::Instant;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() -> anyhow::Result<()> {
    spadework::backend::cpu::keep_freed_memory();
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--test" || a == "--list") {
        return Ok(()); // `cargo test --benches` probes; nothing to run
    }
    let preset = arg(&args, "--preset").unwrap_or("ade20k".into());
    let backend = arg(&args, "--backend").unwrap_or("cpu".into());
    let iters: usize = arg(&args, "--iters")
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(5);
    let json = args.iter().any(|a| a == "--json");
    let (store, cfg) = match arg(&args, "--weights") {
        Some(w) => {
            let s = WeightStore::load(w.as_ref())?;
            let cfg: SpadeConfig = serde_json::from_str(&s.metadata["spade_config"])?;
            (s, cfg)
        }
        None => {
            let cfg = SpadeConfig::preset(&preset)?;
            (SpadePipeline::random_store(&cfg, 1)?, cfg)
        }
    };
    let gflop = spadework::models::spade::generator_flops(&cfg)? / 1e9;
    let (h, w) = cfg.map_size();
    let map = match arg(&args, "--map") {
        Some(m) => {
            let inst = arg(&args, "--instance")
                .map(|p| spadework::io::map_png::read_map_png(p.as_ref()))
                .transpose()?;
            let read = spadework::io::map_png::read_map_png(m.as_ref())?;
            spadework::models::spade::input::prepare(
                &cfg,
                &read,
                &m,
                inst.as_ref().map(|i| (i, "instance")),
                None,
            )?
        }
        None => {
            // Blocky synthetic layout over all classes.
            let labels = (0..h * w)
                .map(|i| (((i / w) / 16 * 7 + (i % w) / 16 * 3) % cfg.onehot_nc()) as u32)
                .collect();
            PreparedMap {
                h,
                w,
                instance: (!cfg.no_instance)
                    .then(|| (0..h * w).map(|i| ((i % w) / 40) as u32).collect()),
                labels,
            }
        }
    };
    let choices: Vec<BackendChoice> = match backend.as_str() {
        "cpu" => vec![BackendChoice::Cpu],
        "gpu" => vec![BackendChoice::Gpu],
        _ => vec![BackendChoice::Cpu, BackendChoice::Gpu],
    };
    // Like `spadework render`, the last model built lets the weight store go before it runs, so
    // peak RSS is what a user's render costs, not the store and the model side by side.
    let mut store = Some(store);
    let last = choices.len() - 1;
    for (i, choice) in choices.into_iter().enumerate() {
        let device = Device::select(choice, arg(&args, "--adapter").as_deref())?;
        eprintln!("{preset}: {}", device.describe());
        let model = SpadePipeline::from_store(
            store.as_ref().expect("kept until the last model"),
            &device,
            WeightStorage::F32,
        )?;
        if i == last {
            drop(store.take());
        }
        let t = Instant::now();
        model.render(&map, None)?; // warm-up (pipeline compilation on the GPU)
        let warm = t.elapsed().as_secs_f64() * 1e3;
        let runs = if device.is_gpu() {
            iters.min(
                arg(&args, "--gpu-iters")
                    .map(|s| s.parse().unwrap())
                    .unwrap_or(1),
            )
        } else {
            iters
        };
        let mut ms: Vec<f64> = (0..runs)
            .map(|_| {
                let t = Instant::now();
                model.render(&map, None).unwrap();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let median = ms[ms.len() / 2];
        let peak_dev = match &device {
            Device::Gpu(ctx) => ctx.peak_bytes() as f64 / 1048576.0,
            Device::Cpu => 0.0,
        };
        let backend_name = if device.is_gpu() { "gpu" } else { "cpu" };
        if json {
            println!(
                "{{\"preset\":\"{preset}\",\"backend\":\"{backend_name}\",\"device\":{:?},\"warmup_ms\":{warm:.1},\"median_ms\":{median:.1},\"min_ms\":{:.1},\"runs\":{runs},\"gflops\":{:.2},\"peak_rss_mib\":{:.1},\"peak_device_mib\":{peak_dev:.1}}}",
                device.describe(),
                ms[0],
                gflop / (median / 1e3),
                spadework::bench::host_rss_mib()
            );
        } else {
            println!(
                "{preset:<11} {backend_name:<4} median {median:9.1} ms  min {:9.1} ms  ({runs} runs, warm-up {warm:.0} ms)  {:6.1} GFLOP/s  peak RSS {:.0} MiB  peak device {peak_dev:.0} MiB",
                ms[0],
                gflop / (median / 1e3),
                spadework::bench::host_rss_mib()
            );
        }
    }
    Ok(())
}
