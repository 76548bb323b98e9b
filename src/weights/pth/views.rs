//! From the unpickled object to tensors: the state dict is flattened into named tensor views
//! (nested dicts joined with `.`, non-tensor leaves skipped), and each view (storage offset, size,
//! stride) is copied out of its storage into a contiguous buffer, within a budget of output bytes
//! that the file size justifies.

use std::collections::HashSet;

use anyhow::{Result, anyhow, bail};

use super::vm::{Obj, TensorSpec, Unpickled, Value, kind};
use super::{RawTensor, show};

/// Maximum container nesting when walking the unpickled object.
const MAX_NESTING: usize = 64;
/// A view may read more elements than its storage holds (stride 0 broadcasts)
/// only if its materialised size stays below this many bytes.
const MAX_EXPANDED_BYTES: u64 = 64 << 20;

// ---------------------------------------------------------------------------
// Walking the unpickled object: state dict -> (name, tensor spec)
// ---------------------------------------------------------------------------

struct Flattener<'a> {
    p: &'a Unpickled,
    out: Vec<(String, TensorSpec)>,
    seen: HashSet<String>,
    /// Bounds the work on shared / cyclic object graphs.
    visits_left: usize,
    /// Bounds the memory used by (possibly long, repeated) names.
    name_bytes_left: usize,
}

/// Flattens the state dict into named tensor specs, in file order.
pub(super) fn flatten(p: &Unpickled, pickle_len: usize) -> Result<Vec<(String, TensorSpec)>> {
    if !matches!(p.obj(p.root), Some(Obj::Dict(_))) {
        bail!(
            "the checkpoint holds {}, expected a dict of tensors (a state dict)",
            kind(&p.objs, p.root)
        );
    }
    let mut f = Flattener {
        p,
        out: Vec::new(),
        seen: HashSet::new(),
        visits_left: p.objs.len().saturating_mul(2).saturating_add(4096),
        name_bytes_left: pickle_len.saturating_mul(8).saturating_add(16 << 20),
    };
    f.walk(p.root, "", 0)?;
    Ok(f.out)
}

impl Flattener<'_> {
    fn join(&mut self, prefix: &str, key: &str) -> Result<String> {
        let name = if prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{prefix}.{key}")
        };
        self.name_bytes_left = self
            .name_bytes_left
            .checked_sub(name.len())
            .ok_or_else(|| anyhow!("tensor names too long (shared containers?)"))?;
        Ok(name)
    }

    fn walk(&mut self, v: Value, name: &str, depth: usize) -> Result<()> {
        self.visits_left = self
            .visits_left
            .checked_sub(1)
            .ok_or_else(|| anyhow!("object graph too large (shared containers?)"))?;
        let p = self.p;
        match p.obj(v) {
            Some(Obj::Tensor(t)) => {
                if !self.seen.insert(name.to_owned()) {
                    bail!("duplicate tensor name '{}' after flattening", show(name));
                }
                self.out.push((name.to_owned(), t.clone()));
            }
            Some(Obj::Dict(d)) => {
                if depth >= MAX_NESTING {
                    bail!(
                        "containers nested more than {MAX_NESTING} levels deep (cyclic?) at '{}'",
                        show(name)
                    );
                }
                for &(k, child) in &d.items {
                    let key = match k {
                        Value::Int(i) => Some(i.to_string()),
                        Value::Bool(b) => Some(if b { "True" } else { "False" }.to_owned()),
                        _ => match p.obj(k) {
                            Some(Obj::Str(s)) => Some(s.to_string()),
                            _ => None,
                        },
                    };
                    match key {
                        Some(key) => {
                            let child_name = self.join(name, &key)?;
                            self.walk(child, &child_name, depth + 1)?;
                        }
                        // Entries under exotic keys are fine as long as they hold no tensors.
                        None if !self.is_container(child) => {}
                        None => bail!(
                            "dict key of type {} in '{}' is not supported",
                            kind(&p.objs, k),
                            show(name)
                        ),
                    }
                }
            }
            Some(Obj::List(items)) | Some(Obj::Tuple(items)) => {
                if depth >= MAX_NESTING {
                    bail!(
                        "containers nested more than {MAX_NESTING} levels deep (cyclic?) at '{}'",
                        show(name)
                    );
                }
                for (i, &child) in items.iter().enumerate() {
                    let child_name = self.join(name, &i.to_string())?;
                    self.walk(child, &child_name, depth + 1)?;
                }
            }
            // Scalars, strings, bytes, bare storages, globals: not tensors.
            _ => {}
        }
        Ok(())
    }

    fn is_container(&self, v: Value) -> bool {
        matches!(
            self.p.obj(v),
            Some(Obj::Tensor(_)) | Some(Obj::Dict(_)) | Some(Obj::List(_)) | Some(Obj::Tuple(_))
        )
    }
}

// ---------------------------------------------------------------------------
// Materialising tensor views
// ---------------------------------------------------------------------------

/// Total output bytes allowed for a file: twice its size plus slack for
/// small broadcast views.
pub(super) fn output_budget(file_len: usize) -> u64 {
    (file_len as u64)
        .saturating_mul(2)
        .saturating_add(MAX_EXPANDED_BYTES)
}

/// Copies the view `spec` out of `storage` (the bytes of the storage the view
/// indexes, `storage.len()` a multiple of the element size).
pub(super) fn materialize(
    spec: &TensorSpec,
    storage: &[u8],
    budget: &mut u64,
) -> Result<RawTensor> {
    let dtype = spec.storage.dtype;
    let es = dtype.size();
    if !storage.len().is_multiple_of(es) {
        bail!(
            "storage of {} bytes is not a whole number of {} elements",
            storage.len(),
            dtype.name()
        );
    }
    let storage_numel = storage.len() / es;
    let overflow = || anyhow!("tensor size {:?} overflows", spec.shape);
    let numel = spec
        .shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(overflow)?;
    let out_len = numel.checked_mul(es).ok_or_else(overflow)?;
    let tensor = |data| RawTensor {
        dtype,
        shape: spec.shape.clone(),
        data,
    };
    if numel == 0 {
        return Ok(tensor(Vec::new()));
    }
    let offset = usize::try_from(spec.offset).map_err(|_| anyhow!("storage offset too large"))?;
    // Highest element index the view touches.
    let mut last = offset;
    for (&d, &s) in spec.shape.iter().zip(&spec.stride) {
        last = (d - 1)
            .checked_mul(s)
            .and_then(|x| last.checked_add(x))
            .ok_or_else(|| anyhow!("tensor view offset/stride overflow"))?;
    }
    if last >= storage_numel {
        bail!(
            "tensor view (storage offset {}, size {:?}, stride {:?}) reads element {} of a \
             {}-element storage",
            spec.offset,
            spec.shape,
            spec.stride,
            last,
            storage_numel
        );
    }
    let out_len64 = out_len as u64;
    if numel > storage_numel && out_len64 > MAX_EXPANDED_BYTES {
        bail!(
            "tensor view of size {:?} would expand a {}-element storage to {} elements; refusing",
            spec.shape,
            storage_numel,
            numel
        );
    }
    *budget = budget.checked_sub(out_len64).ok_or_else(|| {
        anyhow!("tensors would need more memory than the file size justifies (overlapping views?)")
    })?;

    // Row-major contiguous? (Dimensions of size 1 may have any stride.)
    let mut expected = 1usize;
    let mut contiguous = true;
    for (&d, &s) in spec.shape.iter().zip(&spec.stride).rev() {
        if d != 1 && s != expected {
            contiguous = false;
        }
        expected = expected.saturating_mul(d);
    }
    let range_err = || anyhow!("tensor view out of storage bounds");
    if contiguous {
        let start = offset * es; // offset <= last < storage_numel: no overflow
        let bytes = start
            .checked_add(out_len)
            .and_then(|end| storage.get(start..end))
            .ok_or_else(range_err)?;
        return Ok(tensor(bytes.to_vec()));
    }

    // General strided copy, one innermost row at a time.
    let (Some((&inner_len, outer_shape)), Some((&inner_stride, outer_stride))) =
        (spec.shape.split_last(), spec.stride.split_last())
    else {
        return Err(range_err()); // 0-dim tensors are always contiguous
    };
    let mut out = Vec::with_capacity(out_len);
    let mut index = vec![0usize; outer_shape.len()];
    loop {
        // All indices below are <= `last`, so none of this arithmetic overflows.
        let base = offset
            + index
                .iter()
                .zip(outer_stride)
                .map(|(&i, &s)| i * s)
                .sum::<usize>();
        if inner_stride == 1 {
            let start = base * es;
            out.extend_from_slice(
                storage
                    .get(start..start + inner_len * es)
                    .ok_or_else(range_err)?,
            );
        } else {
            for j in 0..inner_len {
                let start = (base + j * inner_stride) * es;
                out.extend_from_slice(storage.get(start..start + es).ok_or_else(range_err)?);
            }
        }
        // Odometer increment over the outer dimensions.
        let mut dim = index.len();
        loop {
            if dim == 0 {
                return Ok(tensor(out));
            }
            dim -= 1;
            let (Some(i), Some(&n)) = (index.get_mut(dim), outer_shape.get(dim)) else {
                return Err(range_err());
            };
            *i += 1;
            if *i < n {
                break;
            }
            *i = 0;
        }
    }
}

/// Pairs names with their materialised tensors, in file order.
pub(super) fn collect(
    specs: Vec<(String, TensorSpec)>,
    tensors: Vec<Option<RawTensor>>,
) -> Result<Vec<(String, RawTensor)>> {
    specs
        .into_iter()
        .zip(tensors)
        .map(|((name, _), t)| {
            let t = t.ok_or_else(|| anyhow!("tensor '{}' was not loaded", show(&name)))?;
            Ok((name, t))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::load_pth_bytes;
    use super::super::tests::{legacy_file, storage_bytes};
    use super::super::vm::StorageRef;
    use super::*;
    use crate::weights::dtype::DType;

    #[test]
    fn huge_shapes_do_not_allocate() {
        // A stride-0 view claiming 2^56 elements of a 4-element storage.
        let mut p = b"\x80\x02}X\x01\x00\x00\x00tctorch._utils\n_rebuild_tensor_v2\n(".to_vec();
        p.extend_from_slice(b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x00kX\x03\x00\x00\x00cpuK\x04NtQK\x00");
        p.extend_from_slice(b"(\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x01t(K\x00t");
        p.extend_from_slice(b"\x89NtRs.");
        let f = legacy_file(&p, &["k"], &[&storage_bytes(4, &[1.0; 4])]);
        let e = format!("{:#}", load_pth_bytes(&f, "x").unwrap_err());
        assert!(e.contains("expand"), "{e}");
        // Shapes whose product overflows.
        let spec = TensorSpec {
            storage: StorageRef {
                key: "k".into(),
                dtype: DType::F32,
                numel: 4,
                view: None,
            },
            offset: 0,
            shape: vec![usize::MAX, 2],
            stride: vec![0, 0],
        };
        assert!(materialize(&spec, &[0; 16], &mut u64::MAX.clone()).is_err());
        let spec = TensorSpec {
            shape: vec![1 << 40, 1 << 40],
            stride: vec![1 << 40, 1],
            ..spec
        };
        assert!(materialize(&spec, &[0; 16], &mut u64::MAX.clone()).is_err());
    }
}
