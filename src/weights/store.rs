//! Named f32 tensors loaded from (or saved to) safetensors, with the model config in the header.
//! Every lookup names the tensor, the file and the expected shape when something is off.
use anyhow::{Context, Result, anyhow, bail};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// How [`WeightStore::save_as`] stores the weights (loading always yields f32).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Storage {
    F32,
    /// Weight tensors (2+ dims) as f16; biases and norm statistics stay f32.
    F16,
    /// Weight tensors (2+ dims, ≥ 1024 values) as int8 with one f32 scale per output channel
    /// (dim 0, symmetric: scale = max|w| / 127), stored beside them as `<name>.q8_scale`.
    Int8,
}

/// Suffix of the per-output-channel scales of int8 tensors.
pub const Q8_SCALE: &str = ".q8_scale";

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
        let mut int8: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
        for (name, view) in st.tensors() {
            let data = view.data();
            let vals: Vec<f32> = match view.dtype() {
                Dtype::I8 => {
                    let q = data.iter().map(|&b| b as i8 as f32).collect();
                    int8.push((name, view.shape().to_vec(), q));
                    continue;
                }
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
        // int8 tensors: value × the scale of their output channel.
        for (name, shape, mut q) in int8 {
            let sname = format!("{name}{Q8_SCALE}");
            let rows = shape.first().copied().unwrap_or(1).max(1);
            let Some((_, scale)) = store.tensors.remove(&sname) else {
                bail!("{source}: int8 tensor '{name}' has no '{sname}' scales");
            };
            if scale.len() != rows {
                bail!(
                    "{source}: '{sname}' has {} values, expected {rows} (dim 0 of '{name}')",
                    scale.len()
                );
            }
            let per = q.len() / rows;
            for (r, chunk) in q.chunks_mut(per.max(1)).enumerate() {
                chunk.iter_mut().for_each(|v| *v *= scale[r]);
            }
            store.tensors.insert(name, (shape, q));
        }
        if let Some(orphan) = store.tensors.keys().find(|k| k.ends_with(Q8_SCALE)) {
            bail!("{source}: '{orphan}' scales no int8 tensor");
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
        self.save_as(path, Storage::F32)
    }

    /// Writes safetensors in `storage` (see [`Storage`]); the header records it.
    pub fn save_as(&self, path: &Path, storage: Storage) -> Result<()> {
        let f32_bytes = |d: &[f32]| d.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>();
        let mut bytes: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
        for (n, (s, d)) in &self.tensors {
            let weight = s.len() >= 2;
            match storage {
                Storage::F16 if weight => bytes.push((
                    n.clone(),
                    Dtype::F16,
                    s.clone(),
                    d.iter()
                        .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                        .collect(),
                )),
                Storage::Int8 if weight && d.len() >= 1024 => {
                    let rows = s[0].max(1);
                    let per = d.len() / rows;
                    let mut scales = Vec::with_capacity(rows);
                    let mut q = Vec::with_capacity(d.len());
                    for chunk in d.chunks(per.max(1)) {
                        let m = chunk.iter().fold(0f32, |a, v| a.max(v.abs()));
                        let scale = if m > 0.0 { m / 127.0 } else { 1.0 };
                        scales.push(scale);
                        q.extend(
                            chunk
                                .iter()
                                .map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8 as u8),
                        );
                    }
                    bytes.push((n.clone(), Dtype::I8, s.clone(), q));
                    bytes.push((
                        format!("{n}{Q8_SCALE}"),
                        Dtype::F32,
                        vec![rows],
                        f32_bytes(&scales),
                    ));
                }
                _ => bytes.push((n.clone(), Dtype::F32, s.clone(), f32_bytes(d))),
            }
        }
        let views: Vec<(String, TensorView)> = bytes
            .iter()
            .map(|(n, t, s, b)| {
                Ok((
                    n.clone(),
                    TensorView::new(*t, s.clone(), b).map_err(|e| anyhow!("{n}: {e}"))?,
                ))
            })
            .collect::<Result<_>>()?;
        let mut metadata = self.metadata.clone();
        metadata.insert(
            "weights_storage".into(),
            match storage {
                Storage::F32 => "f32",
                Storage::F16 => "f16 weights, f32 biases and statistics",
                Storage::Int8 => "int8 weights with per-output-channel f32 scales (.q8_scale)",
            }
            .into(),
        );
        let meta = Some(metadata);
        safetensors::serialize_to_file(views, meta, path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_and_int8_storage_round_trip_within_their_precision() {
        let mut s = WeightStore::new("test");
        let w: Vec<f32> = (0..8 * 3 * 3 * 20)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .map(|v| v * (1.0 + (v * 10.0).floor().abs()))
            .collect();
        s.insert("conv.weight", vec![8, 20, 3, 3], w.clone());
        s.insert(
            "conv.bias",
            vec![8],
            (0..8).map(|i| i as f32 * 0.1).collect(),
        );
        s.metadata.insert("k".into(), "v".into());
        let dir = std::env::temp_dir().join(format!("spadework-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for storage in [Storage::F32, Storage::F16, Storage::Int8] {
            let p = dir.join(format!("{storage:?}.safetensors"));
            s.save_as(&p, storage).unwrap();
            let back = WeightStore::load(&p).unwrap();
            assert_eq!(back.metadata["k"], "v");
            assert!(back.metadata.contains_key("weights_storage"));
            assert_eq!(back.tensors.len(), 2, "{storage:?}: scales folded away");
            assert_eq!(
                back.get("conv.bias", &[8]).unwrap(),
                s.get("conv.bias", &[8]).unwrap()
            );
            let b = back.get("conv.weight", &[8, 20, 3, 3]).unwrap();
            for (row, (x, y)) in w.chunks(180).zip(b.chunks(180)).enumerate() {
                let m = row_max(x);
                let tol = match storage {
                    Storage::F32 => 0.0,
                    Storage::F16 => m / 1024.0,
                    Storage::Int8 => m / 127.0 / 2.0 + 1e-6,
                };
                for (a, b) in x.iter().zip(y) {
                    assert!((a - b).abs() <= tol, "{storage:?} row {row}: {a} vs {b}");
                }
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn row_max(v: &[f32]) -> f32 {
        v.iter().fold(0f32, |a, x| a.max(x.abs()))
    }
}
