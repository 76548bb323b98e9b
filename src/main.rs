//! The `spadework` command line: render, convert, adapters, bench, paint.
use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use spadework::backend::{BackendChoice, Device, WeightStorage};
use spadework::io::{image as img, labels, npy};
use spadework::models::SpadeConfig;
use spadework::render::{Model, ZSource};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "spadework",
    version,
    about = "Semantic image synthesis (SPADE/GauGAN) on WGSL kernels and a fast CPU backend"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Turn a segmentation map into an image.
    Render(RenderArgs),
    /// Convert an NVlabs generator checkpoint (.pth) into a self-describing safetensors file.
    Convert(ConvertArgs),
    /// List the GPU adapters wgpu finds.
    Adapters,
    /// Rewrite a model file with smaller weight storage (f16 or int8 with per-channel scales).
    Repack(RepackArgs),
    /// Benchmark per-op and end-to-end workloads on every adapter and the CPU backend.
    Bench(BenchArgs),
    /// Paint a segmentation map and watch it become an image (a window).
    #[cfg(feature = "paint")]
    Paint(PaintArgs),
}

#[cfg(feature = "paint")]
#[derive(clap::Args)]
struct PaintArgs {
    /// Model file written by `spadework convert` (default: the built-in landscape model).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Start from this map (palette, label-id or RGB PNG) instead of the autosaved painting.
    #[arg(long)]
    map: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    backend: BackendChoice,
    /// Adapter name substring (e.g. "llvmpipe", "nvidia").
    #[arg(long)]
    adapter: Option<String>,
    /// GPU weight storage: f16 halves weight memory and runs the convs faster (each weight
    /// rounded to f16, compute stays f32); f32 is exact.
    #[arg(long, value_enum, default_value_t = WeightStorage::F32)]
    gpu_weights: WeightStorage,
    /// Where the painting is autosaved (default: $SPADEWORK_AUTOSAVE_DIR, else the user's state dir).
    #[arg(long)]
    autosave_dir: Option<PathBuf>,
    /// Style seed (VAE models).
    #[arg(long)]
    seed: Option<u64>,
    /// Size of a new painting, WxH.
    #[arg(long, value_parser = parse_size)]
    size: Option<(usize, usize)>,
    /// Drive the window from a script of input events (JSON; see src/paint/replay.rs).
    #[arg(long)]
    replay: Option<PathBuf>,
}

#[cfg(feature = "paint")]
fn parse_size(s: &str) -> std::result::Result<(usize, usize), String> {
    let (w, h) = s.split_once('x').ok_or("expected WxH, e.g. 512x256")?;
    let p = |v: &str| v.parse::<usize>().ok().filter(|&n| (1..=8192).contains(&n));
    match (p(w), p(h)) {
        (Some(w), Some(h)) => Ok((w, h)),
        _ => Err("expected WxH with sides 1-8192, e.g. 512x256".into()),
    }
}

#[cfg(feature = "paint")]
fn paint(a: PaintArgs) -> Result<()> {
    let store = spadework::render::load_store(a.weights.as_deref())?;
    spadework::paint::app::run(spadework::paint::app::PaintOptions {
        store,
        map: a.map,
        backend: a.backend,
        adapter: a.adapter,
        gpu_weights: a.gpu_weights,
        autosave_dir: a
            .autosave_dir
            .unwrap_or_else(spadework::paint::autosave::Autosave::default_dir),
        replay: a.replay,
        seed: a.seed,
        size: a.size,
    })
}

#[derive(clap::Args)]
struct RenderArgs {
    /// Model file written by `spadework convert` (default: the built-in landscape model).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Label map PNG: 8/16-bit label ids, a palette PNG (indices), or colours of the model's palette.
    #[arg(long)]
    map: PathBuf,
    /// Instance map PNG (8/16-bit ids) for models with an instance-edge channel.
    #[arg(long)]
    instance: Option<PathBuf>,
    /// Style image (VAE models with an encoder): its mean latent becomes z.
    #[arg(long, conflicts_with_all = ["seed", "z"])]
    style: Option<PathBuf>,
    /// Seed for z ~ N(0, I) (VAE models). Default 0.
    #[arg(long, conflicts_with = "z")]
    seed: Option<u64>,
    /// z as a .npy (float32/64, z_dim values).
    #[arg(long)]
    z: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    backend: BackendChoice,
    /// Adapter name substring (e.g. "llvmpipe", "nvidia").
    #[arg(long)]
    adapter: Option<String>,
    /// GPU weight storage: f16 halves weight memory and runs the convs faster (each weight
    /// rounded to f16, compute stays f32); f32 is exact.
    #[arg(long, value_enum, default_value_t = WeightStorage::F32)]
    gpu_weights: WeightStorage,
    /// For models with a class list: remap ids the model does not know to this class (name or id).
    #[arg(long)]
    unknown_as: Option<String>,
    /// Output PNG.
    #[arg(short, long)]
    output: PathBuf,
    /// Also write the float32 NCHW output before quantisation (.npy).
    #[arg(long)]
    raw: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ConvertArgs {
    /// NVlabs generator checkpoint (latest_net_G.pth), legacy or zip serialization.
    input: PathBuf,
    #[arg(short, long)]
    output: PathBuf,
    /// Start from a published checkpoint's test options.
    #[arg(long, value_parser = ["ade20k", "coco", "cityscapes"])]
    preset: Option<String>,
    #[arg(long)]
    label_nc: Option<usize>,
    #[arg(long)]
    contain_dontcare_label: bool,
    #[arg(long)]
    no_instance: bool,
    #[arg(long)]
    crop_size: Option<usize>,
    #[arg(long)]
    aspect_ratio: Option<f64>,
    #[arg(long, value_parser = ["normal", "more", "most"])]
    num_upsampling_layers: Option<String>,
    #[arg(long)]
    use_vae: bool,
    #[arg(long)]
    z_dim: Option<usize>,
    #[arg(long = "norm-g")]
    norm_g: Option<spadework::models::config::NormG>,
    /// Generator width; inferred from the weights when omitted.
    #[arg(long)]
    ngf: Option<usize>,
    /// The VAE style encoder checkpoint (latest_net_E.pth) to include.
    #[arg(long = "netE")]
    net_e: Option<PathBuf>,
    /// Class names and colours: a built-in table (ade20k, cocostuff, cityscapes; the default with
    /// --preset) or a JSON list of {id, name, color:[r,g,b]}.
    #[arg(long)]
    classes: Option<String>,
}

#[derive(clap::Args)]
struct RepackArgs {
    /// A model file written by `spadework convert` (any storage).
    input: PathBuf,
    #[arg(short, long)]
    output: PathBuf,
    #[arg(long, value_enum)]
    storage: spadework::weights::store::Storage,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// `all`, or a substring of "adapter name (Backend)", e.g. "vulkan", "nvidia".
    #[arg(long, default_value = "all")]
    adapter: String,
    #[arg(long, value_parser = ["cpu", "gpu", "all"], default_value = "all")]
    backend: String,
    /// Small shapes and a tiny generator: a CI-friendly smoke run.
    #[arg(long)]
    quick: bool,
    /// Timed runs per workload after the warm-up (full-size GPU generator runs: 1).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Write the results, with adapter info, features and limits, as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write a bar chart of GFLOP/s per workload and device (PNG).
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Only the workloads whose name contains this, or any of several separated by commas
    /// (e.g. "demo", "conv,GEMM"). The peak rows always run.
    #[arg(long)]
    only: Option<String>,
}

fn main() {
    spadework::backend::cpu::keep_freed_memory();
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Render(a) => render(a),
        Cmd::Convert(a) => convert(a),
        Cmd::Adapters => adapters(),
        Cmd::Repack(a) => repack(a),
        Cmd::Bench(a) => bench(a),
        #[cfg(feature = "paint")]
        Cmd::Paint(a) => paint(a),
    };
    if let Err(e) = r {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn render(a: RenderArgs) -> Result<()> {
    let t0 = Instant::now();
    let device = Device::select(a.backend, a.adapter.as_deref())?;
    eprintln!("using {}", device.describe());
    let model = Model::from_store(
        &spadework::render::load_store(a.weights.as_deref())?,
        &device,
        a.gpu_weights,
    )?;
    let t_load = t0.elapsed();
    let map = labels::read_map_png(&a.map)?;
    let inst = a
        .instance
        .as_ref()
        .map(|p| labels::read_map_png(p).map(|m| (m, p.display().to_string())))
        .transpose()?;
    let map_name = a.map.display().to_string();
    if inst.is_none() && !model.cfg.no_instance {
        eprintln!(
            "note: no --instance given; using the label map's class boundaries as instance edges"
        );
    }
    let prepared = labels::prepare(
        &model.cfg,
        &map,
        &map_name,
        inst.as_ref().map(|(m, n)| (m, n.as_str())),
        a.unknown_as.as_deref(),
    )?;
    let z = if let Some(p) = &a.z {
        Some(ZSource::Given(npy::read_f32(p)?.1))
    } else if let Some(s) = &a.style {
        let (mu, _) = model.encode_style(s)?;
        Some(ZSource::Given(mu))
    } else {
        a.seed.map(ZSource::Seed)
    };
    if model.cfg.use_vae && z.is_none() {
        eprintln!("note: VAE model and no --seed/--z/--style: using seed 0");
    } else if !model.cfg.use_vae && (a.seed.is_some() || a.z.is_some()) {
        bail!("this model is not a VAE generator; --seed/--z have no effect");
    }
    let t1 = Instant::now();
    let (out, (h, w)) = model.render(&prepared, z.as_ref())?;
    let t_render = t1.elapsed();
    if let Some(raw) = &a.raw {
        npy::write_f32(raw, &[1, 3, h, w], &out)?;
    }
    img::save_rgb_png(&a.output, &img::to_rgb8(&out, h, w), h, w)?;
    let peak = match &device {
        Device::Gpu(ctx) => format!(
            ", peak device memory {:.1} MiB",
            ctx.peak_bytes() as f64 / 1048576.0
        ),
        Device::Cpu => String::new(),
    };
    eprintln!(
        "rendered {w}x{h} in {:.1} ms (load {:.1} ms{peak}) -> {}",
        t_render.as_secs_f64() * 1e3,
        t_load.as_secs_f64() * 1e3,
        a.output.display()
    );
    Ok(())
}

fn repack(a: RepackArgs) -> Result<()> {
    let store = spadework::weights::WeightStore::load(&a.input)?;
    if !store.metadata.contains_key("spade_config") {
        bail!(
            "{}: no spade_config in the header; convert NVlabs checkpoints with `spadework convert` first",
            a.input.display()
        );
    }
    store.save_as(&a.output, a.storage)?;
    // Report the largest weight change, so the cost of the storage is visible.
    let back = spadework::weights::WeightStore::load(&a.output)?;
    let mut worst = (0f32, String::new());
    for name in store.names() {
        let (d, e) = (store.values(name)?, back.values(name)?);
        let m = d.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
        let err = d
            .iter()
            .zip(e.iter())
            .fold(0f32, |a, (x, y)| a.max((x - y).abs()))
            / m;
        if err > worst.0 {
            worst = (err, name.to_string());
        }
    }
    let size = |p: &PathBuf| std::fs::metadata(p).map(|m| m.len() as f64 / 1048576.0);
    eprintln!(
        "wrote {} ({:.1} MiB, from {:.1} MiB); largest weight error {:.2e} of the tensor's max |w| ({})",
        a.output.display(),
        size(&a.output)?,
        size(&a.input)?,
        worst.0,
        worst.1
    );
    Ok(())
}

fn convert(a: ConvertArgs) -> Result<()> {
    let mut cfg = match &a.preset {
        Some(p) => SpadeConfig::preset(p)?,
        None => SpadeConfig::nvlabs_defaults(),
    };
    if let Some(v) = a.label_nc {
        cfg.label_nc = v;
    }
    cfg.contain_dontcare_label |= a.contain_dontcare_label;
    cfg.no_instance |= a.no_instance;
    if let Some(v) = a.crop_size {
        cfg.crop_size = v;
    }
    if let Some(v) = a.aspect_ratio {
        cfg.aspect_ratio = v;
    }
    if let Some(v) = a.num_upsampling_layers {
        cfg.num_upsampling_layers = v;
    }
    cfg.use_vae |= a.use_vae;
    if let Some(v) = a.z_dim {
        cfg.z_dim = v;
    }
    if let Some(v) = a.norm_g {
        cfg.norm_g = v;
    }
    cfg.ngf = a.ngf.unwrap_or(0);
    let builtin = |n: &str| spadework::models::classes::builtin(n);
    match (&a.classes, &a.preset) {
        (Some(c), _) if builtin(c).is_some() => cfg.classes = builtin(c).unwrap(),
        (Some(p), _) => {
            let s = std::fs::read_to_string(p).with_context(|| {
                format!(
                    "cannot read the class list {p} (built-in tables: {})",
                    spadework::models::classes::BUILTIN.join(", ")
                )
            })?;
            cfg.classes = serde_json::from_str(&s)
                .with_context(|| format!("{p}: expected a JSON list of {{id, name, color}}"))?;
        }
        (None, Some(preset)) => cfg.classes = builtin(preset).unwrap_or_default(),
        (None, None) => {}
    }
    let t = Instant::now();
    let store = spadework::weights::convert::convert(&a.input, a.net_e.as_deref(), cfg)?;
    store.save(&a.output)?;
    let n: usize = store
        .names()
        .map(|k| store.shape(k).unwrap_or_default().iter().product::<usize>())
        .sum();
    eprintln!(
        "wrote {} ({} tensors, {} parameters) in {:.2} s",
        a.output.display(),
        store.len(),
        n,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

fn adapters() -> Result<()> {
    let list = spadework::backend::gpu::enumerate_adapters();
    if list.is_empty() {
        println!("no adapters found");
    }
    for a in list {
        let i = a.get_info();
        println!(
            "{} | {:?} | {:?} | driver {} {}",
            i.name, i.backend, i.device_type, i.driver, i.driver_info
        );
    }
    Ok(())
}

fn bench(a: BenchArgs) -> Result<()> {
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
                Err(e) => eprintln!("skipping {label}: {e:#}"),
            }
        }
        if devices.iter().all(|(_, d, _)| !d.is_gpu()) {
            eprintln!("note: no GPU adapter matched '{}'", a.adapter);
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
    bench::print_table(&rows);
    if let Some(p) = &a.plot {
        bench::plot(&rows, p)?;
        eprintln!("wrote {}", p.display());
    }
    if let Some(p) = &a.json {
        let doc = serde_json::json!({"quick": a.quick, "runs": a.runs, "devices": reports});
        std::fs::write(p, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("cannot write {}", p.display()))?;
        eprintln!("wrote {}", p.display());
    }
    Ok(())
}
