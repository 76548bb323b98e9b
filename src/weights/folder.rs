//! The weight files of a component folder in the Hugging Face layout (a diffusers pipeline's
//! `unet/`, `vae/`, `text_encoder/`): `diffusion_pytorch_model.safetensors` or
//! `model.safetensors`, their `.fp16` variants (`diffusion_pytorch_model.fp16.safetensors`), and
//! sharded checkpoints (`*.safetensors.index.json`, `*.safetensors.index.fp16.json`).
use super::WeightStore;
use anyhow::{Context, Result, bail};
use std::path::Path;

/// The file stems a component's weights go by.
const STEMS: [&str; 2] = ["diffusion_pytorch_model", "model"];

/// The weights of the component folder `dir`. With `variant` (e.g. `fp16`) the variant's files
/// are taken where the folder has them, else the plain ones.
pub fn component_weights(dir: &Path, variant: Option<&str>) -> Result<WeightStore> {
    let mut tried = Vec::new();
    let variants: Vec<Option<&str>> = match variant {
        Some(v) => vec![Some(v), None],
        None => vec![None],
    };
    for v in variants {
        for stem in STEMS {
            let (single, index) = match v {
                Some(v) => (
                    format!("{stem}.{v}.safetensors"),
                    format!("{stem}.safetensors.index.{v}.json"),
                ),
                None => (
                    format!("{stem}.safetensors"),
                    format!("{stem}.safetensors.index.json"),
                ),
            };
            let p = dir.join(&single);
            if p.exists() {
                return WeightStore::load(&p);
            }
            let p = dir.join(&index);
            if p.exists() {
                return WeightStore::load_sharded(&p);
            }
            tried.push(single);
            tried.push(index);
        }
    }
    let found: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the folder {}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let pytorch_only = found.iter().any(|f| f.ends_with(".bin"));
    bail!(
        "{}: no safetensors weights (looked for {}); the folder holds [{}]{}",
        dir.display(),
        tried.join(", "),
        found.join(", "),
        if pytorch_only {
            "; .bin (PyTorch pickle) weights are not read here: convert them to safetensors"
        } else {
            ""
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        let d =
            std::env::temp_dir().join(format!("spadework-folder-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn store(names: &[(&str, f32)]) -> WeightStore {
        let mut s = WeightStore::new("test");
        for (n, v) in names {
            s.insert(*n, vec![2], vec![*v; 2]);
        }
        s
    }

    #[test]
    fn variants_shards_and_missing_weights() {
        let d = tmp("a");
        store(&[("w", 1.0)])
            .save(&d.join("diffusion_pytorch_model.safetensors"))
            .unwrap();
        store(&[("w", 2.0)])
            .save(&d.join("diffusion_pytorch_model.fp16.safetensors"))
            .unwrap();
        let plain = component_weights(&d, None).unwrap();
        assert_eq!(&plain.get("w", &[2]).unwrap()[..], &[1.0, 1.0]);
        let fp16 = component_weights(&d, Some("fp16")).unwrap();
        assert_eq!(&fp16.get("w", &[2]).unwrap()[..], &[2.0, 2.0]);
        // A variant the folder lacks falls back to the plain files.
        let bf16 = component_weights(&d, Some("bf16")).unwrap();
        assert_eq!(&bf16.get("w", &[2]).unwrap()[..], &[1.0, 1.0]);

        // Two shards and their index.
        let s = tmp("sharded");
        store(&[("a", 1.0), ("b", 2.0)])
            .save(&s.join("model-00001-of-00002.safetensors"))
            .unwrap();
        store(&[("c", 3.0)])
            .save(&s.join("model-00002-of-00002.safetensors"))
            .unwrap();
        let index = |extra: &str| {
            format!(
                r#"{{"metadata": {{}}, "weight_map": {{"a": "model-00001-of-00002.safetensors",
                "b": "model-00001-of-00002.safetensors", "c": "model-00002-of-00002.safetensors"{extra}}}}}"#
            )
        };
        std::fs::write(s.join("model.safetensors.index.json"), index("")).unwrap();
        let all = component_weights(&s, None).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(&all.get("c", &[2]).unwrap()[..], &[3.0, 3.0]);
        // An index naming a tensor its shard lacks names both.
        std::fs::write(
            s.join("model.safetensors.index.json"),
            index(r#", "d": "model-00002-of-00002.safetensors""#),
        )
        .unwrap();
        let e = component_weights(&s, None).err().unwrap().to_string();
        assert!(
            e.contains("'d'") && e.contains("model-00002-of-00002"),
            "{e}"
        );
        // The same tensor in two shards is refused.
        store(&[("a", 9.0)])
            .save(&s.join("model-00002-of-00002.safetensors"))
            .unwrap();
        std::fs::write(s.join("model.safetensors.index.json"), index("")).unwrap();
        let e = component_weights(&s, None).err().unwrap().to_string();
        assert!(e.contains("tensor 'a' is in both"), "{e}");

        // No weights: say what was looked for and what is there.
        let e = tmp("empty");
        std::fs::write(e.join("diffusion_pytorch_model.bin"), b"x").unwrap();
        let msg = component_weights(&e, None).err().unwrap().to_string();
        assert!(
            msg.contains("diffusion_pytorch_model.safetensors")
                && msg.contains(".bin (PyTorch pickle)"),
            "{msg}"
        );
        for p in [d, s, e] {
            std::fs::remove_dir_all(p).unwrap();
        }
    }
}
