//! NVlabs SPADE checkpoints (`latest_net_G.pth`, optionally `latest_net_E.pth`) → our safetensors.
//!
//! Spectral norm is folded exactly as PyTorch evaluates it in eval mode (SPADE_SPEC §3.2):
//! `weight = weight_orig / (u · (W_mat v))` with the *stored* u and v, no power iteration. Legacy
//! (PyTorch 0.4) layouts without `weight_v` keep their stored `weight`. Batch-norm running stats are
//! kept; `num_batches_tracked` is dropped. The config goes into the `spade_config` header entry.
use super::config::{NormKind, SpadeConfig};
use crate::weights::WeightStore;
use crate::weights::pth::{RawTensor, load_pth};
use anyhow::{Context, Result, bail};
use std::collections::BTreeMap;
use std::path::Path;

/// Reads a `.pth` into name → (shape, f32 values, is floating point). A wrapped checkpoint (a
/// training script's `{"state_dict": …}`, DataParallel's `module.`, or both) is unwrapped, saying
/// so: the prefix is the one in front of the first name ending in one of `anchors` (the tensor
/// every such checkpoint has), and only the tensors under it are kept.
fn read_checkpoint(
    path: &Path,
    anchors: &[&str],
) -> Result<BTreeMap<String, (Vec<usize>, Vec<f32>, bool)>> {
    let entries = load_pth(path)?;
    if entries.is_empty() {
        bail!("{}: the checkpoint holds no tensors", path.display());
    }
    let prefix = entries
        .iter()
        .find_map(|(n, _)| anchors.iter().find_map(|a| n.strip_suffix(a)))
        .filter(|p| p.is_empty() || p.ends_with('.'))
        .unwrap_or("")
        .to_string();
    if !prefix.is_empty() {
        crate::note!(
            "note: {}: a wrapped checkpoint; using the tensors under '{prefix}'",
            path.display()
        );
    }
    let mut out = BTreeMap::new();
    for (name, t) in entries {
        let Some(name) = name.strip_prefix(prefix.as_str()) else {
            continue;
        };
        let name = name.to_string();
        let RawTensor {
            dtype, ref shape, ..
        } = t;
        let is_float = matches!(dtype.name(), "float32" | "float64" | "float16" | "bfloat16");
        let vals = if is_float {
            t.to_f32()
                .with_context(|| format!("{}: tensor '{name}'", path.display()))?
        } else {
            vec![]
        };
        out.insert(name, (shape.clone(), vals, is_float));
    }
    Ok(out)
}

/// Folds spectral norm and drops buffers that inference does not use. Returns folded tensors.
fn fold(
    path: &Path,
    raw: BTreeMap<String, (Vec<usize>, Vec<f32>, bool)>,
    prefix: &str,
    out: &mut WeightStore,
) -> Result<()> {
    let src = path.display().to_string();
    for (name, (shape, vals, is_float)) in &raw {
        if name.ends_with("num_batches_tracked")
            || name.ends_with(".weight_u")
            || name.ends_with(".weight_v")
        {
            continue;
        }
        if let Some(stem) = name.strip_suffix(".weight_orig") {
            let u = raw.get(&format!("{stem}.weight_u"));
            let v = raw.get(&format!("{stem}.weight_v"));
            let folded = match (u, v) {
                (Some((_, u, _)), Some((_, v, _))) => {
                    let rows = shape.first().copied().unwrap_or(0);
                    let cols = if rows == 0 { 0 } else { vals.len() / rows };
                    if u.len() != rows || v.len() != cols {
                        bail!(
                            "{src}: spectral norm of '{stem}': weight_u has {} values and weight_v {}, but weight_orig is {rows}x{cols}",
                            u.len(),
                            v.len()
                        );
                    }
                    // sigma = u · (W v), accumulated in f64 and rounded once (≤ 1 ulp from PyTorch's f32).
                    let sigma: f64 = (0..rows)
                        .map(|r| {
                            u[r] as f64
                                * vals[r * cols..(r + 1) * cols]
                                    .iter()
                                    .zip(v)
                                    .map(|(&w, &x)| w as f64 * x as f64)
                                    .sum::<f64>()
                        })
                        .sum();
                    let sigma = sigma as f32;
                    if !sigma.is_finite() || sigma == 0.0 {
                        bail!(
                            "{src}: spectral norm of '{stem}' has sigma = {sigma}; the checkpoint looks corrupt"
                        );
                    }
                    vals.iter().map(|&w| w / sigma).collect()
                }
                _ => match raw.get(&format!("{stem}.weight")) {
                    // PyTorch 0.4 layout: the stored `weight` already is weight_orig / sigma.
                    Some((s, w, _)) if s == shape => w.clone(),
                    _ => bail!(
                        "{src}: '{name}' has neither weight_u/weight_v nor a stored weight to fold spectral norm"
                    ),
                },
            };
            out.insert(format!("{prefix}{stem}.weight"), shape.clone(), folded);
            continue;
        }
        if let Some(stem) = name.strip_suffix(".weight")
            && raw.contains_key(&format!("{stem}.weight_orig"))
        {
            continue; // legacy duplicate of a spectral-norm weight, handled above
        }
        if !is_float {
            bail!(
                "{src}: tensor '{name}' is not floating point; is this a generator/encoder state dict?"
            );
        }
        out.insert(format!("{prefix}{name}"), shape.clone(), vals.clone());
    }
    Ok(())
}

/// Converts a generator checkpoint (and optionally its encoder) with `cfg` from the flags.
/// `cfg.ngf == 0` means "infer from the weights".
pub fn convert(netg: &Path, nete: Option<&Path>, mut cfg: SpadeConfig) -> Result<WeightStore> {
    let src = netg.display().to_string();
    let raw = read_checkpoint(netg, &["head_0.conv_0.weight", "head_0.conv_0.weight_orig"])?;
    let mut store = WeightStore::new(&src);
    fold(netg, raw, "", &mut store)?;

    // ngf from head_0.conv_0 (16·ngf outputs).
    let head = store.shape("head_0.conv_0.weight").map(|s| s.to_vec());
    let Some(head) = head else {
        bail!(
            "{src}: no 'head_0.conv_0.weight' (nor weight_orig): this is not a SPADE generator checkpoint (expected latest_net_G.pth)"
        );
    };
    let [head_out, _, _, _] = head[..] else {
        bail!("{src}: 'head_0.conv_0.weight' has shape {head:?}, not a 4-dim conv weight")
    };
    let inferred_ngf = head_out / 16;
    if cfg.ngf == 0 {
        cfg.ngf = inferred_ngf;
    } else if cfg.ngf != inferred_ngf {
        bail!(
            "{src}: --ngf {} but head_0.conv_0 has {head_out} outputs (ngf {inferred_ngf})",
            cfg.ngf,
        );
    }
    cfg.validate()?;
    // A class list names every label channel (label_nc), optionally the dontcare channel too
    // (ADE20K's channel 0 "other" makes 151 for label_nc 150).
    if !cfg.classes.is_empty()
        && cfg.classes.len() != cfg.label_nc
        && cfg.classes.len() != cfg.onehot_nc()
    {
        bail!(
            "the class list has {} entries but label_nc is {}: name every label channel, in channel order",
            cfg.classes.len(),
            cfg.label_nc
        );
    }

    // semantic_nc from the first SPADE's shared conv.
    let key = "head_0.norm_0.mlp_shared.0.weight";
    let Some(ms) = store.shape(key).map(|s| s.to_vec()) else {
        bail!("{src}: missing tensor '{key}'")
    };
    let [_, w_snc, kh, kw] = ms[..] else {
        bail!("{src}: '{key}' has shape {ms:?}, not a 4-dim conv weight")
    };
    let flags_snc = cfg.semantic_nc();
    if w_snc != flags_snc {
        let hint = match w_snc as i64 - flags_snc as i64 {
            1 if cfg.no_instance && !cfg.contain_dontcare_label => {
                "add --contain-dontcare-label, or drop --no-instance".to_string()
            }
            1 if cfg.no_instance => {
                "drop --no-instance (the model takes an instance-edge channel)".to_string()
            }
            1 => "add --contain-dontcare-label".to_string(),
            -1 if !cfg.no_instance => {
                "add --no-instance (the model takes no instance-edge channel)".to_string()
            }
            -1 => "drop --contain-dontcare-label".to_string(),
            d => format!("set --label-nc {}", cfg.label_nc as i64 + d),
        };
        bail!(
            "{src}: the weights take semantic_nc = {w_snc} input channels ({key} has shape {ms:?}) but the flags give \
             label_nc {} + dontcare {} + instance {} = {flags_snc}: {hint}",
            cfg.label_nc,
            cfg.contain_dontcare_label as usize,
            (!cfg.no_instance) as usize
        );
    }

    let (norm, ks) = (cfg.norm_g.norm, cfg.norm_g.kernel);
    if kh != ks || kw != ks {
        bail!(
            "{src}: SPADE convs are {kh}x{kw} but --norm-g {} says {ks}x{ks}",
            cfg.norm_g
        );
    }
    let has_bn = store.contains("head_0.norm_0.param_free_norm.running_mean");
    match (norm, has_bn) {
        (NormKind::Batch, false) => bail!(
            "{src}: --norm-g {} needs batch-norm running stats but the checkpoint has none; did you mean an instance-norm config (e.g. spectralspadeinstance3x3)?",
            cfg.norm_g
        ),
        (NormKind::Instance, true) => bail!(
            "{src}: the checkpoint has batch-norm running stats but --norm-g {} is instance norm",
            cfg.norm_g
        ),
        _ => {}
    }
    let has_up4 = store.contains("up_4.conv_0.weight");
    if has_up4 != (cfg.num_upsampling_layers == "most") {
        bail!(
            "{src}: the checkpoint {} an up_4 block but --num-upsampling-layers is {}",
            if has_up4 { "has" } else { "has no" },
            cfg.num_upsampling_layers
        );
    }
    match store.shape("fc.weight").map(|s| s.len()) {
        Some(2) if !cfg.use_vae => {
            bail!("{src}: fc is a Linear layer (a VAE generator): add --use-vae")
        }
        Some(4) if cfg.use_vae => {
            bail!("{src}: fc is a conv (not a VAE generator): drop --use-vae")
        }
        None => bail!("{src}: missing tensor 'fc.weight'"),
        _ => {}
    }
    if cfg.use_vae {
        let (sh, sw) = cfg.first_size()?;
        let want = [16 * cfg.ngf * sh * sw, cfg.z_dim];
        let got = store.shape("fc.weight").unwrap().to_vec();
        if got != want {
            bail!(
                "{src}: fc.weight has shape {got:?} but --crop-size {} --aspect-ratio {} --z-dim {} give {want:?}",
                cfg.crop_size,
                cfg.aspect_ratio,
                cfg.z_dim
            );
        }
    }
    if let Some(e) = nete {
        let raw = read_checkpoint(e, &["fc_mu.weight"])?;
        fold(e, raw, "netE.", &mut store)?;
        if !store.contains("netE.fc_mu.weight") {
            bail!(
                "{}: no 'fc_mu.weight': this is not a SPADE ConvEncoder checkpoint (expected latest_net_E.pth)",
                e.display()
            );
        }
        cfg.has_encoder = true;
        cfg.encoder_layers = Some(
            (1..)
                .take_while(|k| store.contains(&format!("netE.layer{k}.0.weight")))
                .count(),
        );
    }
    // The model loader checks every expected tensor and shape, and rejects leftovers.
    store
        .metadata
        .insert("spade_config".into(), serde_json::to_string(&cfg)?);
    crate::models::spade::check_weights(&store, &cfg)?;
    Ok(store)
}
