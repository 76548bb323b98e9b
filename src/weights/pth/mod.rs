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

use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::io::{Cursor, Read};
use std::path::Path;

use anyhow::{Result, anyhow, bail};

// ---------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------

pub use super::dtype::DType;

/// The storage class torch pickles for a dtype (`FloatStorage`, ...).
fn storage_class(d: DType) -> &'static str {
    match d {
        DType::F64 => "DoubleStorage",
        DType::F32 => "FloatStorage",
        DType::F16 => "HalfStorage",
        DType::BF16 => "BFloat16Storage",
        DType::I64 => "LongStorage",
        DType::I32 => "IntStorage",
        DType::I16 => "ShortStorage",
        DType::I8 => "CharStorage",
        DType::U8 => "ByteStorage",
        DType::Bool => "BoolStorage",
    }
}

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
fn arr<const N: usize>(c: &[u8]) -> [u8; N] {
    c.try_into().unwrap_or([0; N])
}

/// Reads a `.pth` checkpoint (either serialization) and returns its tensors in
/// file order. Nested dicts are flattened with `.` (`{"state_dict": {"a.b": t}}`
/// gives `state_dict.a.b`; lists and tuples use their indices); non-tensor
/// leaves (ints, floats, strings, None, ...) are skipped.
pub fn load_pth(path: &Path) -> Result<Vec<(String, RawTensor)>> {
    let what = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| anyhow!("{what}: cannot read: {e}"))?;
    load_pth_bytes(&bytes, &what)
}

/// Like [`load_pth`] on the bytes of a file; `what` names the file in errors.
pub fn load_pth_bytes(bytes: &[u8], what: &str) -> Result<Vec<(String, RawTensor)>> {
    load_any(bytes).map_err(|e| anyhow!("{what}: {e:#}"))
}

fn load_any(bytes: &[u8]) -> Result<Vec<(String, RawTensor)>> {
    if bytes.is_empty() {
        bail!("file is empty");
    }
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        return load_zip(bytes);
    }
    if bytes.get(257..262) == Some(b"ustar".as_slice()) {
        bail!(
            "this is a tar archive (the tar-based checkpoint format of torch <= 0.1.10), \
             which is not supported; re-save it with a recent torch"
        );
    }
    load_legacy(bytes)
}

// ---------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------

/// Maximum number of values on the pickle stack (plus marks).
const MAX_STACK: usize = 1 << 22;
/// Maximum number of memo entries.
const MAX_MEMO: usize = 1 << 22;
/// Maximum number of objects (strings, tuples, dicts, ...) one pickle may create.
const MAX_OBJECTS: usize = 1 << 24;
/// Maximum size of a LONG1/LONG4 integer, in bytes.
const MAX_LONG_BYTES: usize = 64;
/// Maximum container nesting when walking the unpickled object.
const MAX_NESTING: usize = 64;
/// Maximum number of tensor dimensions.
const MAX_DIMS: usize = 64;
/// A view may read more elements than its storage holds (stride 0 broadcasts)
/// only if its materialised size stays below this many bytes.
const MAX_EXPANDED_BYTES: u64 = 64 << 20;

// ---------------------------------------------------------------------------
// Pickle opcodes
// ---------------------------------------------------------------------------

mod op {
    pub const MARK: u8 = b'(';
    pub const STOP: u8 = b'.';
    pub const POP: u8 = b'0';
    pub const POP_MARK: u8 = b'1';
    pub const DUP: u8 = b'2';
    pub const BININT: u8 = b'J';
    pub const BININT1: u8 = b'K';
    pub const BININT2: u8 = b'M';
    pub const NONE: u8 = b'N';
    pub const BINPERSID: u8 = b'Q';
    pub const REDUCE: u8 = b'R';
    pub const BINSTRING: u8 = b'T';
    pub const SHORT_BINSTRING: u8 = b'U';
    pub const BINUNICODE: u8 = b'X';
    pub const APPEND: u8 = b'a';
    pub const BUILD: u8 = b'b';
    pub const GLOBAL: u8 = b'c';
    pub const DICT: u8 = b'd';
    pub const EMPTY_DICT: u8 = b'}';
    pub const APPENDS: u8 = b'e';
    pub const BINGET: u8 = b'h';
    pub const LONG_BINGET: u8 = b'j';
    pub const LIST: u8 = b'l';
    pub const EMPTY_LIST: u8 = b']';
    pub const BINPUT: u8 = b'q';
    pub const LONG_BINPUT: u8 = b'r';
    pub const SETITEM: u8 = b's';
    pub const TUPLE: u8 = b't';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const SETITEMS: u8 = b'u';
    pub const BINFLOAT: u8 = b'G';
    pub const PROTO: u8 = 0x80;
    pub const TUPLE1: u8 = 0x85;
    pub const TUPLE2: u8 = 0x86;
    pub const TUPLE3: u8 = 0x87;
    pub const NEWTRUE: u8 = 0x88;
    pub const NEWFALSE: u8 = 0x89;
    pub const LONG1: u8 = 0x8a;
    pub const LONG4: u8 = 0x8b;
    pub const BINBYTES: u8 = b'B';
    pub const SHORT_BINBYTES: u8 = b'C';
    pub const SHORT_BINUNICODE: u8 = 0x8c;
    pub const BINUNICODE8: u8 = 0x8d;
    pub const BINBYTES8: u8 = 0x8e;
    pub const STACK_GLOBAL: u8 = 0x93;
    pub const MEMOIZE: u8 = 0x94;
    pub const FRAME: u8 = 0x95;
}

/// Name of every opcode of pickle protocols 0-5 (for error messages).
fn opcode_name(code: u8) -> Option<&'static str> {
    Some(match code {
        b'(' => "MARK",
        b'.' => "STOP",
        b'0' => "POP",
        b'1' => "POP_MARK",
        b'2' => "DUP",
        b'F' => "FLOAT",
        b'I' => "INT",
        b'J' => "BININT",
        b'K' => "BININT1",
        b'L' => "LONG",
        b'M' => "BININT2",
        b'N' => "NONE",
        b'P' => "PERSID",
        b'Q' => "BINPERSID",
        b'R' => "REDUCE",
        b'S' => "STRING",
        b'T' => "BINSTRING",
        b'U' => "SHORT_BINSTRING",
        b'V' => "UNICODE",
        b'X' => "BINUNICODE",
        b'a' => "APPEND",
        b'b' => "BUILD",
        b'c' => "GLOBAL",
        b'd' => "DICT",
        b'}' => "EMPTY_DICT",
        b'e' => "APPENDS",
        b'g' => "GET",
        b'h' => "BINGET",
        b'i' => "INST",
        b'j' => "LONG_BINGET",
        b'l' => "LIST",
        b']' => "EMPTY_LIST",
        b'o' => "OBJ",
        b'p' => "PUT",
        b'q' => "BINPUT",
        b'r' => "LONG_BINPUT",
        b's' => "SETITEM",
        b't' => "TUPLE",
        b')' => "EMPTY_TUPLE",
        b'u' => "SETITEMS",
        b'G' => "BINFLOAT",
        b'B' => "BINBYTES",
        b'C' => "SHORT_BINBYTES",
        0x80 => "PROTO",
        0x81 => "NEWOBJ",
        0x82 => "EXT1",
        0x83 => "EXT2",
        0x84 => "EXT4",
        0x85 => "TUPLE1",
        0x86 => "TUPLE2",
        0x87 => "TUPLE3",
        0x88 => "NEWTRUE",
        0x89 => "NEWFALSE",
        0x8a => "LONG1",
        0x8b => "LONG4",
        0x8c => "SHORT_BINUNICODE",
        0x8d => "BINUNICODE8",
        0x8e => "BINBYTES8",
        0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        0x92 => "NEWOBJ_EX",
        0x93 => "STACK_GLOBAL",
        0x94 => "MEMOIZE",
        0x95 => "FRAME",
        0x96 => "BYTEARRAY8",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        _ => return None,
    })
}

// ---------------------------------------------------------------------------
// Whitelisted globals
// ---------------------------------------------------------------------------

/// The only Python globals a checkpoint may reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Global {
    OrderedDict,
    RebuildTensorV2,
    RebuildTensor,
    RebuildParameter,
    RebuildParameterWithState,
    /// `torch.<Type>Storage`: only meaningful inside a storage persistent id.
    Storage(DType),
}

const ALLOWED_GLOBALS: &str = "collections.OrderedDict, torch._utils._rebuild_tensor_v2, \
     torch._utils._rebuild_tensor, torch._utils._rebuild_parameter, \
     torch._utils._rebuild_parameter_with_state, torch.{Double,Float,Half,BFloat16,Long,Int,\
     Short,Char,Byte,Bool}Storage";

impl Global {
    fn resolve(module: &str, name: &str) -> Option<Global> {
        match (module, name) {
            ("collections", "OrderedDict") => Some(Global::OrderedDict),
            ("torch._utils", "_rebuild_tensor_v2") => Some(Global::RebuildTensorV2),
            ("torch._utils", "_rebuild_tensor") => Some(Global::RebuildTensor),
            ("torch._utils", "_rebuild_parameter") => Some(Global::RebuildParameter),
            ("torch._utils", "_rebuild_parameter_with_state") => {
                Some(Global::RebuildParameterWithState)
            }
            ("torch", _) => DType::ALL
                .into_iter()
                .find(|d| storage_class(*d) == name)
                .map(Global::Storage),
            _ => None,
        }
    }

    fn path(self) -> String {
        match self {
            Global::OrderedDict => "collections.OrderedDict".into(),
            Global::RebuildTensorV2 => "torch._utils._rebuild_tensor_v2".into(),
            Global::RebuildTensor => "torch._utils._rebuild_tensor".into(),
            Global::RebuildParameter => "torch._utils._rebuild_parameter".into(),
            Global::RebuildParameterWithState => {
                "torch._utils._rebuild_parameter_with_state".into()
            }
            Global::Storage(d) => format!("torch.{}", storage_class(d)),
        }
    }
}

/// Quotes untrusted text for an error message: escapes control characters
/// and shortens very long strings.
fn show(s: &str) -> String {
    const MAX: usize = 120;
    let mut out: String = s.chars().take(MAX).flat_map(char::escape_debug).collect();
    if s.chars().nth(MAX).is_some() {
        out.push_str("...");
    }
    out
}

// ---------------------------------------------------------------------------
// Object model of the restricted VM
// ---------------------------------------------------------------------------

/// A pickle value. Anything bigger than a scalar lives in the object arena and
/// is referenced by index, so values are `Copy` and sharing (memo, DUP) has
/// Python's identity semantics without reference counting.
#[derive(Debug, Clone, Copy)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Global(Global),
    Obj(usize),
}

#[derive(Debug)]
enum Obj {
    /// An integer that does not fit in i64: minimal little-endian two's complement.
    BigInt(Vec<u8>),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Dict),
    Storage(StorageRef),
    Tensor(TensorSpec),
}

/// An insertion-ordered dict with Python key semantics (re-setting a key keeps
/// its position and replaces its value).
#[derive(Debug, Default)]
struct Dict {
    items: Vec<(Value, Value)>,
    index: HashMap<DictKey, usize>,
}

/// Hashable form of a dict key.
#[derive(Debug, PartialEq, Eq, Hash)]
enum DictKey {
    None,
    Int(i64),
    Float(u64),
    Str(String),
    Bytes(Vec<u8>),
    BigInt(Vec<u8>),
    Global(Global),
    /// Other hashable objects (tuples, tensors, ...) compare by identity.
    Ident(usize),
}

/// A storage (or a view of one) named by a persistent id.
#[derive(Debug, Clone)]
struct StorageRef {
    /// Zip: the entry name under `data/`; legacy: the root key.
    key: String,
    dtype: DType,
    /// Elements in the root storage.
    numel: u64,
    /// Legacy only: the storage is `root[offset .. offset + len]` (elements).
    view: Option<(u64, u64)>,
}

/// What `_rebuild_tensor_v2` was asked to build.
#[derive(Debug, Clone)]
struct TensorSpec {
    storage: StorageRef,
    offset: u64,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

/// Which persistent ids a pickle may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PidMode {
    /// None (header pickles of the legacy format).
    Forbidden,
    /// `('storage', type, key, location, numel)`.
    Zip,
    /// `('storage', type, root_key, location, numel, view_metadata)`.
    Legacy,
}

/// The result of running one pickle.
struct Unpickled {
    objs: Vec<Obj>,
    root: Value,
    /// Offset just after the STOP opcode.
    end: usize,
    /// Legacy format: every root storage named by a persistent id, with the
    /// (dtype, numel) of its first mention.
    roots: HashMap<String, (DType, u64)>,
}

impl Unpickled {
    fn obj(&self, v: Value) -> Option<&Obj> {
        match v {
            Value::Obj(i) => self.objs.get(i),
            _ => None,
        }
    }
}

/// Short description of a value's type for error messages.
fn kind(objs: &[Obj], v: Value) -> &'static str {
    match v {
        Value::None => "None",
        Value::Bool(_) => "a bool",
        Value::Int(_) => "an int",
        Value::Float(_) => "a float",
        Value::Global(_) => "a global",
        Value::Obj(i) => match objs.get(i) {
            Some(Obj::BigInt(_)) => "an int",
            Some(Obj::Str(_)) => "a str",
            Some(Obj::Bytes(_)) => "a bytes",
            Some(Obj::Tuple(_)) => "a tuple",
            Some(Obj::List(_)) => "a list",
            Some(Obj::Dict(_)) => "a dict",
            Some(Obj::Storage(_)) => "a storage",
            Some(Obj::Tensor(_)) => "a tensor",
            None => "an invalid reference",
        },
    }
}

// ---------------------------------------------------------------------------
// The restricted pickle machine
// ---------------------------------------------------------------------------

struct Vm<'a> {
    data: &'a [u8],
    pos: usize,
    /// Offset of the opcode being executed (for error messages).
    at: usize,
    mode: PidMode,
    stack: Vec<Value>,
    /// Stack heights at each MARK.
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    objs: Vec<Obj>,
    /// Legacy: first (dtype, numel) seen for each root key.
    roots: HashMap<String, (DType, u64)>,
    /// Legacy: first (offset, len) seen for each view key.
    views: HashMap<String, (u64, u64)>,
}

/// Runs the pickle that starts at `data[start..]`. Error offsets are offsets
/// into `data`.
fn unpickle(data: &[u8], start: usize, mode: PidMode) -> Result<Unpickled> {
    let mut vm = Vm {
        data,
        pos: start,
        at: start,
        mode,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        objs: Vec::new(),
        roots: HashMap::new(),
        views: HashMap::new(),
    };
    let root = vm.run()?;
    Ok(Unpickled {
        roots: vm.roots,
        objs: vm.objs,
        root,
        end: vm.pos,
    })
}

impl<'a> Vm<'a> {
    // ----- input -----

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let data: &'a [u8] = self.data;
        let slice = self
            .pos
            .checked_add(n)
            .and_then(|end| data.get(self.pos..end))
            .ok_or_else(|| {
                anyhow!(
                    "pickle data ends unexpectedly (operand of the opcode at byte {} needs {} bytes, \
                     {} left): truncated file?",
                    self.at,
                    n,
                    data.len().saturating_sub(self.pos)
                )
            })?;
        self.pos += n;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(arr::<1>(self.take(1)?)[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(arr(self.take(2)?)))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(arr(self.take(4)?)))
    }
    fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_le_bytes(arr(self.take(4)?)))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(arr(self.take(8)?)))
    }

    /// Length operand that must fit in usize.
    fn len_u64(&mut self) -> Result<usize> {
        let n = self.u64()?;
        usize::try_from(n).map_err(|_| self.err(format!("length {n} too large")))
    }

    /// Length operand stored as a signed 32-bit int.
    fn len_i32(&mut self) -> Result<usize> {
        let n = self.i32()?;
        usize::try_from(n).map_err(|_| self.err(format!("negative length {n}")))
    }

    /// A newline-terminated line (GLOBAL operands).
    fn line(&mut self) -> Result<&'a str> {
        let data: &'a [u8] = self.data;
        let rest = data.get(self.pos..).unwrap_or_default();
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| self.err("unterminated GLOBAL operand (truncated file?)"))?;
        let line = self.take(n)?;
        self.take(1)?;
        std::str::from_utf8(line).map_err(|_| self.err("GLOBAL operand is not valid UTF-8"))
    }

    fn utf8(&self, bytes: &[u8]) -> Result<String> {
        String::from_utf8(bytes.to_vec()).map_err(|_| self.err("string is not valid UTF-8"))
    }

    fn err(&self, msg: impl Display) -> anyhow::Error {
        anyhow!("{msg} (pickle opcode at byte {})", self.at)
    }

    // ----- stack, memo, arena -----

    fn push(&mut self, v: Value) -> Result<()> {
        if self.stack.len() >= MAX_STACK {
            return Err(self.err("pickle stack too deep"));
        }
        self.stack.push(v);
        Ok(())
    }

    /// Bottom of the current stack frame (values below the last MARK are not
    /// reachable, like in Python's unpickler).
    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self) -> Result<Value> {
        if self.stack.len() <= self.floor() {
            return Err(self.err("pickle stack underflow"));
        }
        self.stack
            .pop()
            .ok_or_else(|| self.err("pickle stack underflow"))
    }

    fn top(&self) -> Result<Value> {
        if self.stack.len() <= self.floor() {
            return Err(self.err("pickle stack underflow"));
        }
        self.stack
            .last()
            .copied()
            .ok_or_else(|| self.err("pickle stack underflow"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let m = self
            .marks
            .pop()
            .ok_or_else(|| self.err("no MARK on the pickle stack"))?;
        if m > self.stack.len() {
            return Err(self.err("corrupt MARK"));
        }
        Ok(self.stack.split_off(m))
    }

    fn alloc(&mut self, obj: Obj) -> Result<Value> {
        if self.objs.len() >= MAX_OBJECTS {
            return Err(self.err("too many objects in pickle"));
        }
        self.objs.push(obj);
        Ok(Value::Obj(self.objs.len() - 1))
    }

    fn memo_put(&mut self, idx: u32) -> Result<()> {
        let v = self.top()?;
        if self.memo.len() >= MAX_MEMO && !self.memo.contains_key(&idx) {
            return Err(self.err("pickle memo too large"));
        }
        self.memo.insert(idx, v);
        Ok(())
    }

    fn memo_get(&mut self, idx: u32) -> Result<()> {
        let v = *self
            .memo
            .get(&idx)
            .ok_or_else(|| self.err(format!("memo entry {idx} is undefined")))?;
        self.push(v)
    }

    fn obj(&self, v: Value) -> Option<&Obj> {
        match v {
            Value::Obj(i) => self.objs.get(i),
            _ => None,
        }
    }

    fn kind(&self, v: Value) -> &'static str {
        kind(&self.objs, v)
    }

    fn str_of(&self, v: Value) -> Option<&str> {
        match self.obj(v) {
            Some(Obj::Str(s)) => Some(s),
            Some(Obj::Bytes(b)) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// Items of a tuple (or list) value.
    fn seq(&self, v: Value) -> Option<&[Value]> {
        match self.obj(v) {
            Some(Obj::Tuple(items)) | Some(Obj::List(items)) => Some(items),
            _ => None,
        }
    }

    fn dict_key(&self, k: Value) -> Result<DictKey> {
        Ok(match k {
            Value::None => DictKey::None,
            Value::Bool(b) => DictKey::Int(i64::from(b)),
            Value::Int(i) => DictKey::Int(i),
            Value::Float(f) => {
                // Python: 1.0 == 1 as dict keys.
                if f.fract() == 0.0 && (-9.2e18..=9.2e18).contains(&f) {
                    DictKey::Int(f as i64)
                } else {
                    DictKey::Float(f.to_bits())
                }
            }
            Value::Global(g) => DictKey::Global(g),
            Value::Obj(i) => match self.objs.get(i) {
                Some(Obj::Str(s)) => DictKey::Str(s.clone()),
                Some(Obj::Bytes(b)) => DictKey::Bytes(b.clone()),
                Some(Obj::BigInt(b)) => DictKey::BigInt(b.clone()),
                Some(Obj::List(_)) | Some(Obj::Dict(_)) => {
                    return Err(self.err(format!("unhashable dict key ({})", self.kind(k))));
                }
                _ => DictKey::Ident(i),
            },
        })
    }

    /// `dict[k] = v` on the dict value `target`.
    fn dict_set(&mut self, target: Value, k: Value, v: Value, opname: &str) -> Result<()> {
        let key = self.dict_key(k)?;
        let found = self.kind(target);
        let Some(Obj::Dict(d)) = (match target {
            Value::Obj(i) => self.objs.get_mut(i),
            _ => None,
        }) else {
            return Err(self.err(format!("{opname} on {found}, expected a dict")));
        };
        match d.index.get(&key) {
            Some(&i) => {
                if let Some(slot) = d.items.get_mut(i) {
                    slot.1 = v;
                }
            }
            None => {
                d.index.insert(key, d.items.len());
                d.items.push((k, v));
            }
        }
        Ok(())
    }

    fn list_extend(&mut self, target: Value, items: Vec<Value>, opname: &str) -> Result<()> {
        let found = self.kind(target);
        match target {
            Value::Obj(i) => match self.objs.get_mut(i) {
                Some(Obj::List(l)) => {
                    l.extend(items);
                    Ok(())
                }
                _ => Err(self.err(format!("{opname} on {found}, expected a list"))),
            },
            _ => Err(self.err(format!("{opname} on {found}, expected a list"))),
        }
    }

    /// Pushes a LONG1/LONG4 integer (little-endian two's complement).
    fn push_long(&mut self, bytes: &[u8]) -> Result<()> {
        let mut b = bytes.to_vec();
        // Drop redundant sign-extension bytes.
        while b.len() > 1 {
            let (last, prev) = match (b.last(), b.get(b.len() - 2)) {
                (Some(&l), Some(&p)) => (l, p),
                _ => break,
            };
            if (last == 0x00 && prev & 0x80 == 0) || (last == 0xff && prev & 0x80 != 0) {
                b.pop();
            } else {
                break;
            }
        }
        if b.len() <= 8 {
            let negative = b.last().is_some_and(|&l| l & 0x80 != 0);
            let mut full = if negative { [0xffu8; 8] } else { [0u8; 8] };
            for (dst, src) in full.iter_mut().zip(&b) {
                *dst = *src;
            }
            self.push(Value::Int(i64::from_le_bytes(full)))
        } else {
            let v = self.alloc(Obj::BigInt(b))?;
            self.push(v)
        }
    }

    fn refuse_opcode(&self, code: u8) -> anyhow::Error {
        match opcode_name(code) {
            Some(name) => anyhow!(
                "refusing pickle opcode {name} (0x{code:02x}) at byte {}: only tensor state dicts \
                 are accepted",
                self.at
            ),
            None => anyhow!(
                "unknown pickle opcode 0x{code:02x} at byte {}: not a valid pickle stream \
                 (is this a PyTorch checkpoint?)",
                self.at
            ),
        }
    }

    fn global(&mut self, module: &str, name: &str) -> Result<()> {
        match Global::resolve(module, name) {
            Some(g) => self.push(Value::Global(g)),
            None if module == "torch" && name.ends_with("Storage") => Err(anyhow!(
                "unsupported tensor storage type 'torch.{}' at byte {}: supported are \
                 torch.{{Double,Float,Half,BFloat16,Long,Int,Short,Char,Byte,Bool}}Storage",
                show(name),
                self.at
            )),
            None => Err(anyhow!(
                "refusing pickle global '{}.{}' at byte {}: only tensor state dicts are accepted \
                 (allowed: {ALLOWED_GLOBALS})",
                show(module),
                show(name),
                self.at
            )),
        }
    }

    // ----- the main loop -----

    fn run(&mut self) -> Result<Value> {
        loop {
            self.at = self.pos;
            let code = match self.take(1) {
                Ok(b) => arr::<1>(b)[0],
                Err(_) => bail!(
                    "pickle data ends at byte {} without a STOP opcode: truncated file?",
                    self.pos
                ),
            };
            match code {
                op::PROTO => {
                    let v = self.u8()?;
                    if v > 5 {
                        return Err(self.err(format!("unsupported pickle protocol {v}")));
                    }
                }
                op::FRAME => {
                    // Frames are only a buffering hint; check the frame is there.
                    let n = self.len_u64()?;
                    if n > self.data.len().saturating_sub(self.pos) {
                        return Err(self.err(
                            "pickle frame extends past the end of the data: truncated file?",
                        ));
                    }
                }
                op::STOP => {
                    if !self.marks.is_empty() {
                        return Err(self.err("unbalanced MARK at STOP"));
                    }
                    return self.pop();
                }
                op::MARK => {
                    if self.marks.len() >= MAX_STACK {
                        return Err(self.err("too many MARKs"));
                    }
                    self.marks.push(self.stack.len());
                }
                op::POP => {
                    // Python's POP discards a MARK when the current frame is empty.
                    if !self.marks.is_empty() && self.stack.len() == self.floor() {
                        self.marks.pop();
                    } else {
                        self.pop()?;
                    }
                }
                op::POP_MARK => {
                    self.pop_mark()?;
                }
                op::DUP => {
                    let v = self.top()?;
                    self.push(v)?;
                }
                op::NONE => self.push(Value::None)?,
                op::NEWTRUE => self.push(Value::Bool(true))?,
                op::NEWFALSE => self.push(Value::Bool(false))?,
                op::BININT => {
                    let v = self.i32()?;
                    self.push(Value::Int(i64::from(v)))?
                }
                op::BININT1 => {
                    let v = self.u8()?;
                    self.push(Value::Int(i64::from(v)))?
                }
                op::BININT2 => {
                    let v = self.u16()?;
                    self.push(Value::Int(i64::from(v)))?
                }
                op::LONG1 => {
                    let n = usize::from(self.u8()?);
                    let b = self.take(n)?;
                    self.push_long(b)?;
                }
                op::LONG4 => {
                    let n = self.len_i32()?;
                    if n > MAX_LONG_BYTES {
                        return Err(self.err(format!("LONG4 integer of {n} bytes is too large")));
                    }
                    let b = self.take(n)?;
                    self.push_long(b)?;
                }
                op::BINFLOAT => {
                    let v = f64::from_be_bytes(arr(self.take(8)?));
                    self.push(Value::Float(v))?;
                }
                op::SHORT_BINUNICODE
                | op::BINUNICODE
                | op::BINUNICODE8
                | op::SHORT_BINSTRING
                | op::BINSTRING => {
                    let n = match code {
                        op::SHORT_BINUNICODE | op::SHORT_BINSTRING => usize::from(self.u8()?),
                        op::BINUNICODE => self.u32()? as usize,
                        op::BINSTRING => self.len_i32()?,
                        _ => self.len_u64()?,
                    };
                    // torch.load decodes Python 2 `str` (BINSTRING) as UTF-8.
                    let raw = self.take(n)?;
                    let s = self.utf8(raw)?;
                    let v = self.alloc(Obj::Str(s))?;
                    self.push(v)?;
                }
                op::SHORT_BINBYTES | op::BINBYTES | op::BINBYTES8 => {
                    let n = match code {
                        op::SHORT_BINBYTES => usize::from(self.u8()?),
                        op::BINBYTES => self.u32()? as usize,
                        _ => self.len_u64()?,
                    };
                    let b = self.take(n)?.to_vec();
                    let v = self.alloc(Obj::Bytes(b))?;
                    self.push(v)?;
                }
                op::EMPTY_DICT => {
                    let v = self.alloc(Obj::Dict(Dict::default()))?;
                    self.push(v)?;
                }
                op::EMPTY_LIST => {
                    let v = self.alloc(Obj::List(Vec::new()))?;
                    self.push(v)?;
                }
                op::EMPTY_TUPLE => {
                    let v = self.alloc(Obj::Tuple(Vec::new()))?;
                    self.push(v)?;
                }
                op::TUPLE => {
                    let items = self.pop_mark()?;
                    let v = self.alloc(Obj::Tuple(items))?;
                    self.push(v)?;
                }
                op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                    let n = usize::from(code - op::TUPLE1) + 1;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    let v = self.alloc(Obj::Tuple(items))?;
                    self.push(v)?;
                }
                op::LIST => {
                    let items = self.pop_mark()?;
                    let v = self.alloc(Obj::List(items))?;
                    self.push(v)?;
                }
                op::DICT => {
                    let items = self.pop_mark()?;
                    if items.len() % 2 != 0 {
                        return Err(self.err("DICT with an odd number of items"));
                    }
                    let d = self.alloc(Obj::Dict(Dict::default()))?;
                    for pair in items.chunks_exact(2) {
                        if let [k, v] = pair {
                            self.dict_set(d, *k, *v, "DICT")?;
                        }
                    }
                    self.push(d)?;
                }
                op::APPEND => {
                    let v = self.pop()?;
                    let list = self.top()?;
                    self.list_extend(list, vec![v], "APPEND")?;
                }
                op::APPENDS => {
                    let items = self.pop_mark()?;
                    let list = self.top()?;
                    self.list_extend(list, items, "APPENDS")?;
                }
                op::SETITEM => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let d = self.top()?;
                    self.dict_set(d, k, v, "SETITEM")?;
                }
                op::SETITEMS => {
                    let items = self.pop_mark()?;
                    if items.len() % 2 != 0 {
                        return Err(self.err("SETITEMS with an odd number of items"));
                    }
                    let d = self.top()?;
                    for pair in items.chunks_exact(2) {
                        if let [k, v] = pair {
                            self.dict_set(d, *k, *v, "SETITEMS")?;
                        }
                    }
                }
                op::BINPUT => {
                    let i = self.u8()?;
                    self.memo_put(u32::from(i))?;
                }
                op::LONG_BINPUT => {
                    let i = self.u32()?;
                    self.memo_put(i)?;
                }
                op::MEMOIZE => {
                    let i =
                        u32::try_from(self.memo.len()).map_err(|_| self.err("memo overflow"))?;
                    self.memo_put(i)?;
                }
                op::BINGET => {
                    let i = self.u8()?;
                    self.memo_get(u32::from(i))?;
                }
                op::LONG_BINGET => {
                    let i = self.u32()?;
                    self.memo_get(i)?;
                }
                op::GLOBAL => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.global(module, name)?;
                }
                op::STACK_GLOBAL => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Some(m), Some(n)) = (self.str_of(module), self.str_of(name)) else {
                        return Err(self.err("STACK_GLOBAL operands are not strings"));
                    };
                    let (m, n) = (m.to_owned(), n.to_owned());
                    self.global(&m, &n)?;
                }
                op::REDUCE => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    let v = self.reduce(func, args)?;
                    self.push(v)?;
                }
                op::BUILD => {
                    // The only BUILD torch writes here sets the `_metadata`
                    // attribute of the state dict (an OrderedDict). Accept
                    // BUILD on dicts and drop the state; refuse anything else.
                    let state = self.pop()?;
                    let target = self.top()?;
                    if !matches!(self.obj(target), Some(Obj::Dict(_))) {
                        return Err(self.err(format!(
                            "refusing BUILD on {} (state: {}): only dicts may carry state",
                            self.kind(target),
                            self.kind(state)
                        )));
                    }
                }
                op::BINPERSID => {
                    let pid = self.pop()?;
                    let v = self.persistent_load(pid)?;
                    self.push(v)?;
                }
                other => return Err(self.refuse_opcode(other)),
            }
        }
    }

    // ----- REDUCE of the whitelisted callables -----

    fn reduce(&mut self, func: Value, args: Value) -> Result<Value> {
        let Value::Global(g) = func else {
            return Err(self.err(format!(
                "REDUCE on {}, which is not callable",
                self.kind(func)
            )));
        };
        let Some(Obj::Tuple(args)) = self.obj(args) else {
            return Err(self.err(format!(
                "REDUCE of {} with {} as arguments, expected a tuple",
                g.path(),
                self.kind(args)
            )));
        };
        let args = args.clone();
        let bad_args = |vm: &Self| {
            vm.err(format!(
                "unexpected arguments for {} ({} arguments: {})",
                g.path(),
                args.len(),
                args.iter()
                    .map(|&a| vm.kind(a))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        };
        match g {
            Global::OrderedDict => {
                if !args.is_empty() {
                    return Err(bad_args(self));
                }
                self.alloc(Obj::Dict(Dict::default()))
            }
            Global::RebuildTensorV2 => match args.as_slice() {
                [storage, offset, size, stride, requires_grad, hooks]
                | [storage, offset, size, stride, requires_grad, hooks, _] => {
                    let metadata_ok = match args.get(6) {
                        Some(&m) => self.is_dict_or_none(m),
                        None => true,
                    };
                    if !matches!(requires_grad, Value::Bool(_))
                        || !self.is_dict_or_none(*hooks)
                        || !metadata_ok
                    {
                        return Err(bad_args(self));
                    }
                    let spec = self.tensor_spec(*storage, *offset, *size, *stride)?;
                    self.alloc(Obj::Tensor(spec))
                }
                _ => Err(bad_args(self)),
            },
            Global::RebuildTensor => match args.as_slice() {
                [storage, offset, size, stride] => {
                    let spec = self.tensor_spec(*storage, *offset, *size, *stride)?;
                    self.alloc(Obj::Tensor(spec))
                }
                _ => Err(bad_args(self)),
            },
            Global::RebuildParameter | Global::RebuildParameterWithState => {
                let (tensor, requires_grad, hooks) = match (g, args.as_slice()) {
                    (Global::RebuildParameter, [t, r, h]) => (*t, *r, *h),
                    (Global::RebuildParameterWithState, [t, r, h, _state]) => (*t, *r, *h),
                    _ => return Err(bad_args(self)),
                };
                if !matches!(self.obj(tensor), Some(Obj::Tensor(_)))
                    || !matches!(requires_grad, Value::Bool(_))
                    || !self.is_dict_or_none(hooks)
                {
                    return Err(bad_args(self));
                }
                // A Parameter is just its data for our purposes.
                Ok(tensor)
            }
            Global::Storage(_) => Err(self.err(format!(
                "refusing to call {}: storages may only appear in persistent ids",
                g.path()
            ))),
        }
    }

    fn is_dict_or_none(&self, v: Value) -> bool {
        matches!(v, Value::None) || matches!(self.obj(v), Some(Obj::Dict(_)))
    }

    fn non_negative(&self, v: Value, what: &str) -> Result<u64> {
        match v {
            Value::Int(i) => {
                u64::try_from(i).map_err(|_| self.err(format!("negative tensor {what} {i}")))
            }
            _ => Err(self.err(format!(
                "tensor {what} is {}, expected an int",
                self.kind(v)
            ))),
        }
    }

    fn dims(&self, v: Value, what: &str) -> Result<Vec<usize>> {
        let items = self.seq(v).ok_or_else(|| {
            self.err(format!(
                "tensor {what} is {}, expected a tuple",
                self.kind(v)
            ))
        })?;
        if items.len() > MAX_DIMS {
            return Err(self.err(format!(
                "tensor has {} dimensions (max {MAX_DIMS})",
                items.len()
            )));
        }
        items
            .iter()
            .map(|&d| {
                let d = self.non_negative(d, what)?;
                usize::try_from(d).map_err(|_| self.err(format!("tensor {what} {d} too large")))
            })
            .collect()
    }

    fn tensor_spec(
        &self,
        storage: Value,
        offset: Value,
        size: Value,
        stride: Value,
    ) -> Result<TensorSpec> {
        let Some(Obj::Storage(storage_ref)) = self.obj(storage) else {
            return Err(self.err(format!(
                "tensor storage is {}, expected a storage persistent id",
                self.kind(storage)
            )));
        };
        let offset = self.non_negative(offset, "storage offset")?;
        let shape = self.dims(size, "size")?;
        let stride = self.dims(stride, "stride")?;
        if shape.len() != stride.len() {
            return Err(self.err(format!(
                "tensor size {shape:?} and stride {stride:?} have different lengths"
            )));
        }
        Ok(TensorSpec {
            storage: storage_ref.clone(),
            offset,
            shape,
            stride,
        })
    }

    // ----- persistent ids (storages) -----

    fn persistent_load(&mut self, pid: Value) -> Result<Value> {
        if self.mode == PidMode::Forbidden {
            return Err(self.err("unexpected persistent id (BINPERSID) in this pickle"));
        }
        let Some(Obj::Tuple(items)) = self.obj(pid) else {
            return Err(self.err(format!(
                "persistent id is {}, expected a tuple",
                self.kind(pid)
            )));
        };
        let items = items.clone();
        let typename = items.first().and_then(|&t| self.str_of(t)).unwrap_or("");
        if typename == "module" {
            return Err(self.err(
                "the checkpoint contains a pickled nn.Module (whole-model save), not a state \
                 dict; refusing it (re-save it with torch.save(model.state_dict(), ...))",
            ));
        }
        if typename != "storage" {
            return Err(self.err(format!("unknown persistent id type '{}'", show(typename))));
        }
        let malformed = |vm: &Self| {
            vm.err(format!(
                "malformed storage persistent id ({})",
                items
                    .iter()
                    .map(|&a| vm.kind(a))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        };
        let (stype, key, numel, view_meta) = match (self.mode, items.as_slice()) {
            (PidMode::Zip, [_, stype, key, _location, numel]) => (*stype, *key, *numel, None),
            (PidMode::Legacy, [_, stype, key, _location, numel, view]) => {
                (*stype, *key, *numel, Some(*view))
            }
            _ => return Err(malformed(self)),
        };
        let Value::Global(Global::Storage(dtype)) = stype else {
            return Err(malformed(self));
        };
        let key = self.key_string(key).ok_or_else(|| malformed(self))?;
        let numel = self.non_negative(numel, "storage size")?;
        let mut storage = StorageRef {
            key: key.clone(),
            dtype,
            numel,
            view: None,
        };
        if self.mode == PidMode::Legacy {
            // torch uses the first definition of a root storage and of a view.
            let &mut (root_dtype, root_numel) =
                self.roots.entry(key.clone()).or_insert((dtype, numel));
            if root_dtype != dtype {
                return Err(self.err(format!(
                    "storage '{}' used both as {} and {}",
                    show(&key),
                    root_dtype.name(),
                    dtype.name()
                )));
            }
            storage.numel = root_numel;
            match view_meta {
                Some(Value::None) | None => {}
                Some(view) => {
                    let parts = self.seq(view).unwrap_or_default();
                    let [view_key, offset, len] = parts else {
                        return Err(malformed(self));
                    };
                    let (view_key, offset, len) = (*view_key, *offset, *len);
                    let view_key = self.key_string(view_key).ok_or_else(|| malformed(self))?;
                    let offset = self.non_negative(offset, "storage view offset")?;
                    let len = self.non_negative(len, "storage view size")?;
                    let &mut (offset, len) = self.views.entry(view_key).or_insert((offset, len));
                    if offset.checked_add(len).is_none_or(|end| end > root_numel) {
                        return Err(self.err(format!(
                            "storage view [{offset}, +{len}) exceeds its {root_numel}-element storage '{}'",
                            show(&key)
                        )));
                    }
                    storage.view = Some((offset, len));
                }
            }
        }
        self.alloc(Obj::Storage(storage))
    }

    /// Storage keys are strings (old files may use ints).
    fn key_string(&self, v: Value) -> Option<String> {
        match v {
            Value::Int(i) => Some(i.to_string()),
            _ => self.str_of(v).map(str::to_owned),
        }
    }
}

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
fn flatten(p: &Unpickled, pickle_len: usize) -> Result<Vec<(String, TensorSpec)>> {
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
                            Some(Obj::Str(s)) => Some(s.clone()),
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
fn output_budget(file_len: usize) -> u64 {
    (file_len as u64)
        .saturating_mul(2)
        .saturating_add(MAX_EXPANDED_BYTES)
}

/// Copies the view `spec` out of `storage` (the bytes of the storage the view
/// indexes, `storage.len()` a multiple of the element size).
fn materialize(spec: &TensorSpec, storage: &[u8], budget: &mut u64) -> Result<RawTensor> {
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

// ---------------------------------------------------------------------------
// Zip format
// ---------------------------------------------------------------------------

type Archive<'a> = zip::ZipArchive<Cursor<&'a [u8]>>;

fn load_zip(bytes: &[u8]) -> Result<Vec<(String, RawTensor)>> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| anyhow!("not a valid zip archive: {e}"))?;

    let prefix = find_prefix(&archive)?;
    let pkl_name = format!("{prefix}/data.pkl");
    let pkl = read_entry(&mut archive, &pkl_name, bytes.len())?;
    let byteorder_name = format!("{prefix}/byteorder");
    let big_endian = if archive.index_for_name(&byteorder_name).is_some() {
        let order = read_entry(&mut archive, &byteorder_name, bytes.len())?;
        match String::from_utf8_lossy(&order).trim() {
            "little" => false,
            "big" => true,
            other => bail!("{byteorder_name}: unknown byte order '{}'", show(other)),
        }
    } else {
        false
    };
    load_zip_pickle(&mut archive, &prefix, &pkl, big_endian, bytes.len())
}

/// All records live in one top-level folder with an arbitrary name (the file
/// stem, or `archive`): find the one holding `data.pkl`.
fn find_prefix(archive: &Archive<'_>) -> Result<String> {
    let mut candidates = Vec::new();
    for name in archive.file_names() {
        let name = name.map_err(|e| anyhow!("bad zip entry name: {e}"))?;
        if let Some(prefix) = name.strip_suffix("/data.pkl")
            && !prefix.is_empty()
            && !prefix.contains('/')
        {
            candidates.push(prefix.to_owned());
        }
    }
    match candidates.as_slice() {
        [p] => Ok(p.clone()),
        [] => bail!("zip archive without a <name>/data.pkl record: not a torch.save checkpoint"),
        _ => bail!(
            "zip archive with several */data.pkl records ({})",
            candidates
                .iter()
                .map(|c| show(c))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Runs `<prefix>/data.pkl` and reads the storages it references.
fn load_zip_pickle(
    archive: &mut Archive<'_>,
    prefix: &str,
    pkl: &[u8],
    big_endian: bool,
    file_len: usize,
) -> Result<Vec<(String, RawTensor)>> {
    let pkl_name = format!("{prefix}/data.pkl");
    let parsed = unpickle(pkl, 0, PidMode::Zip).map_err(|e| anyhow!("{pkl_name}: {e:#}"))?;
    let specs = flatten(&parsed, pkl.len()).map_err(|e| anyhow!("{pkl_name}: {e:#}"))?;

    // Read each storage once, for all the tensors that view it.
    let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
    let mut group_of: HashMap<&str, usize> = HashMap::new();
    for (i, (_, spec)) in specs.iter().enumerate() {
        let g = *group_of
            .entry(spec.storage.key.as_str())
            .or_insert_with(|| {
                groups.push((spec.storage.key.as_str(), Vec::new()));
                groups.len() - 1
            });
        if let Some((_, members)) = groups.get_mut(g) {
            members.push(i);
        }
    }
    let mut budget = output_budget(file_len);
    // Storages are STORED records, so together they cannot exceed the file:
    // this bounds the work on archives whose records overlap.
    let mut read_budget = file_len;
    let mut tensors: Vec<Option<RawTensor>> = vec![None; specs.len()];
    for (key, members) in &groups {
        let entry = format!("{prefix}/data/{key}");
        let data = read_entry(archive, &entry, read_budget)?;
        read_budget = read_budget.saturating_sub(data.len());
        for &i in members {
            let Some((name, spec)) = specs.get(i) else {
                continue;
            };
            let declared = spec
                .storage
                .numel
                .checked_mul(spec.storage.dtype.size() as u64)
                .ok_or_else(|| anyhow!("storage '{}' size overflows", show(key)))?;
            if declared != data.len() as u64 {
                bail!(
                    "{entry} has {} bytes but tensor '{}' declares {} {} elements",
                    data.len(),
                    show(name),
                    spec.storage.numel,
                    spec.storage.dtype.name()
                );
            }
            let mut t = materialize(spec, &data, &mut budget)
                .map_err(|e| anyhow!("tensor '{}': {e:#}", show(name)))?;
            if big_endian {
                for c in t.data.chunks_exact_mut(t.dtype.size()) {
                    c.reverse();
                }
            }
            if let Some(slot) = tensors.get_mut(i) {
                *slot = Some(t);
            }
        }
    }
    collect(specs, tensors)
}

/// Pairs names with their materialised tensors, in file order.
fn collect(
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

/// Reads one STORED entry, refusing entries larger than `limit` bytes (the
/// archive size, or what is left of it).
fn read_entry(archive: &mut Archive<'_>, name: &str, limit: usize) -> Result<Vec<u8>> {
    let mut f = archive
        .by_name(name)
        .map_err(|e| anyhow!("cannot open archive record {name}: {e}"))?;
    if f.compression() != zip::CompressionMethod::Stored {
        bail!(
            "archive record {name} is compressed ({:?}); torch.save writes uncompressed records",
            f.compression()
        );
    }
    let size = f.size();
    if size > limit as u64 {
        bail!("archive record {name} claims {size} bytes, more than the archive can hold");
    }
    let mut buf = Vec::with_capacity(size as usize);
    f.by_ref()
        .take(size)
        .read_to_end(&mut buf)
        .map_err(|e| anyhow!("cannot read archive record {name}: {e}"))?;
    if buf.len() as u64 != size {
        bail!(
            "archive record {name} is truncated ({} of {size} bytes)",
            buf.len()
        );
    }
    // Reading to the end lets the zip reader verify the CRC.
    let mut rest = Vec::new();
    f.read_to_end(&mut rest)
        .map_err(|e| anyhow!("cannot read archive record {name}: {e}"))?;
    if !rest.is_empty() {
        bail!("archive record {name} is longer than its declared size");
    }
    Ok(buf)
}

// ---------------------------------------------------------------------------
// Legacy format
// ---------------------------------------------------------------------------

/// `0x1950a86a20f9469cfc6c` as minimal little-endian two's complement.
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const LEGACY_PROTOCOL_VERSION: i64 = 1001;

fn load_legacy(bytes: &[u8]) -> Result<Vec<(String, RawTensor)>> {
    // 1. magic number
    let magic = unpickle(bytes, 0, PidMode::Forbidden)?;
    if !matches!(magic.obj(magic.root), Some(Obj::BigInt(b)) if b.as_slice() == LEGACY_MAGIC) {
        bail!(
            "not a PyTorch checkpoint: a legacy torch.save file starts with a pickled magic \
             number, found {}",
            kind(&magic.objs, magic.root)
        );
    }
    // 2. protocol version
    let version = unpickle(bytes, magic.end, PidMode::Forbidden)?;
    match version.root {
        Value::Int(LEGACY_PROTOCOL_VERSION) => {}
        Value::Int(v) => bail!("unsupported legacy checkpoint protocol version {v}"),
        other => bail!(
            "invalid legacy checkpoint protocol version ({})",
            kind(&version.objs, other)
        ),
    }
    // 3. sys_info (endianness of the writer; storages are always little-endian)
    let sys_info = unpickle(bytes, version.end, PidMode::Forbidden)?;
    if !matches!(sys_info.obj(sys_info.root), Some(Obj::Dict(_))) {
        bail!(
            "invalid legacy checkpoint header: sys_info is {}",
            kind(&sys_info.objs, sys_info.root)
        );
    }
    // 4. the object itself
    let main_start = sys_info.end;
    let main = unpickle(bytes, main_start, PidMode::Legacy)?;
    let specs = flatten(&main, main.end - main_start)?;
    // 5. storage keys
    let keys = unpickle(bytes, main.end, PidMode::Forbidden)?;
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
                Some(Obj::Str(s)) => s.clone(),
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

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixture_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pth")
    }

    fn fixture(name: &str) -> Vec<u8> {
        let p = fixture_dir().join(name);
        std::fs::read(&p).unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", p.display()))
    }

    const GOOD: [&str; 6] = [
        "sd_zip.pth",
        "sd_zip_p4.pth",
        "sd_legacy.pth",
        "nested_zip.pth",
        "nested_legacy.pth",
        "legacy_views.pth",
    ];
    const ALL: [&str; 8] = [
        "sd_zip.pth",
        "sd_zip_p4.pth",
        "sd_legacy.pth",
        "nested_zip.pth",
        "nested_legacy.pth",
        "legacy_views.pth",
        "malicious.pkl",
        "malicious_zip.pth",
    ];

    fn dtype_by_name(s: &str) -> DType {
        DType::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .unwrap_or_else(|| panic!("dtype {s}"))
    }

    /// Integer value of element `i` of an integer/bool tensor.
    fn int_at(t: &RawTensor, i: usize) -> i64 {
        let es = t.dtype.size();
        let c = &t.data[i * es..(i + 1) * es];
        match t.dtype {
            DType::I64 => i64::from_le_bytes(c.try_into().unwrap()),
            DType::I32 => i64::from(i32::from_le_bytes(c.try_into().unwrap())),
            DType::I16 => i64::from(i16::from_le_bytes(c.try_into().unwrap())),
            DType::I8 => i64::from(c[0] as i8),
            DType::U8 | DType::Bool => i64::from(c[0]),
            _ => panic!("not an integer dtype"),
        }
    }

    #[test]
    fn good_files_match_expected_json() {
        let expected: serde_json::Value =
            serde_json::from_slice(&fixture("expected.json")).expect("expected.json");
        for file in GOOD {
            let path = fixture_dir().join(file);
            let got = load_pth(&path).unwrap_or_else(|e| panic!("{e:#}"));
            let want = expected[file]
                .as_array()
                .unwrap_or_else(|| panic!("{file} in expected.json"));
            let got_names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
            let want_names: Vec<&str> = want.iter().map(|w| w["name"].as_str().unwrap()).collect();
            assert_eq!(got_names, want_names, "{file}: tensor names/order");
            for ((name, t), w) in got.iter().zip(want) {
                let ctx = format!("{file}: {name}");
                assert_eq!(
                    t.dtype,
                    dtype_by_name(w["dtype"].as_str().unwrap()),
                    "{ctx}"
                );
                let shape: Vec<usize> = w["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap() as usize)
                    .collect();
                assert_eq!(t.shape, shape, "{ctx}");
                let values = w["values"].as_array().unwrap();
                assert_eq!(t.numel(), values.len(), "{ctx}");
                assert_eq!(t.data.len(), t.numel() * t.dtype.size(), "{ctx}");
                let f = t.to_f32().unwrap();
                assert_eq!(f.len(), values.len(), "{ctx}");
                for (i, v) in values.iter().enumerate() {
                    match t.dtype {
                        DType::F32 | DType::F16 | DType::BF16 => {
                            assert_eq!(f[i], v.as_f64().unwrap() as f32, "{ctx}[{i}]")
                        }
                        DType::F64 => {
                            let got =
                                f64::from_le_bytes(t.data[i * 8..i * 8 + 8].try_into().unwrap());
                            let want = v.as_f64().unwrap();
                            assert!(
                                (got - want).abs() <= want.abs() * 1e-15,
                                "{ctx}[{i}]: {got} vs {want}"
                            );
                        }
                        _ => {
                            assert_eq!(int_at(t, i), v.as_i64().unwrap(), "{ctx}[{i}]");
                            assert_eq!(f[i], v.as_i64().unwrap() as f32, "{ctx}[{i}]");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn state_dict_details() {
        let sd = load_pth(&fixture_dir().join("sd_legacy.pth")).unwrap();
        let get = |n: &str| &sd.iter().find(|(k, _)| k == n).unwrap().1;
        let nbt = get("1.num_batches_tracked");
        assert_eq!(
            (nbt.dtype, nbt.shape.len(), nbt.numel()),
            (DType::I64, 0, 1)
        );
        assert_eq!(nbt.to_f32().unwrap(), vec![7.0]);
        let t = get("transposed");
        assert_eq!(t.shape, vec![4, 3]);
        assert_eq!(&t.to_f32().unwrap()[..4], &[0.0, 4.0, 8.0, 1.0]);
        assert_eq!(get("slice").to_f32().unwrap(), vec![5.0, 6.0, 7.0, 8.0]);
        assert_eq!(get("column").to_f32().unwrap(), vec![1.0, 5.0, 9.0]);
        assert_eq!(get("empty").shape, vec![0, 3]);
        assert!(get("empty").data.is_empty());
        // Both serializations agree byte for byte.
        let zip = load_pth(&fixture_dir().join("sd_zip.pth")).unwrap();
        assert_eq!(zip.len(), sd.len());
        for ((n1, t1), (n2, t2)) in zip.iter().zip(&sd) {
            assert_eq!(n1, n2);
            assert_eq!(
                (t1.dtype, &t1.shape, &t1.data),
                (t2.dtype, &t2.shape, &t2.data),
                "{n1}"
            );
        }
    }

    #[test]
    fn nested_dicts_are_flattened_and_scalars_skipped() {
        let got = load_pth(&fixture_dir().join("nested_zip.pth")).unwrap();
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "state_dict.layer.weight",
                "state_dict.layer.bias",
                "state_dict.steps"
            ]
        );
    }

    fn assert_refused(file: &str, needles: &[&str]) {
        let err = load_pth_bytes(&fixture(file), file).expect_err(file);
        let msg = format!("{err:#}");
        assert!(msg.starts_with(file), "{msg}");
        assert!(msg.contains("refusing pickle global"), "{msg}");
        assert!(needles.iter().any(|n| msg.contains(n)), "{msg}");
    }

    #[test]
    fn malicious_pickles_are_refused() {
        assert_refused(
            "malicious.pkl",
            &["'posix.system'", "'os.system'", "'nt.system'"],
        );
        assert_refused(
            "malicious_zip.pth",
            &["'posix.system'", "'os.system'", "'nt.system'"],
        );
        let err = format!(
            "{:#}",
            load_pth_bytes(&fixture("malicious.pkl"), "evil.pkl").unwrap_err()
        );
        assert!(err.contains("at byte 2:"), "{err}");
        let err = format!(
            "{:#}",
            load_pth_bytes(&fixture("malicious_zip.pth"), "evil.pth").unwrap_err()
        );
        assert!(err.contains("archive/data.pkl"), "{err}");
    }

    /// Runs a hand-written pickle through the legacy entry point.
    fn run(pickle: &[u8]) -> String {
        match load_pth_bytes(pickle, "t.pth") {
            Ok(v) => panic!("unexpectedly loaded {} tensors", v.len()),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn dangerous_globals_and_opcodes_are_refused() {
        // GLOBAL (protocol 0-3 style)
        let e = run(b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R.");
        assert!(
            e.contains("refusing pickle global 'os.system' at byte 2"),
            "{e}"
        );
        assert!(e.contains("allowed: collections.OrderedDict"), "{e}");
        // STACK_GLOBAL (protocol 4)
        let e = run(b"\x80\x04\x8c\x08builtins\x94\x8c\x04eval\x94\x93\x94.");
        assert!(
            e.contains("refusing pickle global 'builtins.eval' at byte"),
            "{e}"
        );
        let e = run(b"\x80\x02ctorch.nn.modules.module\nModule\n)\x81.");
        assert!(e.contains("'torch.nn.modules.module.Module'"), "{e}");
        let e = run(b"\x80\x02ctorch\nComplexFloatStorage\n.");
        assert!(
            e.contains("unsupported tensor storage type 'torch.ComplexFloatStorage'"),
            "{e}"
        );
        // Opcodes outside the whitelist.
        let e = run(b"\x80\x02ccollections\nOrderedDict\n)\x81.");
        assert!(
            e.contains("refusing pickle opcode NEWOBJ (0x81) at byte 28"),
            "{e}"
        );
        let e = run(b"(ios\nsystem\n.");
        assert!(
            e.contains("refusing pickle opcode INST (0x69) at byte 1"),
            "{e}"
        );
        let e = run(b"\x80\x02\x82\x01.");
        assert!(e.contains("EXT1 (0x82) at byte 2"), "{e}");
        let e = run(b"\x80\x02\xff");
        assert!(e.contains("unknown pickle opcode 0xff at byte 2"), "{e}");
        let e = run(b"\x80\x02Pfoo\n.");
        assert!(e.contains("PERSID (0x50)"), "{e}");
        let e = run(b"\x80\x09.");
        assert!(e.contains("unsupported pickle protocol 9"), "{e}");
        // A whitelisted class may not be "called" in unexpected ways.
        let e = run(b"\x80\x02ctorch\nFloatStorage\n)R.");
        assert!(e.contains("refusing to call torch.FloatStorage"), "{e}");
        let e = run(b"\x80\x02ccollections\nOrderedDict\nK\x01\x85R.");
        assert!(
            e.contains("unexpected arguments for collections.OrderedDict"),
            "{e}"
        );
        // BUILD on something that is not a dict.
        let e = run(b"\x80\x02]}b.");
        assert!(e.contains("refusing BUILD on a list"), "{e}");
        // Storages outside of a persistent id context.
        let e = run(b"\x80\x02)Q.");
        assert!(e.contains("persistent id"), "{e}");
    }

    #[test]
    fn not_a_checkpoint() {
        assert!(run(b"").contains("empty"));
        let e = run(b"\x80\x02K\x05.");
        assert!(e.contains("magic number"), "{e}");
        let e = run(b"hello world");
        assert!(e.starts_with("t.pth: "), "{e}");
        let mut tar = vec![0u8; 1024];
        tar[257..262].copy_from_slice(b"ustar");
        assert!(run(&tar).contains("tar archive"));
        let e = run(b"PK\x03\x04garbage");
        assert!(e.contains("zip"), "{e}");
    }

    /// Builds a legacy file around `main` (the main pickle, protocol 2) with
    /// the given storage keys and raw storage payloads.
    fn legacy_file(main: &[u8], keys: &[&str], payloads: &[&[u8]]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(b"\x80\x02\x8a\x0a");
        f.extend_from_slice(&LEGACY_MAGIC);
        f.extend_from_slice(b".\x80\x02M\xe9\x03.\x80\x02}.");
        f.extend_from_slice(main);
        f.extend_from_slice(b"\x80\x02(");
        for k in keys {
            f.push(b'X');
            f.extend_from_slice(&(k.len() as u32).to_le_bytes());
            f.extend_from_slice(k.as_bytes());
        }
        f.extend_from_slice(b"l.");
        for p in payloads {
            f.extend_from_slice(p);
        }
        f
    }

    fn storage_bytes(count: i64, elems: &[f32]) -> Vec<u8> {
        let mut v = count.to_le_bytes().to_vec();
        for e in elems {
            v.extend_from_slice(&e.to_le_bytes());
        }
        v
    }

    /// Main pickle: {"t": _rebuild_tensor_v2(<storage "k", 4 floats>, offset, size, stride, False, OrderedDict())}
    fn one_tensor_pickle(offset: u8, size: &[u8], stride: &[u8]) -> Vec<u8> {
        let mut p = b"\x80\x02}X\x01\x00\x00\x00tctorch._utils\n_rebuild_tensor_v2\n(".to_vec();
        p.extend_from_slice(b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x00kX\x03\x00\x00\x00cpuK\x04Ntq\x00Q");
        p.push(b'K');
        p.push(offset);
        p.push(b'(');
        for &s in size {
            p.extend_from_slice(&[b'K', s]);
        }
        p.extend_from_slice(b"t(");
        for &s in stride {
            p.extend_from_slice(&[b'K', s]);
        }
        p.extend_from_slice(b"t\x89ccollections\nOrderedDict\n)RtRs.");
        p
    }

    #[test]
    fn handmade_legacy_views() {
        let data = storage_bytes(4, &[1.0, 2.0, 3.0, 4.0]);
        // 2x2 transposed view.
        let f = legacy_file(&one_tensor_pickle(0, &[2, 2], &[1, 2]), &["k"], &[&data]);
        let t = load_pth_bytes(&f, "x").unwrap();
        assert_eq!(t[0].1.to_f32().unwrap(), vec![1.0, 3.0, 2.0, 4.0]);
        // Broadcast (stride 0) view, small enough to be allowed.
        let f = legacy_file(&one_tensor_pickle(3, &[2, 3], &[0, 0]), &["k"], &[&data]);
        let t = load_pth_bytes(&f, "x").unwrap();
        assert_eq!(t[0].1.to_f32().unwrap(), vec![4.0; 6]);
        // Out of bounds views.
        for (offset, size, stride) in [
            (1u8, &[4u8][..], &[1u8][..]),
            (0, &[2, 2], &[3, 1]),
            (4, &[1], &[1]),
        ] {
            let f = legacy_file(&one_tensor_pickle(offset, size, stride), &["k"], &[&data]);
            let e = format!("{:#}", load_pth_bytes(&f, "x").unwrap_err());
            assert!(e.contains("reads element"), "{e}");
        }
        // Empty tensors may sit anywhere.
        let f = legacy_file(&one_tensor_pickle(200, &[0, 5], &[5, 1]), &["k"], &[&data]);
        assert_eq!(load_pth_bytes(&f, "x").unwrap()[0].1.numel(), 0);
        // Size mismatch between the persistent id and the file.
        let f = legacy_file(
            &one_tensor_pickle(0, &[4], &[1]),
            &["k"],
            &[&storage_bytes(3, &[1.0, 2.0, 3.0])],
        );
        assert!(format!("{:#}", load_pth_bytes(&f, "x").unwrap_err()).contains("declared"));
        // Unknown storage key in the key list.
        let f = legacy_file(&one_tensor_pickle(0, &[4], &[1]), &["zz"], &[&data]);
        assert!(load_pth_bytes(&f, "x").is_err());
    }

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

    #[test]
    fn cycles_and_deep_nesting_are_errors_not_crashes() {
        // d = {}; d["a"] = d  (cyclic)
        let e = run_main(b"\x80\x02}q\x00X\x01\x00\x00\x00ah\x00s.");
        assert!(e.contains("nested more than"), "{e}");
        // 100000 nested lists built with a constant stack via the memo.
        let mut p = b"\x80\x02}X\x01\x00\x00\x00a]q\x000".to_vec();
        for _ in 0..100_000 {
            p.extend_from_slice(b"]h\x00aq\x000");
        }
        p.extend_from_slice(b"h\x00s.");
        let e = run_main(&p);
        assert!(e.contains("nested more than"), "{e}");
        // Exponential sharing: each level's list holds the previous one twice.
        let mut p = b"\x80\x02}X\x01\x00\x00\x00a]q\x000".to_vec();
        for _ in 0..60 {
            p.extend_from_slice(b"(h\x00h\x00lq\x000");
        }
        p.extend_from_slice(b"h\x00s.");
        let e = run_main(&p);
        assert!(e.contains("too large"), "{e}");
    }

    /// Runs `main` as the main pickle of a legacy file with no storages.
    fn run_main(main: &[u8]) -> String {
        let f = legacy_file(main, &[], &[]);
        format!("{:#}", load_pth_bytes(&f, "x").unwrap_err())
    }

    #[test]
    fn python_dict_semantics_and_scalars() {
        // {"a": 1, "b": None, "a": 2.5, "c": "s", 7: b"x"} -> no tensors, no error.
        let f = legacy_file(
            b"\x80\x02}(X\x01\x00\x00\x00aK\x01X\x01\x00\x00\x00bNX\x01\x00\x00\x00aG@\x04\x00\x00\x00\x00\x00\x00X\x01\x00\x00\x00cX\x01\x00\x00\x00sK\x07C\x01xu.",
            &[],
            &[],
        );
        assert!(load_pth_bytes(&f, "x").unwrap().is_empty());
        // A top-level list is not a state dict.
        let e = run_main(b"\x80\x02].");
        assert!(e.contains("expected a dict"), "{e}");
    }

    #[test]
    fn truncated_files_are_errors() {
        for file in ALL {
            let bytes = fixture(file);
            for len in 0..bytes.len() {
                let r = load_pth_bytes(&bytes[..len], file);
                assert!(r.is_err(), "{file} cut at {len} loaded");
            }
        }
    }

    /// Tiny deterministic PRNG (xorshift64*).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn mutate(rng: &mut Rng, bytes: &mut [u8]) {
        for _ in 0..1 + rng.below(4) {
            let i = rng.below(bytes.len());
            bytes[i] = match rng.below(4) {
                0 => bytes[i] ^ (1 << rng.below(8)),
                1 => 0,
                2 => 0xff,
                _ => rng.next() as u8,
            };
        }
    }

    /// Mutations per file; raise with `PTH_FUZZ_ITERS=100000 cargo test random_byte`.
    fn fuzz_iters() -> usize {
        std::env::var("PTH_FUZZ_ITERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3000)
    }

    #[test]
    fn random_byte_flips_never_panic() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for file in ALL {
            let bytes = fixture(file);
            for _ in 0..fuzz_iters() {
                let mut b = bytes.clone();
                mutate(&mut rng, &mut b);
                let _ = load_pth_bytes(&b, file);
            }
        }
    }

    fn open_zip(bytes: &[u8]) -> (Archive<'_>, String, Vec<u8>) {
        let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
        let prefix = find_prefix(&archive).unwrap();
        let pkl = read_entry(&mut archive, &format!("{prefix}/data.pkl"), bytes.len()).unwrap();
        (archive, prefix, pkl)
    }

    #[test]
    fn random_byte_flips_in_zip_data_pkl_never_panic() {
        // Flips inside a zip fail its CRC check; fuzz the pickle behind it directly.
        let mut rng = Rng(42);
        for file in ["sd_zip.pth", "sd_zip_p4.pth", "nested_zip.pth"] {
            let bytes = fixture(file);
            let (mut archive, prefix, pkl) = open_zip(&bytes);
            assert!(load_zip_pickle(&mut archive, &prefix, &pkl, false, bytes.len()).is_ok());
            for _ in 0..fuzz_iters() {
                let mut p = pkl.clone();
                mutate(&mut rng, &mut p);
                let _ = load_zip_pickle(&mut archive, &prefix, &p, false, bytes.len());
            }
            for len in 0..pkl.len() {
                assert!(
                    load_zip_pickle(&mut archive, &prefix, &pkl[..len], false, bytes.len())
                        .is_err()
                );
            }
        }
    }

    #[test]
    fn big_endian_zip_records_are_swapped() {
        let bytes = fixture("sd_zip.pth");
        let (mut archive, prefix, pkl) = open_zip(&bytes);
        let le = load_zip_pickle(&mut archive, &prefix, &pkl, false, bytes.len()).unwrap();
        let be = load_zip_pickle(&mut archive, &prefix, &pkl, true, bytes.len()).unwrap();
        for ((_, a), (_, b)) in le.iter().zip(&be) {
            let es = a.dtype.size();
            for (x, y) in a.data.chunks(es).zip(b.data.chunks(es)) {
                let mut y = y.to_vec();
                y.reverse();
                assert_eq!(x, &y[..]);
            }
        }
    }
}
