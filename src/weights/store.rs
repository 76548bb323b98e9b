//! Named tensors loaded lazily from (or saved to) safetensors, with the model config in the header.
//! Every lookup names the tensor, the file and the expected shape when something is off.
use super::dtype::DType;
use anyhow::{Context, Result, anyhow, bail};
use safetensors::{Dtype, SafeTensors};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

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

/// Where a store's file bytes live: a read-only memory map of the file, or bytes compiled into
/// the binary (the built-in model).
enum Backing {
    Mapped(memmap2::Mmap),
    Static(&'static [u8]),
    /// Bytes read into memory (a tensor of a pickled checkpoint).
    Owned(Vec<u8>),
}

/// A read-only map of the file at `path`.
fn map_file(path: &Path) -> Result<Backing> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot read weights file {}", path.display()))?;
    // SAFETY: the map is read-only and private to this process. Like every reader of a mapped
    // file, it assumes nobody truncates the file while it is open (that would raise SIGBUS on
    // access, which no read can guard against).
    let map = unsafe { memmap2::Mmap::map(&file) }
        .with_context(|| format!("cannot map weights file {}", path.display()))?;
    Ok(Backing::Mapped(map))
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Backing::Mapped(m) => m,
            Backing::Static(b) => b,
            Backing::Owned(b) => b,
        }
    }

    /// Tells the kernel that the mapped pages wholly inside `range` are not needed any more:
    /// they leave this process's resident set at once instead of when memory runs short (a model
    /// load then holds one decoded tensor beside the model, not the whole file). A later read of
    /// the range maps the file's pages in again.
    fn release(&self, range: std::ops::Range<usize>) {
        #[cfg(unix)]
        if let Backing::Mapped(m) = self {
            const PAGE: usize = 4096;
            let start = range.start.next_multiple_of(PAGE);
            let end = range.end / PAGE * PAGE;
            if end > start {
                // SAFETY: the map is a private read-only mapping of the file, and no reference
                // into it outlives `values` (tensors are decoded into owned vectors), so
                // dropping its pages only means a later read fetches them from the file again.
                let _ = unsafe {
                    m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
                };
            }
        }
        #[cfg(not(unix))]
        let _ = range;
    }
}

/// One tensor: decoded values, or a byte range of the backing file decoded on each use.
enum Entry {
    Owned(Vec<usize>, Vec<f32>),
    /// A name and a shape without values ([`WeightStore::from_shapes`]).
    ShapeOnly(Vec<usize>),
    Stored {
        shape: Vec<usize>,
        dtype: DType,
        /// Index of the file (in [`WeightStore::backings`]) and the byte range in it.
        file: usize,
        bytes: std::ops::Range<usize>,
        /// int8 tensors: the key of their per-output-channel scales.
        q8_scale: Option<String>,
    },
}

impl Entry {
    fn shape(&self) -> &[usize] {
        match self {
            Entry::Owned(s, _) | Entry::ShapeOnly(s) | Entry::Stored { shape: s, .. } => s,
        }
    }
}

/// Named tensors of one weight file (or of the shards of one, see [`WeightStore::load_sharded`])
/// with the model config in its header. Files are memory-mapped
/// and a tensor is decoded to f32 (from f32, f16, bf16, f64 or int8 + scales; one dtype table,
/// [`DType`]) only when a loader asks for it, so loading a model holds one decoded tensor at a time
/// beside the mapped file, whose pages the kernel can drop.
pub struct WeightStore {
    /// Where the tensors came from, for error messages.
    pub source: String,
    pub metadata: HashMap<String, String>,
    tensors: BTreeMap<String, Entry>,
    /// Shared with the stores [`WeightStore::extract`] splits off.
    backings: Vec<Arc<Backing>>,
}

impl WeightStore {
    pub fn new(source: impl Into<String>) -> WeightStore {
        WeightStore {
            source: source.into(),
            tensors: BTreeMap::new(),
            metadata: HashMap::new(),
            backings: Vec::new(),
        }
    }

    /// Maps the safetensors file at `path` (nothing is decoded yet).
    pub fn load(path: &Path) -> Result<WeightStore> {
        Self::from_backing(map_file(path)?, &path.display().to_string())
    }

    /// The shards of one checkpoint, as a Hugging Face `*.safetensors.index.json` lists them
    /// (`weight_map`: tensor name → shard file beside the index). Every listed tensor must be in
    /// its shard, and no tensor in two shards.
    pub fn load_sharded(index: &Path) -> Result<WeightStore> {
        let what = index.display().to_string();
        let v: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(index).with_context(|| format!("cannot read {what}"))?,
        )
        .with_context(|| format!("{what}: not JSON"))?;
        let Some(map) = v["weight_map"].as_object() else {
            bail!("{what}: no 'weight_map' object (tensor name → shard file)");
        };
        let dir = index.parent().unwrap_or(Path::new("."));
        let mut shards: Vec<&str> = map.values().filter_map(|f| f.as_str()).collect();
        shards.sort();
        shards.dedup();
        let mut store = WeightStore::new(what.clone());
        for shard in shards {
            if shard.contains('/') || shard.contains('\\') || shard.starts_with('.') {
                bail!("{what}: shard name '{shard}' is not a file beside the index");
            }
            let part = WeightStore::load(&dir.join(shard))?;
            store.merge(part)?;
        }
        for (name, f) in map {
            if !store.tensors.contains_key(name) {
                bail!("{what}: tensor '{name}' is listed in shard {f} but is not in it",);
            }
        }
        Ok(store)
    }

    /// Moves `other`'s tensors (and files, and header metadata) into `self`; a tensor name in
    /// both is an error naming both sources.
    pub fn merge(&mut self, other: WeightStore) -> Result<()> {
        let offset = self.backings.len();
        for (name, e) in other.tensors {
            if self.tensors.contains_key(&name) {
                bail!(
                    "tensor '{name}' is in both {} and {}",
                    self.source,
                    other.source
                );
            }
            let e = match e {
                Entry::Stored {
                    shape,
                    dtype,
                    file,
                    bytes,
                    q8_scale,
                } => Entry::Stored {
                    shape,
                    dtype,
                    file: file + offset,
                    bytes,
                    q8_scale,
                },
                owned => owned,
            };
            self.tensors.insert(name, e);
        }
        self.backings.extend(other.backings);
        for (k, v) in other.metadata {
            self.metadata.entry(k).or_insert(v);
        }
        Ok(())
    }

    /// Safetensors bytes held in memory (a fuzzer's input, a download).
    pub fn from_bytes(bytes: Vec<u8>, source: &str) -> Result<WeightStore> {
        Self::from_backing(Backing::Owned(bytes), source)
    }

    /// Safetensors bytes compiled into the binary.
    pub fn from_static(bytes: &'static [u8], source: &str) -> Result<WeightStore> {
        Self::from_backing(Backing::Static(bytes), source)
    }

    /// Parses the header; tensors stay where they are until [`Self::get`] decodes them.
    fn from_backing(backing: Backing, source: &str) -> Result<WeightStore> {
        let bytes = backing.bytes();
        if bytes.starts_with(b"PK\x03\x04") || bytes.first() == Some(&0x80) {
            bail!(
                "{source}: this is a PyTorch checkpoint (.pth/.ckpt), not a safetensors file; \
                 an NVlabs SPADE checkpoint converts with `spadework convert`, a Stable \
                 Diffusion .ckpt loads with `spadework txt2img --weights`"
            );
        }
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| anyhow!("{source}: not a valid safetensors file: {e}"))?;
        let (_, meta) = SafeTensors::read_metadata(bytes)
            .map_err(|e| anyhow!("{source}: bad safetensors header: {e}"))?;
        let mut store = WeightStore::new(source);
        store.metadata = meta.metadata().clone().unwrap_or_default();
        let base = bytes.as_ptr() as usize;
        for (name, view) in st.tensors() {
            // Integer tensors (e.g. CLIP's int64 `position_ids`) are kept for their name;
            // [`Self::get`] refuses them as weights.
            let Some(dtype) = DType::from_safetensors(view.dtype()) else {
                bail!(
                    "{source}: tensor '{name}' has dtype {:?}, which is not supported (floating \
                     point weights, int8 with {Q8_SCALE} scales, and integer buffers are)",
                    view.dtype()
                );
            };
            let start = view.data().as_ptr() as usize - base;
            let q8_scale = (dtype == DType::I8).then(|| format!("{name}{Q8_SCALE}"));
            store.tensors.insert(
                name,
                Entry::Stored {
                    shape: view.shape().to_vec(),
                    dtype,
                    file: 0,
                    bytes: start..start + view.data().len(),
                    q8_scale,
                },
            );
        }
        // int8 tensors need their scales: one per output channel (dim 0).
        for (name, e) in &store.tensors {
            let Entry::Stored {
                shape,
                q8_scale: Some(sname),
                ..
            } = e
            else {
                continue;
            };
            let rows = shape.first().copied().unwrap_or(1).max(1);
            match store.tensors.get(sname) {
                None => bail!("{source}: int8 tensor '{name}' has no '{sname}' scales"),
                Some(s) if s.shape().iter().product::<usize>() != rows => bail!(
                    "{source}: '{sname}' has {} values, expected {rows} (dim 0 of '{name}')",
                    s.shape().iter().product::<usize>()
                ),
                Some(_) => {}
            }
        }
        if let Some(orphan) = store.tensors.keys().find(|k| {
            k.strip_suffix(Q8_SCALE).is_some_and(|t| {
                !matches!(
                    store.tensors.get(t),
                    Some(Entry::Stored {
                        q8_scale: Some(_),
                        ..
                    })
                )
            })
        }) {
            bail!("{source}: '{orphan}' scales no int8 tensor");
        }
        store.backings.push(Arc::new(backing));
        Ok(store)
    }

    /// Adds or replaces a tensor.
    pub fn insert(&mut self, name: impl Into<String>, shape: Vec<usize>, data: Vec<f32>) {
        let name = name.into();
        self.remove(&name);
        self.tensors.insert(name, Entry::Owned(shape, data));
    }

    /// Removes a tensor (and an int8 tensor's scales); whether it was there.
    pub fn remove(&mut self, name: &str) -> bool {
        match self.tensors.remove(name) {
            Some(Entry::Stored {
                q8_scale: Some(s), ..
            }) => self.tensors.remove(&s).is_some(),
            Some(_) => true,
            None => false,
        }
    }

    /// Tensor names, sorted (int8 scales are part of their tensor, not listed).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors
            .keys()
            .map(|k| k.as_str())
            .filter(|k| !self.is_scale(k))
    }

    fn is_scale(&self, k: &str) -> bool {
        k.strip_suffix(Q8_SCALE).is_some_and(|t| {
            matches!(
                self.tensors.get(t),
                Some(Entry::Stored {
                    q8_scale: Some(_),
                    ..
                })
            )
        })
    }

    /// Number of tensors (int8 scales not counted).
    pub fn len(&self) -> usize {
        self.names().count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name) && !self.is_scale(name)
    }

    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|e| e.shape())
    }

    /// The values of `name` as f32, whatever their shape (decoded now unless inserted as f32).
    pub fn values(&self, name: &str) -> Result<Cow<'_, [f32]>> {
        let Some(e) = self.tensors.get(name) else {
            bail!("{}: missing tensor '{name}'", self.source)
        };
        match e {
            Entry::Owned(_, d) => Ok(Cow::Borrowed(d)),
            Entry::ShapeOnly(_) => bail!(
                "{}: tensor '{name}' has a shape but no values (an architecture without weights)",
                self.source
            ),
            Entry::Stored {
                dtype,
                file,
                bytes,
                q8_scale,
                ..
            } => {
                let backing = &self.backings[*file];
                let mut v = dtype
                    .to_f32(&backing.bytes()[bytes.clone()])
                    .map_err(|e| anyhow!("{}: tensor '{name}': {e}", self.source))?;
                backing.release(bytes.clone());
                if let Some(sname) = q8_scale {
                    let scale = self.values(sname)?;
                    let per = v.len() / scale.len().max(1);
                    for (chunk, s) in v.chunks_mut(per.max(1)).zip(scale.iter()) {
                        chunk.iter_mut().for_each(|x| *x *= s);
                    }
                }
                Ok(Cow::Owned(v))
            }
        }
    }

    /// The tensor `name`, which must have exactly `shape`.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Cow<'_, [f32]>> {
        match self.tensors.get(name) {
            None => bail!(
                "{}: missing tensor '{name}' (expected shape {shape:?})",
                self.source
            ),
            Some(e) if e.shape() != shape => {
                bail!(
                    "{}: tensor '{name}' has shape {:?}, expected {shape:?}",
                    self.source,
                    e.shape()
                )
            }
            Some(Entry::Stored { dtype, .. }) if !dtype.is_float() && *dtype != DType::I8 => bail!(
                "{}: tensor '{name}' has dtype {}; a model weight must be floating point",
                self.source,
                dtype.name()
            ),
            Some(_) => self.values(name),
        }
    }

    /// The tensors of a pickled checkpoint (see [`crate::weights::pth`]), kept in their dtype
    /// until a loader asks for them.
    pub fn from_raw(
        tensors: Vec<(String, crate::weights::pth::RawTensor)>,
        source: &str,
    ) -> Result<WeightStore> {
        let mut store = WeightStore::new(source);
        for (name, t) in tensors {
            let n = t.data.len();
            let expected = t
                .shape
                .iter()
                .try_fold(t.dtype.size(), |a, &d| a.checked_mul(d));
            if expected != Some(n) {
                bail!(
                    "{source}: tensor '{name}' of shape {:?} has {n} bytes",
                    t.shape
                );
            }
            if store.tensors.contains_key(&name) {
                bail!("{source}: tensor '{name}' appears twice");
            }
            store.backings.push(Arc::new(Backing::Owned(t.data)));
            let file = store.backings.len() - 1;
            store.tensors.insert(
                name,
                Entry::Stored {
                    shape: t.shape,
                    dtype: t.dtype,
                    file,
                    bytes: 0..n,
                    q8_scale: None,
                },
            );
        }
        Ok(store)
    }

    /// Moves the tensors for which `rename` gives a name into a new store named `source`,
    /// under that name (nothing is decoded; the stores share the files). Two tensors given
    /// one name is an error naming both.
    pub fn extract(
        &mut self,
        source: impl Into<String>,
        rename: impl Fn(&str) -> Option<String>,
    ) -> Result<WeightStore> {
        let mut out = WeightStore::new(source);
        out.backings = self.backings.clone();
        out.metadata = self.metadata.clone();
        let names: Vec<String> = self.names().map(str::to_owned).collect();
        let mut from: HashMap<String, String> = HashMap::new();
        for old in names {
            let Some(new) = rename(&old) else { continue };
            if let Some(prev) = from.insert(new.clone(), old.clone()) {
                bail!(
                    "{}: tensors '{prev}' and '{old}' both map to '{new}'",
                    self.source
                );
            }
            let Some(mut e) = self.tensors.remove(&old) else {
                continue;
            };
            if let Entry::Stored {
                q8_scale: Some(sname),
                ..
            } = &mut e
            {
                let scale = self.tensors.remove(sname.as_str());
                *sname = format!("{new}{Q8_SCALE}");
                if let Some(scale) = scale {
                    out.tensors.insert(sname.clone(), scale);
                }
            }
            out.tensors.insert(new, e);
        }
        Ok(out)
    }

    /// Tensor names and shapes without values: an architecture to inspect (reading a value is
    /// an error naming the tensor).
    pub fn from_shapes(
        source: &str,
        shapes: impl IntoIterator<Item = (String, Vec<usize>)>,
    ) -> WeightStore {
        let mut store = WeightStore::new(source);
        for (name, shape) in shapes {
            store.tensors.insert(name, Entry::ShapeOnly(shape));
        }
        store
    }

    /// Replaces `name` by `parts.len()` equal slices along dimension 0, named `parts` in order
    /// (a fused projection read as separate ones), without decoding it.
    pub fn split_rows(&mut self, name: &str, parts: &[String]) -> Result<()> {
        let source = self.source.clone();
        let Some(e) = self.tensors.get(name) else {
            bail!("{source}: missing tensor '{name}'");
        };
        let shape = e.shape().to_vec();
        let n = parts.len();
        let rows = shape.first().copied().unwrap_or(0);
        if n == 0 || rows == 0 || rows % n != 0 {
            bail!(
                "{source}: tensor '{name}' of shape {shape:?} does not split into {n} equal row blocks"
            );
        }
        let mut piece = shape.clone();
        piece[0] = rows / n;
        let per: usize = piece.iter().product();
        let pieces: Vec<Entry> = match e {
            Entry::ShapeOnly(_) => (0..n).map(|_| Entry::ShapeOnly(piece.clone())).collect(),
            Entry::Owned(_, d) => d
                .chunks(per.max(1))
                .map(|c| Entry::Owned(piece.clone(), c.to_vec()))
                .collect(),
            Entry::Stored {
                dtype,
                file,
                bytes,
                q8_scale: None,
                ..
            } => {
                let step = (bytes.end - bytes.start) / n;
                (0..n)
                    .map(|i| Entry::Stored {
                        shape: piece.clone(),
                        dtype: *dtype,
                        file: *file,
                        bytes: bytes.start + i * step..bytes.start + (i + 1) * step,
                        q8_scale: None,
                    })
                    .collect()
            }
            Entry::Stored { .. } => bail!("{source}: cannot split the int8 tensor '{name}'"),
        };
        self.tensors.remove(name);
        for (p, e) in parts.iter().zip(pieces) {
            self.tensors.insert(p.clone(), e);
        }
        Ok(())
    }

    /// Gives `name` the shape `shape`, which must have as many elements (a 1×1 conv kernel
    /// read as a linear weight).
    pub fn reshape(&mut self, name: &str, shape: Vec<usize>) -> Result<()> {
        let source = self.source.clone();
        let Some(e) = self.tensors.get_mut(name) else {
            bail!("{source}: missing tensor '{name}'");
        };
        let (old, new) = (
            e.shape().iter().product::<usize>(),
            shape.iter().product::<usize>(),
        );
        if old != new {
            bail!(
                "{source}: tensor '{name}' of shape {:?} cannot be read as {shape:?}",
                e.shape()
            );
        }
        match e {
            Entry::Owned(s, _) | Entry::ShapeOnly(s) | Entry::Stored { shape: s, .. } => *s = shape,
        }
        Ok(())
    }

    /// Writes f32 safetensors with `metadata` in the header.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.save_as(path, Storage::F32)
    }

    /// Writes safetensors in `storage` (see [`Storage`]); the header records it.
    pub fn save_as(&self, path: &Path, storage: Storage) -> Result<()> {
        let f32_bytes = |d: &[f32]| d.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>();
        let mut bytes: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
        for n in self.names() {
            let (s, d) = (self.shape(n).unwrap_or_default().to_vec(), self.values(n)?);
            if let Some((i, x)) = crate::tensor::first_non_finite(&d) {
                bail!(
                    "{}: tensor '{n}' holds {x} at flat index {i}: refusing to store non-finite \
                     weights",
                    self.source
                );
            }
            let (n, s) = (&n.to_string(), &s);
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
                _ => bytes.push((n.clone(), Dtype::F32, s.clone(), f32_bytes(&d))),
            }
        }
        let mut metadata: BTreeMap<String, String> = self
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        metadata.insert(
            "weights_storage".into(),
            match storage {
                Storage::F32 => "f32",
                Storage::F16 => "f16 weights, f32 biases and statistics",
                Storage::Int8 => "int8 weights with per-output-channel f32 scales (.q8_scale)",
            }
            .into(),
        );
        let file = serialize(bytes, &metadata)?;
        crate::io::write_atomic(path, &file)?;
        Ok(())
    }
}

/// A safetensors file of `tensors` with `metadata`, the same bytes for the same input: header
/// keys sorted, tensors laid out by element size (largest first, so each stays aligned) then
/// name, the header padded with spaces to a multiple of 8 bytes as the format asks.
fn serialize(
    mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)>,
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    tensors.sort_by(|a, b| {
        b.1.bitsize()
            .cmp(&a.1.bitsize())
            .then_with(|| a.0.cmp(&b.0))
    });
    let mut header = BTreeMap::new();
    header.insert("__metadata__".to_string(), serde_json::json!(metadata));
    let mut offset = 0usize;
    for (name, dtype, shape, data) in &tensors {
        let numel = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if numel.and_then(|n| n.checked_mul(dtype.bitsize() / 8)) != Some(data.len()) {
            bail!(
                "{name}: {} bytes do not hold a {dtype:?} tensor of shape {shape:?}",
                data.len()
            );
        }
        header.insert(
            name.clone(),
            serde_json::json!({
                "dtype": format!("{dtype:?}"),
                "shape": shape,
                "data_offsets": [offset, offset + data.len()],
            }),
        );
        offset += data.len();
    }
    let mut h = serde_json::to_vec(&header)?;
    h.resize(h.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + h.len() + offset);
    out.extend((h.len() as u64).to_le_bytes());
    out.extend(h);
    for (_, _, _, data) in &tensors {
        out.extend(data);
    }
    Ok(out)
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
        for i in 0..12 {
            s.metadata.insert(format!("k{i}"), format!("v{i}"));
        }
        s.metadata.insert("k".into(), "v".into());
        let dir = std::env::temp_dir().join(format!("spadework-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for storage in [Storage::F32, Storage::F16, Storage::Int8] {
            let p = dir.join(format!("{storage:?}.safetensors"));
            s.save_as(&p, storage).unwrap();
            // The same input gives the same bytes (the header's metadata is ordered), and a
            // new file gets the umask's permissions like any other.
            let first = std::fs::read(&p).unwrap();
            for _ in 0..3 {
                s.save_as(&p, storage).unwrap();
                assert_eq!(std::fs::read(&p).unwrap(), first, "{storage:?}");
            }
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
                assert_ne!(mode, 0o600, "{storage:?}: a private temporary file's mode");
            }
            let back = WeightStore::load(&p).unwrap();
            assert_eq!(back.metadata["k"], "v");
            assert!(back.metadata.contains_key("weights_storage"));
            assert_eq!(back.len(), 2, "{storage:?}: scales folded away");
            assert_eq!(
                back.get("conv.bias", &[8]).unwrap(),
                s.get("conv.bias", &[8]).unwrap()
            );
            assert!(back.get("conv.bias", &[9]).is_err());
            assert!(back.get("conv.gone", &[8]).is_err());
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
