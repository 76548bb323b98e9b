//! `spadework bench` and `spadework adapters`.
use anyhow::{Context, Result};
use spadework::backend::Device;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// `all`, or a substring of "adapter name (Backend)", e.g. "vulkan", "nvidia".
    #[arg(long, default_value = "all")]
    pub adapter: String,
    #[arg(long, value_parser = ["cpu", "gpu", "all"], default_value = "all")]
    pub backend: String,
    /// Small shapes and a tiny generator: a CI-friendly smoke run.
    #[arg(long)]
    pub quick: bool,
    /// Timed runs per workload after the warm-up (full-size GPU generator runs: 1).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Write the results, with adapter info, features and limits, as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write a bar chart of GFLOP/s per workload and device (PNG).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Only the workloads whose name contains this, or any of several separated by commas
    /// (e.g. "demo", "conv,GEMM"). The peak rows always run.
    #[arg(long)]
    pub only: Option<String>,
}

pub fn bench(a: BenchArgs) -> Result<()> {
    use spadework::backend::gpu::{GpuContext, adapter_label, enumerate_adapters};
    use spadework::bench;
    let mut devices: Vec<(String, Device, serde_json::Value)> = Vec::new();
    if a.backend != "gpu" {
        let d = Device::Cpu;
        let info = serde_json::json!({"description": d.describe(), "threads": rayon::current_num_threads()});
        devices.push(("cpu".into(), d, info));
    }
    if a.backend != "cpu" {
        for ad in enumerate_adapters() {
            let label = adapter_label(&ad.get_info());
            if a.adapter != "all" && !label.to_lowercase().contains(&a.adapter.to_lowercase()) {
                continue;
            }
            match GpuContext::from_adapter(ad) {
                Ok(ctx) => {
                    let ctx = std::sync::Arc::new(ctx);
                    let info = bench::gpu_info(&ctx);
                    devices.push((label, Device::Gpu(ctx), info));
                }
                Err(e) => spadework::note!("skipping {label}: {e:#}"),
            }
        }
        if devices.iter().all(|(_, d, _)| !d.is_gpu()) {
            spadework::note!("note: no GPU adapter matched '{}'", a.adapter);
        }
    }
    let pb = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .unwrap(),
    );
    let mut reports = Vec::new();
    let mut rows = Vec::new();
    for (label, d, info) in &devices {
        let r = bench::run_device(d, label, a.quick, a.runs.max(1), a.only.as_deref(), &pb)?;
        rows.extend(r.iter().cloned());
        reports.push(bench::DeviceReport {
            adapter: label.clone(),
            backend: if d.is_gpu() { "gpu" } else { "cpu" }.into(),
            info: info.clone(),
            rows: r,
        });
    }
    pb.finish_and_clear();
    bench::print_table(&rows)?;
    if let Some(p) = &a.plot {
        bench::plot(&rows, p)?;
        spadework::note!("wrote {}", p.display());
    }
    if let Some(p) = &a.json {
        let doc = serde_json::json!({"quick": a.quick, "runs": a.runs, "devices": reports});
        std::fs::write(p, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("cannot write {}", p.display()))?;
        spadework::note!("wrote {}", p.display());
    }
    Ok(())
}

pub fn adapters() -> Result<()> {
    use std::io::Write;
    let list = spadework::backend::gpu::enumerate_adapters();
    let mut out = std::io::stdout().lock();
    if list.is_empty() {
        writeln!(out, "no adapters found").context("cannot write to stdout")?;
    }
    for a in list {
        let i = a.get_info();
        writeln!(
            out,
            "{} | {:?} | {:?} | driver {} {}",
            i.name, i.backend, i.device_type, i.driver, i.driver_info
        )
        .context("cannot write to stdout")?;
    }
    Ok(())
}
