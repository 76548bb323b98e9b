//! Per-op timings at SPADE's shapes (the per-op half of `spadework bench`), for quick kernel
//! experiments:
//!
//!   cargo bench --bench ops -- [--backend cpu|gpu|all] [--runs N] [--filter NAME] [--quick]
use spadework::backend::{BackendChoice, Device};

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
    let runs: usize = arg(&args, "--runs")
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(3);
    let filter = arg(&args, "--filter").unwrap_or_default();
    let quick = args.iter().any(|a| a == "--quick");
    let choices = match arg(&args, "--backend").as_deref() {
        Some("gpu") => vec![BackendChoice::Gpu],
        Some("all") => vec![BackendChoice::Cpu, BackendChoice::Gpu],
        _ => vec![BackendChoice::Cpu],
    };
    for choice in choices {
        let d = Device::select(choice, arg(&args, "--adapter").as_deref())?;
        eprintln!("{}", d.describe());
        let rows = spadework::bench::run_ops(&d, &d.describe(), quick, runs, &filter)?;
        spadework::bench::print_table(&rows)?;
    }
    Ok(())
}
