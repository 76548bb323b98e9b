//! The bench report: the text table of rows, and the JSON document of each device with the
//! description of its GPU.
use super::Row;
use crate::backend::GpuContext;
use serde::Serialize;
use std::sync::Arc;

#[derive(Serialize)]
pub struct DeviceReport {
    pub adapter: String,
    pub backend: String,
    pub info: serde_json::Value,
    pub rows: Vec<Row>,
}

pub fn gpu_info(ctx: &Arc<GpuContext>) -> serde_json::Value {
    let t = crate::ops::conv2d::gpu_tile(ctx);
    let tile = format!("{}x{}", t.0, t.1);
    let i = &ctx.info;
    let l = &ctx.limits;
    serde_json::json!({
        "name": i.name, "backend": format!("{:?}", i.backend), "device_type": format!("{:?}", i.device_type),
        "driver": i.driver, "driver_info": i.driver_info, "vendor": i.vendor, "device": i.device,
        "features": format!("{:?}", ctx.device.features()),
        "conv_tile": tile,
        "limits": {
            "max_storage_buffer_binding_size": l.max_storage_buffer_binding_size,
            "max_buffer_size": l.max_buffer_size,
            "max_compute_workgroup_storage_size": l.max_compute_workgroup_storage_size,
            "max_compute_invocations_per_workgroup": l.max_compute_invocations_per_workgroup,
            "max_compute_workgroups_per_dimension": l.max_compute_workgroups_per_dimension,
        }
    })
}

/// Writes the table to stdout (an error when stdout is closed or full, not a panic).
pub fn print_table(rows: &[Row]) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<34} {:<4} {:<44} {:>10} {:>10} {:>9} {:>9} {:>7} {:>9} {:>9} {:>9} {:>8} {:>10}",
        "adapter",
        "be",
        "workload",
        "median ms",
        "min ms",
        "GFLOP/s",
        "dense-eq",
        "% peak",
        "dev MiB",
        "resident",
        "2 largest",
        "RSS MiB",
        "err vs f32"
    )
    .context("cannot write to stdout")?;
    for r in rows {
        let name: String = r.adapter.chars().take(34).collect();
        writeln!(
            out,
            "{:<34} {:<4} {:<44} {:>10.2} {:>10.2} {:>9.1} {:>9.1} {:>7.0} {:>9.0} {:>9.0} {:>9.0} {:>8.0} {:>10}",
            name,
            r.backend,
            r.workload,
            r.median_ms,
            r.min_ms,
            r.gflops,
            r.dense_equiv_gflops,
            r.pct_of_peak,
            r.peak_device_mib,
            r.resident_device_mib,
            r.largest2_device_mib,
            r.host_rss_mib,
            if r.max_err_vs_f32.is_nan() {
                "-".to_string()
            } else {
                format!("{:.1e}", r.max_err_vs_f32)
            }
        )
        .context("cannot write to stdout")?;
    }
    Ok(())
}
