//! The legacy serialization (torch < 1.6, or `_use_new_zipfile_serialization=False`): pickles
//! of the magic number, the protocol version and `sys_info`, the main pickle, the list of storage
//! keys, then each storage's element count and raw bytes in that order.

use std::collections::HashMap;

use anyhow::{Result, anyhow, bail};

use super::views::{collect, flatten, materialize, output_budget};
use super::vm::{Obj, Objects, PidMode, Value, kind, unpickle};
use super::{RawTensor, arr, show};

/// `0x1950a86a20f9469cfc6c` as minimal little-endian two's complement.
pub(super) const LEGACY_MAGIC: [u8; 10] =
    [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const LEGACY_PROTOCOL_VERSION: i64 = 1001;

pub(super) fn load_legacy(bytes: &[u8], objects: Objects) -> Result<Vec<(String, RawTensor)>> {
    // 1. magic number
    let magic = unpickle(bytes, 0, PidMode::Forbidden, Objects::Refuse)?;
    if !matches!(magic.obj(magic.root), Some(Obj::BigInt(b)) if b.as_slice() == LEGACY_MAGIC) {
        bail!(
            "not a PyTorch checkpoint: a legacy torch.save file starts with a pickled magic \
             number, found {}",
            kind(&magic.objs, magic.root)
        );
    }
    // 2. protocol version
    let version = unpickle(bytes, magic.end, PidMode::Forbidden, Objects::Refuse)?;
    match version.root {
        Value::Int(LEGACY_PROTOCOL_VERSION) => {}
        Value::Int(v) => bail!("unsupported legacy checkpoint protocol version {v}"),
        other => bail!(
            "invalid legacy checkpoint protocol version ({})",
            kind(&version.objs, other)
        ),
    }
    // 3. sys_info (endianness of the writer; storages are always little-endian)
    let sys_info = unpickle(bytes, version.end, PidMode::Forbidden, Objects::Refuse)?;
    if !matches!(sys_info.obj(sys_info.root), Some(Obj::Dict(_))) {
        bail!(
            "invalid legacy checkpoint header: sys_info is {}",
            kind(&sys_info.objs, sys_info.root)
        );
    }
    // 4. the object itself
    let main_start = sys_info.end;
    let main = unpickle(bytes, main_start, PidMode::Legacy, objects)?;
    let specs = flatten(&main, main.end - main_start)?;
    // 5. storage keys
    let keys = unpickle(bytes, main.end, PidMode::Forbidden, Objects::Refuse)?;
    let key_values = match keys.obj(keys.root) {
        Some(Obj::List(items)) | Some(Obj::Tuple(items)) => items,
        _ => bail!(
            "invalid legacy checkpoint: the storage key list is {}",
            kind(&keys.objs, keys.root)
        ),
    };

    // 6. raw storages, in key-list order: int64 LE element count + bytes.
    let mut storages: HashMap<String, &[u8]> = HashMap::new();
    let mut pos = keys.end;
    for &k in key_values {
        let key = match k {
            Value::Int(i) => i.to_string(),
            _ => match keys.obj(k) {
                Some(Obj::Str(s)) => s.to_string(),
                _ => bail!(
                    "invalid legacy checkpoint: storage key is {}",
                    kind(&keys.objs, k)
                ),
            },
        };
        let count_bytes = pos
            .checked_add(8)
            .and_then(|end| bytes.get(pos..end))
            .ok_or_else(|| anyhow!("storage '{}' at byte {pos}: file truncated", show(&key)))?;
        let count = i64::from_le_bytes(arr(count_bytes));
        pos += 8;
        // Like torch, every listed storage must have been named by the main
        // pickle (which tells its dtype, hence its element size).
        let Some(&(dtype, numel)) = main.roots.get(&key) else {
            bail!(
                "storage '{}' listed at byte {} is not referenced by the checkpoint",
                show(&key),
                pos - 8
            );
        };
        let count = u64::try_from(count)
            .map_err(|_| anyhow!("storage '{}': negative size {count}", show(&key)))?;
        if count != numel {
            bail!(
                "storage '{}' at byte {}: {count} elements on disk but {numel} declared",
                show(&key),
                pos - 8
            );
        }
        let len = count
            .checked_mul(dtype.size() as u64)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| anyhow!("storage '{}': size overflows", show(&key)))?;
        let data = pos
            .checked_add(len)
            .and_then(|end| bytes.get(pos..end))
            .ok_or_else(|| {
                anyhow!(
                    "storage '{}' at byte {pos} needs {len} bytes, only {} left: file truncated",
                    show(&key),
                    bytes.len().saturating_sub(pos)
                )
            })?;
        pos += len;
        if storages.insert(key.clone(), data).is_some() {
            bail!("storage '{}' listed twice", show(&key));
        }
    }

    let mut budget = output_budget(bytes.len());
    let mut tensors = Vec::with_capacity(specs.len());
    for (name, spec) in &specs {
        let root = storages.get(spec.storage.key.as_str()).ok_or_else(|| {
            anyhow!(
                "tensor '{}': storage '{}' has no data in the file",
                show(name),
                show(&spec.storage.key)
            )
        })?;
        let es = spec.storage.dtype.size() as u64;
        let view = match spec.storage.view {
            None => *root,
            Some((offset, len)) => offset
                .checked_mul(es)
                .zip(len.checked_mul(es))
                .and_then(|(o, l)| Some((usize::try_from(o).ok()?, usize::try_from(l).ok()?)))
                .and_then(|(o, l)| root.get(o..o.checked_add(l)?))
                .ok_or_else(|| anyhow!("tensor '{}': storage view out of bounds", show(name)))?,
        };
        let t = materialize(spec, view, &mut budget)
            .map_err(|e| anyhow!("tensor '{}': {e:#}", show(name)))?;
        tensors.push(Some(t));
    }
    collect(specs, tensors)
}
