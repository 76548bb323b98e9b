//! The restricted pickle machine: the opcodes it accepts, the inert object graph it builds (an
//! arena of values addressed by index, so sharing and cycles need no reference counting) and the
//! caps on its stack, memo, objects and integers. REDUCE only describes calls of the allowed
//! globals (a dict, a tensor view of a storage, a parameter); persistent ids name storages.

use std::collections::HashMap;
use std::fmt::Display;
use std::rc::Rc;

use anyhow::{Result, anyhow, bail};

use super::allow_list::{ALLOWED_GLOBALS, Global};
use super::{arr, show};
use crate::weights::dtype::DType;

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
/// Maximum number of tensor dimensions.
const MAX_DIMS: usize = 64;

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
    pub const NEWOBJ: u8 = 0x81;
    pub const EMPTY_SET: u8 = 0x8f;
    pub const ADDITEMS: u8 = 0x90;
    pub const FROZENSET: u8 = 0x91;
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
// Object model of the restricted VM
// ---------------------------------------------------------------------------

/// A pickle value. Anything bigger than a scalar lives in the object arena and
/// is referenced by index, so values are `Copy` and sharing (memo, DUP) has
/// Python's identity semantics without reference counting.
#[derive(Debug, Clone, Copy)]
pub(super) enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Global(Global),
    Obj(usize),
}

#[derive(Debug)]
pub(super) enum Obj {
    /// An integer that does not fit in i64: minimal little-endian two's complement.
    BigInt(Vec<u8>),
    /// Shared with the dict keys made from it: a memoised string reused as a key in many dicts
    /// is held once, not once per dict.
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Dict),
    Storage(StorageRef),
    Tensor(TensorSpec),
    /// [`Objects::Inert`] only: a class or function outside the allow-list, named but never
    /// imported.
    Class(String),
    /// [`Objects::Inert`] only: what calling or instantiating a [`Obj::Class`] would have made
    /// (its arguments and state are dropped; nothing is called).
    Inert(String),
}

/// What the machine does with globals outside the allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Objects {
    /// Refuse them at the opcode that names them (tensor state dicts, `.pth`).
    Refuse,
    /// Keep them as inert placeholders that are never called (training checkpoints such as
    /// Stable Diffusion `.ckpt` files also pickle callbacks, numpy scalars and optimizer
    /// state); a global that can only mean code execution (`os.system`, `builtins.eval`,
    /// `subprocess.*`, …) is still refused.
    Inert,
}

/// Globals refused even under [`Objects::Inert`]: no checkpoint needs them, and a file naming
/// them is trying to run code.
fn code_execution(module: &str, name: &str) -> bool {
    let root = module.split('.').next().unwrap_or(module);
    matches!(
        root,
        "os" | "posix"
            | "nt"
            | "subprocess"
            | "sys"
            | "runpy"
            | "importlib"
            | "pty"
            | "socket"
            | "shutil"
            | "webbrowser"
            | "code"
            | "ctypes"
            | "marshal"
            | "pickle"
            | "_pickle"
            | "dill"
            | "platform"
            | "multiprocessing"
    ) || (matches!(root, "builtins" | "__builtin__")
        && matches!(
            name,
            "eval"
                | "exec"
                | "execfile"
                | "compile"
                | "getattr"
                | "setattr"
                | "delattr"
                | "__import__"
                | "open"
                | "input"
                | "breakpoint"
                | "globals"
                | "locals"
                | "vars"
                | "apply"
        ))
}

/// An insertion-ordered dict with Python key semantics (re-setting a key keeps
/// its position and replaces its value).
#[derive(Debug, Default)]
pub(super) struct Dict {
    pub(super) items: Vec<(Value, Value)>,
    index: HashMap<DictKey, usize>,
}

/// Hashable form of a dict key.
#[derive(Debug, PartialEq, Eq, Hash)]
enum DictKey {
    None,
    Int(i64),
    Float(u64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    BigInt(Vec<u8>),
    Global(Global),
    /// Other hashable objects (tuples, tensors, ...) compare by identity.
    Ident(usize),
}

/// A storage (or a view of one) named by a persistent id.
#[derive(Debug, Clone)]
pub(super) struct StorageRef {
    /// Zip: the entry name under `data/`; legacy: the root key.
    pub(super) key: String,
    pub(super) dtype: DType,
    /// Elements in the root storage.
    pub(super) numel: u64,
    /// Legacy only: the storage is `root[offset .. offset + len]` (elements).
    pub(super) view: Option<(u64, u64)>,
}

/// What `_rebuild_tensor_v2` was asked to build.
#[derive(Debug, Clone)]
pub(super) struct TensorSpec {
    pub(super) storage: StorageRef,
    pub(super) offset: u64,
    pub(super) shape: Vec<usize>,
    pub(super) stride: Vec<usize>,
}

/// Which persistent ids a pickle may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PidMode {
    /// None (header pickles of the legacy format).
    Forbidden,
    /// `('storage', type, key, location, numel)`.
    Zip,
    /// `('storage', type, root_key, location, numel, view_metadata)`.
    Legacy,
}

/// The result of running one pickle.
pub(super) struct Unpickled {
    pub(super) objs: Vec<Obj>,
    pub(super) root: Value,
    /// Offset just after the STOP opcode.
    pub(super) end: usize,
    /// Legacy format: every root storage named by a persistent id, with the
    /// (dtype, numel) of its first mention.
    pub(super) roots: HashMap<String, (DType, u64)>,
}

impl Unpickled {
    pub(super) fn obj(&self, v: Value) -> Option<&Obj> {
        match v {
            Value::Obj(i) => self.objs.get(i),
            _ => None,
        }
    }
}

/// Short description of a value's type for error messages.
pub(super) fn kind(objs: &[Obj], v: Value) -> &'static str {
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
            Some(Obj::Class(_)) => "a class (kept inert)",
            Some(Obj::Inert(_)) => "an object (kept inert)",
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
    objects: Objects,
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
pub(super) fn unpickle(
    data: &[u8],
    start: usize,
    mode: PidMode,
    objects: Objects,
) -> Result<Unpickled> {
    let mut vm = Vm {
        data,
        pos: start,
        at: start,
        mode,
        objects,
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
        if matches!(self.obj(target), Some(Obj::Inert(_))) {
            return Ok(()); // an instance of a dict subclass: its items are dropped
        }
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
                Some(Obj::Inert(_)) => Ok(()), // an instance of a list subclass
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
            None if self.objects == Objects::Inert && !code_execution(module, name) => {
                let v = self.alloc(Obj::Class(format!("{module}.{name}")))?;
                self.push(v)
            }
            None if self.objects == Objects::Inert => Err(anyhow!(
                "refusing pickle global '{}.{}' at byte {}: a checkpoint never needs it, and \
                 unpickling this file with torch.load would run code",
                show(module),
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
                    let v = self.alloc(Obj::Str(s.into()))?;
                    self.push(v)?;
                }
                op::SHORT_BINBYTES | op::BINBYTES | op::BINBYTES8 => {
                    let n = match code {
                        op::SHORT_BINBYTES => usize::from(self.u8()?),
                        op::BINBYTES => self.u32()? as usize,
                        _ => self.len_u64()?,
                    };
                    let b = self.take(n)?.to_vec();
                    let v = self.alloc(Obj::Bytes(b.into()))?;
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
                    let inert = matches!(self.obj(target), Some(Obj::Inert(_)));
                    if !matches!(self.obj(target), Some(Obj::Dict(_))) && !inert {
                        return Err(self.err(format!(
                            "refusing BUILD on {} (state: {}): only dicts may carry state",
                            self.kind(target),
                            self.kind(state)
                        )));
                    }
                }
                op::NEWOBJ if self.objects == Objects::Inert => {
                    let _args = self.pop()?;
                    let cls = self.pop()?;
                    let v = self.instantiate(cls, "NEWOBJ")?;
                    self.push(v)?;
                }
                op::EMPTY_SET if self.objects == Objects::Inert => {
                    let v = self.alloc(Obj::Inert("builtins.set".into()))?;
                    self.push(v)?;
                }
                op::ADDITEMS if self.objects == Objects::Inert => {
                    let _items = self.pop_mark()?;
                    let set = self.top()?;
                    if !matches!(self.obj(set), Some(Obj::Inert(_))) {
                        return Err(self.err(format!("ADDITEMS on {}", self.kind(set))));
                    }
                }
                op::FROZENSET if self.objects == Objects::Inert => {
                    let _items = self.pop_mark()?;
                    let v = self.alloc(Obj::Inert("builtins.frozenset".into()))?;
                    self.push(v)?;
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

    /// An inert placeholder for an instance of the [`Obj::Class`] `cls`.
    fn instantiate(&mut self, cls: Value, opname: &str) -> Result<Value> {
        match self.obj(cls) {
            Some(Obj::Class(path)) => {
                let path = path.clone();
                self.alloc(Obj::Inert(path))
            }
            _ => Err(self.err(format!("{opname} on {}, expected a class", self.kind(cls)))),
        }
    }

    fn reduce(&mut self, func: Value, args: Value) -> Result<Value> {
        match self.obj(func) {
            Some(Obj::Class(_)) => return self.instantiate(func, "REDUCE"),
            Some(Obj::Inert(class)) => {
                return Err(self.err(format!(
                    "REDUCE on an instance of {} (kept inert): calling it is refused",
                    show(class)
                )));
            }
            _ => {}
        }
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
