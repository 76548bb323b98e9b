//! Running workloads: each is built with the previous one's memory released, warmed up, then
//! timed with a device sync after every run; the device memory and host resident-set high-water
//! marks of the runs go into its [`Row`].
use super::Row;
use super::workloads::{Work, e2e_workloads, op_workloads, peak_workloads};
use crate::backend::Device;
use anyhow::Result;
use std::time::Instant;

/// Runs every workload on `d`: one warm-up (pipeline compilation), then `runs` timed runs, each
/// followed by a device sync.
pub fn run_device(
    d: &Device,
    adapter: &str,
    quick: bool,
    runs: usize,
    only: Option<&str>,
    progress: &indicatif::ProgressBar,
) -> Result<Vec<Row>> {
    let mut works = op_workloads(d, quick);
    works.extend(e2e_workloads(d, quick)?);
    // Last, on a warm machine (first in the list it measured 20 % low on the CPU).
    works.extend(peak_workloads(d, quick));
    if let Some(f) = only {
        works.retain(|w| w.kind == "peak" || f.split(',').any(|p| w.name.contains(p.trim())));
    }
    progress.inc_length(works.len() as u64);
    run_works(d, adapter, quick, runs, works, progress)
}

fn run_works(
    d: &Device,
    adapter: &str,
    quick: bool,
    runs: usize,
    works: Vec<Work>,
    progress: &indicatif::ProgressBar,
) -> Result<Vec<Row>> {
    let backend = if d.is_gpu() { "gpu" } else { "cpu" };
    let mut rows = Vec::new();
    for wk in works {
        progress.set_message(format!("{adapter}: {}", wk.name));
        // Each workload's memory is its own: the previous one is dropped, the pool emptied and
        // the high-water marks reset before it is built.
        if let Device::Gpu(ctx) = d {
            ctx.sync()?;
            ctx.trim_pool();
            ctx.reset_mem_stats();
        }
        crate::backend::cpu::release_freed_memory();
        reset_rss_peak();
        let mut ready = (wk.build)()?;
        // What the build freed (f16 rows also build and run an f32 twin for their error) leaves
        // the pool: the warm-up below starts from the workload's own weights and inputs.
        if let Device::Gpu(ctx) = d {
            ctx.sync()?;
            ctx.trim_pool();
            ctx.reset_mem_stats();
        }
        // The peak microbenchmark gets extra warm-up and runs, and reports its best run.
        let peak = wk.kind == "peak";
        for _ in 0..if peak { 3 } else { 1 } {
            (ready.run)()?;
            d.sync()?;
        }
        // Held after the warm-up: weights, inputs and caches (γ/β); the timed runs' peak above
        // it is their working set.
        let resident = match d {
            Device::Gpu(ctx) => ctx.mem_stats().live,
            Device::Cpu => 0,
        };
        if let Device::Gpu(ctx) = d {
            ctx.reset_mem_stats();
        }
        let n = if wk.kind == "e2e" && d.is_gpu() && !quick {
            1
        } else if peak {
            runs.max(5)
        } else {
            runs
        };
        let mut ms = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            (ready.run)()?;
            d.sync()?;
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        ms.sort_by(|a, b| a.total_cmp(b));
        let median = ms[ms.len() / 2];
        // The rate of a peak row is its best run; of every other row, its median.
        let rate_ms = if peak { ms[0] } else { median };
        let (peak_dev, largest) = match d {
            Device::Gpu(ctx) => {
                let m = ctx.mem_stats();
                (m.peak, m.largest[0] + m.largest[1])
            }
            Device::Cpu => (0, 0),
        };
        let mib = |b: u64| b as f64 / 1048576.0;
        rows.push(Row {
            adapter: adapter.to_string(),
            backend: backend.into(),
            workload: wk.name,
            kind: wk.kind.into(),
            runs: n,
            median_ms: median,
            min_ms: ms[0],
            gflops: ready.flop / rate_ms / 1e6,
            dense_equiv_gflops: ready.dense_flop.unwrap_or(ready.flop) / rate_ms / 1e6,
            pct_of_peak: f64::NAN,
            peak_device_mib: mib(peak_dev),
            resident_device_mib: mib(resident),
            largest2_device_mib: mib(largest),
            host_rss_mib: host_rss_mib(),
            max_err_vs_f32: ready.err_vs_f32.map_or(f64::NAN, |e| e.0),
            mean_err_vs_f32: ready.err_vs_f32.map_or(f64::NAN, |e| e.1),
        });
        drop(ready);
        progress.inc(1);
    }
    let peak = rows
        .iter()
        .filter(|r| r.kind == "peak")
        .map(|r| r.gflops)
        .fold(0.0, f64::max);
    for r in &mut rows {
        r.pct_of_peak = if peak > 0.0 {
            100.0 * r.gflops / peak
        } else {
            f64::NAN
        };
    }
    Ok(rows)
}

/// Only the per-op workloads whose name contains `filter` (for kernel experiments).
pub fn run_ops(
    d: &Device,
    adapter: &str,
    quick: bool,
    runs: usize,
    filter: &str,
) -> Result<Vec<Row>> {
    let mut works: Vec<Work> = op_workloads(d, quick)
        .into_iter()
        .filter(|w| w.name.contains(filter))
        .collect();
    works.extend(peak_workloads(d, quick));
    run_works(
        d,
        adapter,
        quick,
        runs,
        works,
        &indicatif::ProgressBar::hidden(),
    )
}

/// Resets the process's resident-set high-water mark (Linux ≥ 4.0), so `host_rss_mib` reports the
/// next workload's own peak; false where that is not possible.
pub fn reset_rss_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Host resident-set high-water mark (Linux), MiB.
pub fn host_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}
