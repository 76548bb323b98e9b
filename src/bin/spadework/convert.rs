//! `spadework convert` (NVlabs checkpoints → model files) and `spadework repack` (smaller
//! weight storage).
use anyhow::{Context, Result, bail};
use spadework::models::SpadeConfig;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args)]
pub struct ConvertArgs {
    /// NVlabs generator checkpoint (latest_net_G.pth), legacy or zip serialization.
    pub input: PathBuf,
    #[arg(short, long)]
    pub output: PathBuf,
    /// Start from a published checkpoint's test options.
    #[arg(long, value_parser = ["ade20k", "coco", "cityscapes"])]
    pub preset: Option<String>,
    #[arg(long)]
    pub label_nc: Option<usize>,
    #[arg(long)]
    pub contain_dontcare_label: bool,
    #[arg(long)]
    pub no_instance: bool,
    #[arg(long)]
    pub crop_size: Option<usize>,
    #[arg(long)]
    pub aspect_ratio: Option<f64>,
    #[arg(long, value_parser = ["normal", "more", "most"])]
    pub num_upsampling_layers: Option<String>,
    #[arg(long)]
    pub use_vae: bool,
    #[arg(long)]
    pub z_dim: Option<usize>,
    #[arg(long = "norm-g")]
    pub norm_g: Option<spadework::models::spade::config::NormG>,
    /// Generator width; inferred from the weights when omitted.
    #[arg(long)]
    pub ngf: Option<usize>,
    /// The density of the texture field the model was trained with (`tools/train_landscape.py
    /// --noise`): its instance-edge channel is then fed seeded noise, not an instance map.
    #[arg(long)]
    pub texture_field: Option<f64>,
    /// The VAE style encoder checkpoint (latest_net_E.pth) to include.
    #[arg(long = "netE")]
    pub net_e: Option<PathBuf>,
    /// Class names and colours: a built-in table (ade20k, cocostuff, cityscapes; the default with
    /// --preset) or a JSON list of {id, name, color:[r,g,b]}.
    #[arg(long)]
    pub classes: Option<String>,
}

#[derive(clap::Args)]
pub struct RepackArgs {
    /// A model file written by `spadework convert` (any storage), or a sentence encoder's
    /// weights with `bert_config` in the header (tools/minilm_reference.py export).
    pub input: PathBuf,
    #[arg(short, long)]
    pub output: PathBuf,
    #[arg(long, value_enum)]
    pub storage: spadework::weights::store::Storage,
}

pub fn convert(a: ConvertArgs) -> Result<()> {
    spadework::io::check_outputs(
        &[
            ("the input", Some(&a.input)),
            ("--netE", a.net_e.as_deref()),
        ],
        &[("-o", Some(&a.output))],
    )?;
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
    cfg.texture_field = a.texture_field;
    let builtin = |n: &str| spadework::models::spade::classes::builtin(n);
    match (&a.classes, &a.preset) {
        (Some(c), _) if builtin(c).is_some() => cfg.classes = builtin(c).unwrap(),
        (Some(p), _) => {
            let s = std::fs::read_to_string(p).with_context(|| {
                format!(
                    "cannot read the class list {p} (built-in tables: {})",
                    spadework::models::spade::classes::BUILTIN.join(", ")
                )
            })?;
            cfg.classes = serde_json::from_str(&s)
                .with_context(|| format!("{p}: expected a JSON list of {{id, name, color}}"))?;
        }
        (None, Some(preset)) => cfg.classes = builtin(preset).unwrap_or_default(),
        (None, None) => {}
    }
    let t = Instant::now();
    let store = spadework::models::spade::convert::convert(&a.input, a.net_e.as_deref(), cfg)?;
    store.save(&a.output)?;
    let n: usize = store
        .names()
        .map(|k| store.shape(k).unwrap_or_default().iter().product::<usize>())
        .sum();
    spadework::note!(
        "wrote {} ({} tensors, {} parameters) in {:.2} s",
        a.output.display(),
        store.len(),
        n,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

pub fn repack(a: RepackArgs) -> Result<()> {
    spadework::io::check_outputs(&[("the input", Some(&a.input))], &[("-o", Some(&a.output))])?;
    let store = spadework::weights::WeightStore::load(&a.input)?;
    if !store.metadata.contains_key("spade_config")
        && !store
            .metadata
            .contains_key(spadework::models::bert::CONFIG_KEY)
    {
        bail!(
            "{}: no spade_config (or bert_config) in the header; convert NVlabs checkpoints with \
             `spadework convert` first",
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
    spadework::note!(
        "wrote {} ({:.1} MiB, from {:.1} MiB); largest weight error {:.2e} of the tensor's max |w| ({})",
        a.output.display(),
        size(&a.output)?,
        size(&a.input)?,
        worst.0,
        worst.1
    );
    Ok(())
}
