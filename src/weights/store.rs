//! Named f32 tensors loaded from (or saved to) safetensors, with the model config in the header.
//! Every lookup names the tensor, the file and the expected shape when something is off.
use anyhow::{Context, Result, anyhow, bail};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

pub struct WeightStore {
    /// Where the tensors came from, for error messages.
    pub source: String,
    pub tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    pub metadata: HashMap<String, String>,
}

impl WeightStore {
    pub fn new(source: impl Into<String>) -> WeightStore {
        WeightStore {
            source: source.into(),
            tensors: BTreeMap::new(),
            metadata: HashMap::new(),
        }
    }

    pub fn load(path: &Path) -> Result<WeightStore> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read weights file {}", path.display()))?;
        Self::from_bytes(&bytes, &path.display().to_string())
    }

    /// Parses safetensors bytes; f16/bf16/f64 tensors are converted to f32.
    pub fn from_bytes(bytes: &[u8], source: &str) -> Result<WeightStore> {
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| anyhow!("{source}: not a valid safetensors file: {e}"))?;
        let (_, meta) = SafeTensors::read_metadata(bytes)
            .map_err(|e| anyhow!("{source}: bad safetensors header: {e}"))?;
        let mut store = WeightStore::new(source);
        store.metadata = meta.metadata().clone().unwrap_or_default();
        for (name, view) in st.tensors() {
            let data = view.data();
            let vals: Vec<f32> = match view.dtype() {
                Dtype::F32 => data
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                Dtype::F16 => data
                    .chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
                Dtype::BF16 => data
                    .chunks_exact(2)
                    .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
                Dtype::F64 => data
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
                    .collect(),
                other => bail!(
                    "{source}: tensor '{name}' has dtype {other:?}; only floating-point weights are supported"
                ),
            };
            store.tensors.insert(name, (view.shape().to_vec(), vals));
        }
        Ok(store)
    }

    pub fn insert(&mut self, name: impl Into<String>, shape: Vec<usize>, data: Vec<f32>) {
        self.tensors.insert(name.into(), (shape, data));
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|(s, _)| &s[..])
    }

    /// The tensor `name`, which must have exactly `shape`.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<&[f32]> {
        match self.tensors.get(name) {
            None => bail!(
                "{}: missing tensor '{name}' (expected shape {shape:?})",
                self.source
            ),
            Some((s, _)) if s != shape => {
                bail!(
                    "{}: tensor '{name}' has shape {s:?}, expected {shape:?}",
                    self.source
                )
            }
            Some((_, d)) => Ok(d),
        }
    }

    /// Writes f32 safetensors with `metadata` in the header.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = self
            .tensors
            .iter()
            .map(|(n, (s, d))| {
                (
                    n.clone(),
                    s.clone(),
                    d.iter().flat_map(|v| v.to_le_bytes()).collect(),
                )
            })
            .collect();
        let views: Vec<(String, TensorView)> = bytes
            .iter()
            .map(|(n, s, b)| {
                Ok((
                    n.clone(),
                    TensorView::new(Dtype::F32, s.clone(), b).map_err(|e| anyhow!("{n}: {e}"))?,
                ))
            })
            .collect::<Result<_>>()?;
        let meta = if self.metadata.is_empty() {
            None
        } else {
            Some(self.metadata.clone())
        };
        safetensors::serialize_to_file(views, meta, path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }
}
