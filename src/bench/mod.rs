//! `spadework bench`: the same workloads on every adapter wgpu finds and on the CPU backend, with
//! warm-up, medians, GFLOP/s, peak memory, a table and JSON for comparing machines.
//!
//! `workloads` defines what is measured: the device's peak, SPADE's ops at their shapes,
//! end-to-end forwards and the painter's demo loop. `runner` builds and times them one at a time
//! and reads the memory high-water marks, `report` prints the table and describes a GPU for the
//! JSON document, and `chart` draws the rates as a PNG bar chart.
use serde::Serialize;

mod chart;
mod report;
mod runner;
mod workloads;

pub use chart::plot;
pub use report::{DeviceReport, gpu_info, print_table};
pub use runner::{host_rss_mib, reset_rss_peak, run_device, run_ops};

#[derive(Serialize, Clone, Debug)]
pub struct Row {
    pub adapter: String,
    pub backend: String,
    pub workload: String,
    pub kind: String,
    pub runs: usize,
    pub median_ms: f64,
    pub min_ms: f64,
    /// Executed GFLOP/s: one-hot convs count as the gather they run.
    pub gflops: f64,
    /// GFLOP/s with one-hot convs counted dense, as the SPADE paper counts them (equal to `gflops`
    /// where no one-hot conv runs).
    pub dense_equiv_gflops: f64,
    /// Executed GFLOP/s as a share of the device's own peak, measured in the same run by the tuned
    /// microbenchmark (the `peak` rows: GEMM-shaped work on the best conv tile, or sgemm on the CPU).
    pub pct_of_peak: f64,
    /// Device memory (GPU): the most held at once during the timed runs, what was held before
    /// them (weights, inputs, γ/β caches), and the two largest buffers the runs allocated.
    pub peak_device_mib: f64,
    pub resident_device_mib: f64,
    pub largest2_device_mib: f64,
    /// Host resident-set peak while this workload was built and run (Linux; its own peak where
    /// the kernel lets the mark be reset, else the process's).
    pub host_rss_mib: f64,
    /// Rows with f16 weight storage (`f16w`): the largest and mean |Δ| of the output against the
    /// same work with f32 weights on the same device and input (NaN, i.e. null, elsewhere).
    pub max_err_vs_f32: f64,
    pub mean_err_vs_f32: f64,
}
