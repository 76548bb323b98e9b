//! Safe reader for PyTorch `torch.save` checkpoints (tensor state dicts).
//!
//! `torch.load` unpickles arbitrary Python objects, and unpickling can call any
//! importable function (`os.system`, `builtins.eval`, ...) with attacker chosen
//! arguments. This module never executes anything: it contains a small,
//! *restricted* pickle virtual machine that understands only the opcodes and the
//! handful of globals a tensor state dict needs, builds an inert object graph,
//! and then reads the tensor bytes itself.
//!
//! # The two on-disk formats
//!
//! **Zip format** (torch >= 1.6, the default of `torch.save`): a zip archive
//! whose entries are STORED (uncompressed), all inside one top-level folder
//! `<prefix>/` (an arbitrary name, usually `archive`):
//!
//! * `<prefix>/data.pkl`: the pickled object. Storages are written as
//!   persistent ids `('storage', torch.FloatStorage, key, location, numel)`;
//! * `<prefix>/data/<key>`: the raw bytes of each storage (`numel` elements);
//! * `<prefix>/byteorder`: `little` or `big` (absent in old files: little);
//! * `<prefix>/version`, `.format_version`, ...: ignored.
//!
//! **Legacy format** (torch < 1.6, or `_use_new_zipfile_serialization=False`;
//! e.g. the 2019 NVlabs SPADE checkpoints): a plain byte stream holding, one
//! after the other,
//!
//! 1. a pickle of the magic number `0x1950a86a20f9469cfc6c`,
//! 2. a pickle of the protocol version `1001`,
//! 3. a pickle of a `sys_info` dict,
//! 4. the main pickle, whose storages are persistent ids
//!    `('storage', storage_type, root_key, location, numel, view_metadata)` with
//!    `view_metadata` either `None` or `(view_key, offset, view_size)` (in
//!    elements: the storage is `root[offset .. offset + view_size]`),
//! 5. a pickle of the list of storage keys,
//! 6. for each key in that order: an int64 little-endian element count followed
//!    by the raw little-endian bytes of the storage.
//!
//! The even older tar-based format (torch <= 0.1.10) is rejected.
//!
//! In both formats a tensor is pickled as a call of
//! `torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride,
//! requires_grad, backward_hooks[, metadata])` (or the older `_rebuild_tensor`),
//! an `nn.Parameter` as `torch._utils._rebuild_parameter(tensor, requires_grad,
//! backward_hooks)`, and the state dict itself as `collections.OrderedDict()`
//! filled with SETITEMS, followed by a BUILD whose state (`_metadata`) we ignore.
//!
//! # Security model
//!
//! * Only these pickle opcodes are accepted: PROTO FRAME STOP MARK POP POP_MARK
//!   DUP NONE NEWTRUE NEWFALSE BININT BININT1 BININT2 LONG1 LONG4 BINFLOAT
//!   SHORT_BINUNICODE BINUNICODE BINUNICODE8 SHORT_BINSTRING BINSTRING
//!   SHORT_BINBYTES BINBYTES BINBYTES8 EMPTY_DICT EMPTY_LIST EMPTY_TUPLE TUPLE
//!   TUPLE1 TUPLE2 TUPLE3 LIST DICT APPEND APPENDS SETITEM SETITEMS BINPUT
//!   LONG_BINPUT MEMOIZE BINGET LONG_BINGET GLOBAL STACK_GLOBAL REDUCE BUILD
//!   BINPERSID. Anything else (INST, OBJ, NEWOBJ, EXT*, sets, text-protocol
//!   opcodes, unknown bytes) is an error naming the opcode, its byte value and
//!   its offset.
//! * GLOBAL / STACK_GLOBAL may only name `collections.OrderedDict`,
//!   `torch._utils._rebuild_tensor_v2`, `torch._utils._rebuild_tensor`,
//!   `torch._utils._rebuild_parameter`, `torch._utils._rebuild_parameter_with_state`
//!   or one of the ten `torch.<Type>Storage` classes. Any other global
//!   (`os.system`, `posix.system`, `builtins.eval`, `torch.nn.Module`, ...) is
//!   refused at the opcode that names it, before anything could use it.
//! * REDUCE only "calls" the whitelisted callables, and only with the argument
//!   shapes torch writes; the calls are interpreted by this module (they build
//!   inert descriptions), nothing is imported or run. BUILD is only accepted on
//!   dicts, and its state is discarded.
//! * The machine works on an arena of objects addressed by index, so shared and
//!   even cyclic references cannot cause recursion or leaks; stack, memo and
//!   object counts are capped, nesting depth is capped when walking the result.
//! * All reads are bounds-checked (a truncated file is an error), all size
//!   arithmetic is overflow-checked, every tensor view is checked against the
//!   length of its storage, and the total number of bytes materialised is
//!   bounded by a multiple of the file size (no memory amplification through
//!   overlapping views). No input can make this module panic.
//!
//! Tensor views (storage offsets, arbitrary strides such as a transposed
//! weight) are materialised into contiguous row-major little-endian buffers.
//!
//! # Layout
//!
//! `vm` is the restricted pickle machine and its object model, `allow_list` the globals a
//! checkpoint may name, `views` turns the unpickled state dict into contiguous tensors, and
//! `zip` and `legacy` read the two on-disk formats.

use std::path::Path;

use anyhow::{Result, anyhow, bail};

mod allow_list;
mod legacy;
#[cfg(test)]
mod tests;
mod views;
mod vm;
mod zip;

use self::zip::load_zip;
use legacy::load_legacy;
pub use vm::Objects;

pub use super::dtype::DType;

/// A dense tensor: contiguous row-major little-endian bytes (the storage offset
/// and strides of the saved view have already been applied).
#[derive(Debug, Clone)]
pub struct RawTensor {
    pub dtype: DType,
    /// Empty for a 0-dim tensor (which holds one element).
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl RawTensor {
    /// Number of elements (product of the shape; 1 for a 0-dim tensor).
    /// Saturates at `usize::MAX` for absurd hand-built shapes.
    pub fn numel(&self) -> usize {
        self.shape.iter().fold(1usize, |a, &d| a.saturating_mul(d))
    }

    /// Converts every element to `f32` (integers and bools by value; int64
    /// and float64 values may round).
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        let es = self.dtype.size();
        let expected = self
            .shape
            .iter()
            .try_fold(es, |a, &d| a.checked_mul(d))
            .ok_or_else(|| anyhow!("tensor shape {:?} overflows", self.shape))?;
        if self.data.len() != expected {
            bail!(
                "tensor of dtype {} and shape {:?} needs {} bytes but has {}",
                self.dtype.name(),
                self.shape,
                expected,
                self.data.len()
            );
        }
        self.dtype.to_f32(&self.data)
    }
}

/// Copies a chunk of exactly `N` bytes into an array (the callers take exactly `N` bytes, so the
/// fallback zero array is never used).
pub(super) fn arr<const N: usize>(c: &[u8]) -> [u8; N] {
    c.try_into().unwrap_or([0; N])
}

/// Reads a `.pth` checkpoint (either serialization) and returns its tensors in
/// file order. Nested dicts are flattened with `.` (`{"state_dict": {"a.b": t}}`
/// gives `state_dict.a.b`; lists and tuples use their indices); non-tensor
/// leaves (ints, floats, strings, None, ...) are skipped.
pub fn load_pth(path: &Path) -> Result<Vec<(String, RawTensor)>> {
    load_pth_with(path, Objects::Refuse)
}

/// [`load_pth`], with other objects than tensor containers handled as `objects` says (a
/// training checkpoint's callbacks and scalars become inert placeholders under
/// [`Objects::Inert`]; only its tensors are returned).
pub fn load_pth_with(path: &Path, objects: Objects) -> Result<Vec<(String, RawTensor)>> {
    let what = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| anyhow!("{what}: cannot read: {e}"))?;
    load_any(&bytes, objects).map_err(|e| anyhow!("{what}: {e:#}"))
}

/// Like [`load_pth`] on the bytes of a file; `what` names the file in errors.
pub fn load_pth_bytes(bytes: &[u8], what: &str) -> Result<Vec<(String, RawTensor)>> {
    load_pth_bytes_with(bytes, what, Objects::Refuse)
}

/// [`load_pth_bytes`] with [`load_pth_with`]'s handling of other objects.
pub fn load_pth_bytes_with(
    bytes: &[u8],
    what: &str,
    objects: Objects,
) -> Result<Vec<(String, RawTensor)>> {
    load_any(bytes, objects).map_err(|e| anyhow!("{what}: {e:#}"))
}

fn load_any(bytes: &[u8], objects: Objects) -> Result<Vec<(String, RawTensor)>> {
    if bytes.is_empty() {
        bail!("file is empty");
    }
    // safetensors: an 8-byte little-endian header length, then the JSON header.
    if bytes.len() > 9 && bytes[8] == b'{' {
        let n = u64::from_le_bytes(arr(&bytes[..8]));
        if n <= bytes.len() as u64 - 8 {
            bail!(
                "this is a safetensors file, not a PyTorch checkpoint (a model file spadework \
                 already reads: pass it to --weights)"
            );
        }
    }
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        return load_zip(bytes, objects);
    }
    if bytes.get(257..262) == Some(b"ustar".as_slice()) {
        bail!(
            "this is a tar archive (the tar-based checkpoint format of torch <= 0.1.10), \
             which is not supported; re-save it with a recent torch"
        );
    }
    load_legacy(bytes, objects)
}

/// Quotes untrusted text for an error message: escapes control characters
/// and shortens very long strings.
pub(super) fn show(s: &str) -> String {
    const MAX: usize = 120;
    let mut out: String = s.chars().take(MAX).flat_map(char::escape_debug).collect();
    if s.chars().nth(MAX).is_some() {
        out.push_str("...");
    }
    out
}
