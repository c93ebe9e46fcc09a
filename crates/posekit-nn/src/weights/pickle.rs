//! A restricted pickle machine: it understands the opcodes `torch.save` writes (protocols 2 to 5)
//! and builds plain values from them, and it never calls anything.
//!
//! Python's pickle is a small stack language whose `GLOBAL` + `REDUCE` opcodes call any importable
//! function with any arguments; that is how a checkpoint can run `os.system`. This machine
//! resolves `GLOBAL` against a fixed allowlist of the names a weights file needs (tensor and
//! storage rebuilders, `OrderedDict`, `_codecs.encode` for bytes) and refuses anything else at the
//! reference itself, before a `REDUCE` could even be reached. The allowed names are not called
//! either: `REDUCE` on them is interpreted by this file ([`Unpickler::reduce`]), so the only
//! effect of a checkpoint is the values it describes.
//!
//! A few data-only classes that training code leaves in checkpoint metadata (NumPy scalars and
//! arrays, `argparse.Namespace`, `torch.device`) are accepted as inert placeholders
//! ([`Value::Opaque`]) so that such checkpoints still load; their contents are dropped.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use super::tensor::DType;

/// Where a storage's bytes live and what they are, from a `BINPERSID` record
/// `('storage', torch.FloatStorage, key, location, numel[, view_metadata])`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StorageRef {
    /// Name of the zip member (`data/<key>`) or position in the legacy storage list.
    pub key: String,
    pub dtype: DType,
    /// Element count as recorded in the pickle.
    pub numel: u64,
    /// Legacy (pre-1.0) storage views: (root key, offset in elements, size in elements).
    pub view: Option<(String, u64, u64)>,
}

/// A strided view of a storage, as `torch._utils._rebuild_tensor_v2` describes it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TensorRef {
    pub storage: Rc<StorageRef>,
    pub offset: u64,
    pub size: Vec<u64>,
    pub stride: Vec<u64>,
}

/// The allowlisted globals, already resolved: nothing here is a Python callable.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Global {
    OrderedDict,
    RebuildTensor,
    RebuildTensorV2,
    RebuildParameter,
    RebuildParameterWithState,
    RebuildFromTypeV2,
    TensorClass,
    Storage(DType),
    CodecsEncode,
    TorchSize,
    /// A data-only class whose instances become [`Value::Opaque`].
    Inert(&'static str),
}

/// A pickle value. Lists and dicts are shared and mutable, like Python's, because a pickle may
/// memoise a container before filling it and refer to it again later.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer wider than 64 bits, little-endian two's complement (the legacy magic number).
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Rc<Items>),
    List(Rc<RefCell<Items>>),
    Dict(Rc<RefCell<Pairs>>),
    Global(Global),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
    Opaque(Rc<str>),
}

/// The items of a tuple or list. A newtype only to drop iteratively: a crafted pickle can nest
/// containers a million levels deep (through memoised aliases, so no depth count at build time
/// catches it), and Rust's recursive drop would then overflow the stack.
#[derive(Debug, Clone, Default)]
pub(crate) struct Items(pub Vec<Value>);

/// The entries of a dict, in insertion order; dropped iteratively like [`Items`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Pairs(pub Vec<(Value, Value)>);

impl std::ops::Deref for Items {
    type Target = Vec<Value>;
    fn deref(&self) -> &Vec<Value> {
        &self.0
    }
}

impl Drop for Items {
    fn drop(&mut self) {
        drop_iteratively(std::mem::take(&mut self.0));
    }
}

impl Drop for Pairs {
    fn drop(&mut self) {
        let flat = std::mem::take(&mut self.0)
            .into_iter()
            .flat_map(|(k, v)| [k, v])
            .collect();
        drop_iteratively(flat);
    }
}

/// Moves the children of every container we hold the last reference to onto a work list before
/// the container itself is dropped, so each drop is shallow.
fn drop_iteratively(mut pending: Vec<Value>) {
    while let Some(value) = pending.pop() {
        match value {
            Value::Tuple(rc) => {
                if let Ok(mut items) = Rc::try_unwrap(rc) {
                    pending.append(&mut items.0);
                }
            }
            Value::List(rc) => {
                if let Ok(cell) = Rc::try_unwrap(rc) {
                    pending.append(&mut cell.into_inner().0);
                }
            }
            Value::Dict(rc) => {
                if let Ok(cell) = Rc::try_unwrap(rc) {
                    let mut pairs = cell.into_inner();
                    for (k, v) in pairs.0.drain(..) {
                        pending.push(k);
                        pending.push(v);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Why a pickle was rejected, and where; the caller adds the file name.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PickleError {
    Forbidden { global: String, offset: usize },
    Malformed { message: String, offset: usize },
}

/// The allowlist. Module names differ between Python 2 and 3 pickles (`__builtin__`/`builtins`)
/// and between NumPy 1 and 2 (`numpy.core`/`numpy._core`), hence the pairs.
fn resolve_global(module: &str, name: &str) -> Option<Global> {
    let global = match (module, name) {
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("torch._utils", "_rebuild_tensor") => Global::RebuildTensor,
        ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
        ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
        ("torch._utils", "_rebuild_parameter_with_state") => Global::RebuildParameterWithState,
        ("torch._tensor", "_rebuild_from_type_v2") => Global::RebuildFromTypeV2,
        ("torch._tensor", "Tensor") | ("torch", "Tensor") => Global::TensorClass,
        ("torch.nn.parameter", "Parameter") => Global::TensorClass,
        ("torch", "Size") => Global::TorchSize,
        ("_codecs", "encode") => Global::CodecsEncode,
        ("torch", "device") => Global::Inert("torch.device"),
        // dtypes are data (`torch.float32`), referenced by mixed-precision training metadata.
        (
            "torch",
            "float64" | "double" | "float32" | "float" | "float16" | "half" | "bfloat16" | "int64"
            | "long" | "int32" | "int" | "int16" | "short" | "int8" | "uint8" | "bool",
        ) => Global::Inert("torch.dtype"),
        ("torch", storage) | ("torch.cuda", storage) => {
            Global::Storage(DType::from_storage_class(storage)?)
        }
        ("argparse", "Namespace") => Global::Inert("argparse.Namespace"),
        ("numpy", "dtype") => Global::Inert("numpy.dtype"),
        ("numpy", "ndarray") => Global::Inert("numpy.ndarray"),
        ("numpy.core.multiarray", "scalar") | ("numpy._core.multiarray", "scalar") => {
            Global::Inert("numpy scalar")
        }
        ("numpy.core.multiarray", "_reconstruct") | ("numpy._core.multiarray", "_reconstruct") => {
            Global::Inert("numpy array")
        }
        _ => return None,
    };
    Some(global)
}

/// Runs one pickle starting at `start` in `data`; returns the value and the offset after STOP.
/// `storages` collects every storage the pickle refers to (the legacy format needs their dtypes
/// to walk its storage area).
pub(crate) fn unpickle(
    data: &[u8],
    start: usize,
    storages: &mut BTreeMap<String, Rc<StorageRef>>,
) -> Result<(Value, usize), PickleError> {
    let mut machine = Unpickler {
        data,
        pos: start,
        op_start: start,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        storages,
    };
    let value = machine.run()?;
    Ok((value, machine.pos))
}

struct Unpickler<'a, 's> {
    data: &'a [u8],
    pos: usize,
    /// Offset of the opcode being executed, for error messages.
    op_start: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    /// A map, not a vector: `LONG_BINPUT` takes a 32-bit index and a crafted file must not make
    /// us allocate 4 billion slots.
    memo: HashMap<u32, Value>,
    storages: &'s mut BTreeMap<String, Rc<StorageRef>>,
}

impl Unpickler<'_, '_> {
    fn run(&mut self) -> Result<Value, PickleError> {
        loop {
            self.op_start = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    // PROTO
                    let proto = self.u8()?;
                    if proto > 5 {
                        return Err(self.malformed(format!("unsupported pickle protocol {proto}")));
                    }
                }
                0x95 => {
                    // FRAME: a length hint for buffered readers; we hold everything in memory.
                    self.take(8)?;
                }
                b'.' => return self.pop(), // STOP
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let top = self.peek()?.clone();
                    self.stack.push(top);
                }
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'J' => {
                    let b = self.take(4)?;
                    let v = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    self.stack.push(Value::Int(v.into()));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(v.into()));
                }
                b'M' => {
                    let b = self.take(2)?;
                    let v = u16::from_le_bytes([b[0], b[1]]);
                    self.stack.push(Value::Int(v.into()));
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    let bytes = self.take(n)?.to_vec();
                    self.stack.push(long_value(bytes));
                }
                0x8b => {
                    let n = self.len4()?;
                    let bytes = self.take(n)?.to_vec();
                    self.stack.push(long_value(bytes));
                }
                b'G' => {
                    let b = self.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.stack.push(Value::Float(f64::from_be_bytes(a)));
                }
                b'X' => {
                    let n = self.len4()?;
                    let s = self.utf8(n)?;
                    self.stack.push(Value::Str(s));
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let s = self.utf8(n)?;
                    self.stack.push(Value::Str(s));
                }
                0x8d => {
                    let n = self.len8()?;
                    let s = self.utf8(n)?;
                    self.stack.push(Value::Str(s));
                }
                // Python 2 `str`: bytes that were text; latin-1 maps every byte to a char.
                b'T' => {
                    let n = self.len4()?;
                    let s = self.take(n)?.iter().map(|&b| b as char).collect();
                    self.stack.push(Value::Str(s));
                }
                b'U' => {
                    let n = self.u8()? as usize;
                    let s = self.take(n)?.iter().map(|&b| b as char).collect();
                    self.stack.push(Value::Str(s));
                }
                b'B' => {
                    let n = self.len4()?;
                    let b = self.take(n)?.to_vec();
                    self.stack.push(Value::Bytes(b));
                }
                b'C' => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?.to_vec();
                    self.stack.push(Value::Bytes(b));
                }
                0x8e | 0x96 => {
                    let n = self.len8()?;
                    let b = self.take(n)?.to_vec();
                    self.stack.push(Value::Bytes(b));
                }
                b'}' => self.stack.push(new_dict(Vec::new())),
                b']' => self.stack.push(new_list(Vec::new())),
                b')' => self.stack.push(new_tuple(Vec::new())),
                // Sets only occur in metadata; a list of their items is as good as a set here.
                0x8f => self.stack.push(new_list(Vec::new())),
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    self.stack.push(new_dict(pairs));
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.stack.push(new_list(items));
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(new_tuple(items));
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    self.stack.push(new_list(items));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.stack.push(new_tuple(items));
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    self.set_items(vec![(key, value)])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    self.set_items(pairs)?;
                }
                b'a' => {
                    let value = self.pop()?;
                    self.append(vec![value])?;
                }
                b'e' | 0x90 => {
                    let items = self.pop_mark()?;
                    self.append(items)?;
                }
                b'q' => {
                    let i = self.u8()? as u32;
                    self.put(i)?;
                }
                b'r' => {
                    let i = self.len4()? as u32;
                    self.put(i)?;
                }
                0x94 => {
                    let i = u32::try_from(self.memo.len())
                        .map_err(|_| self.malformed("memo overflow"))?;
                    self.put(i)?;
                }
                b'h' => {
                    let i = self.u8()? as u32;
                    self.get(i)?;
                }
                b'j' => {
                    let i = self.len4()? as u32;
                    self.get(i)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let global = self.global(&module, &name)?;
                    self.stack.push(Value::Global(global));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(module), Value::Str(name)) => {
                            let global = self.global(&module, &name)?;
                            self.stack.push(Value::Global(global));
                        }
                        _ => return Err(self.malformed("STACK_GLOBAL needs two strings")),
                    }
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let value = self.reduce(callable, args)?;
                    self.stack.push(value);
                }
                0x81 => {
                    // NEWOBJ: cls.__new__(cls, *args); only inert classes and OrderedDict.
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let value = self.new_object(cls, args)?;
                    self.stack.push(value);
                }
                0x92 => {
                    // NEWOBJ_EX: keyword arguments are irrelevant to the classes we allow.
                    let _kwargs = self.pop()?;
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let value = self.new_object(cls, args)?;
                    self.stack.push(value);
                }
                b'b' => {
                    // BUILD: sets an object's __dict__/state. An OrderedDict's state is its
                    // `_metadata` (module versions), which we do not need; placeholders absorb
                    // any state. Tensors get theirs through `_rebuild_from_type_v2`.
                    let _state = self.pop()?;
                    match self.peek()? {
                        Value::Dict(_) | Value::Opaque(_) => {}
                        other => {
                            let what = describe(other);
                            return Err(self.malformed(format!("BUILD on {what}")));
                        }
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let storage = self.persistent_load(pid)?;
                    self.stack.push(storage);
                }
                other => {
                    return Err(self.malformed(format!(
                        "unsupported pickle opcode 0x{other:02x} (torch.save writes protocol 2..5 \
                         binary pickles)"
                    )))
                }
            }
        }
    }

    // ----- the interpreted calls -----

    fn global(&self, module: &str, name: &str) -> Result<Global, PickleError> {
        resolve_global(module, name).ok_or_else(|| PickleError::Forbidden {
            global: format!("{module}.{name}"),
            offset: self.op_start,
        })
    }

    /// `callable(*args)` for the allowlisted callables, computed here rather than called.
    fn reduce(&mut self, callable: Value, args: Value) -> Result<Value, PickleError> {
        let Value::Global(global) = callable else {
            let what = describe(&callable);
            return Err(self.malformed(format!("REDUCE on {what}, not an allowed global")));
        };
        let args = match args {
            Value::Tuple(items) => items.0.clone(),
            other => {
                let what = describe(&other);
                return Err(self.malformed(format!("REDUCE arguments are {what}, not a tuple")));
            }
        };
        match global {
            Global::OrderedDict => match args.first() {
                None => Ok(new_dict(Vec::new())),
                // OrderedDict([(k, v), ...]), as protocol 0/1 writers produce.
                Some(Value::List(items)) => {
                    let items = items.borrow().0.clone();
                    let mut pairs = Vec::with_capacity(items.len());
                    for item in items {
                        match item {
                            Value::Tuple(kv) if kv.len() == 2 => {
                                pairs.push((kv[0].clone(), kv[1].clone()))
                            }
                            _ => return Err(self.malformed("OrderedDict item is not a pair")),
                        }
                    }
                    Ok(new_dict(pairs))
                }
                Some(_) => Err(self.malformed("unexpected OrderedDict arguments")),
            },
            Global::RebuildTensorV2 | Global::RebuildTensor => {
                // (storage, storage_offset, size, stride[, requires_grad, backward_hooks,
                // metadata]); the trailing items do not affect the values.
                if args.len() < 4 {
                    return Err(self.malformed("tensor record with fewer than 4 fields"));
                }
                let storage = match &args[0] {
                    Value::Storage(s) => s.clone(),
                    other => {
                        let what = describe(other);
                        return Err(self.malformed(format!("tensor storage is {what}")));
                    }
                };
                let offset = self.non_negative(&args[1], "storage offset")?;
                let size = self.int_tuple(&args[2], "size")?;
                let stride = self.int_tuple(&args[3], "stride")?;
                if size.len() != stride.len() {
                    return Err(self.malformed(format!(
                        "tensor size {size:?} and stride {stride:?} differ in rank"
                    )));
                }
                Ok(Value::Tensor(Rc::new(TensorRef {
                    storage,
                    offset,
                    size,
                    stride,
                })))
            }
            // Parameter(data, requires_grad, hooks[, state]): the data is all we keep.
            Global::RebuildParameter | Global::RebuildParameterWithState => match args.first() {
                Some(t @ Value::Tensor(_)) => Ok(t.clone()),
                _ => Err(self.malformed("parameter record without a tensor")),
            },
            // (func, new_type, args, state): a tensor subclass or a tensor with attributes.
            Global::RebuildFromTypeV2 => {
                if args.len() < 3 {
                    return Err(self.malformed("_rebuild_from_type_v2 needs 3 arguments"));
                }
                match &args[1] {
                    Value::Global(Global::TensorClass) => {}
                    other => {
                        let what = describe(other);
                        return Err(self.malformed(format!("tensor of unsupported type {what}")));
                    }
                }
                // Only a plain tensor rebuilder may be nested here, which also bounds recursion.
                match &args[0] {
                    Value::Global(Global::RebuildTensorV2 | Global::RebuildTensor) => {
                        self.reduce(args[0].clone(), args[2].clone())
                    }
                    other => {
                        let what = describe(other);
                        Err(self.malformed(format!("_rebuild_from_type_v2 of {what}")))
                    }
                }
            }
            Global::CodecsEncode => match (args.first(), args.get(1)) {
                // Protocol 2 writes `bytes` as _codecs.encode(str, 'latin1').
                (Some(Value::Str(s)), Some(Value::Str(enc)))
                    if enc == "latin1" || enc == "latin-1" =>
                {
                    let mut bytes = Vec::with_capacity(s.len());
                    for ch in s.chars() {
                        let code = u32::from(ch);
                        let byte = u8::try_from(code)
                            .map_err(|_| self.malformed("non-latin-1 char in encoded bytes"))?;
                        bytes.push(byte);
                    }
                    Ok(Value::Bytes(bytes))
                }
                _ => Err(self.malformed("_codecs.encode with unsupported arguments")),
            },
            Global::TorchSize => match args.first() {
                Some(t @ Value::Tuple(_)) => Ok(t.clone()),
                None => Ok(new_tuple(Vec::new())),
                _ => Err(self.malformed("torch.Size of a non-tuple")),
            },
            Global::Inert(name) => Ok(Value::Opaque(name.into())),
            Global::TensorClass | Global::Storage(_) => {
                Err(self.malformed(format!("calling {global:?} is not part of a weights file")))
            }
        }
    }

    fn new_object(&mut self, cls: Value, _args: Value) -> Result<Value, PickleError> {
        match cls {
            Value::Global(Global::OrderedDict) => Ok(new_dict(Vec::new())),
            Value::Global(Global::Inert(name)) => Ok(Value::Opaque(name.into())),
            other => {
                let what = describe(&other);
                Err(self.malformed(format!("NEWOBJ of {what}")))
            }
        }
    }

    fn persistent_load(&mut self, pid: Value) -> Result<Value, PickleError> {
        let Value::Tuple(fields) = pid else {
            return Err(self.malformed("persistent id is not a tuple"));
        };
        let fields = &fields.0;
        if !matches!(fields.first(), Some(Value::Str(tag)) if tag == "storage") || fields.len() < 5
        {
            return Err(self.malformed("persistent id is not a ('storage', ...) record"));
        }
        let dtype = match &fields[1] {
            Value::Global(Global::Storage(dtype)) => *dtype,
            other => {
                let what = describe(other);
                return Err(self.malformed(format!("storage type is {what}")));
            }
        };
        let key = match &fields[2] {
            Value::Str(k) => k.clone(),
            Value::Int(k) => k.to_string(),
            _ => return Err(self.malformed("storage key is not a string")),
        };
        let numel = self.non_negative(&fields[4], "storage size")?;
        let view = match fields.get(5) {
            None | Some(Value::None) => None,
            Some(Value::Tuple(v)) if v.len() == 3 => {
                let root = match &v[0] {
                    Value::Str(k) => k.clone(),
                    _ => return Err(self.malformed("storage view key is not a string")),
                };
                let offset = self.non_negative(&v[1], "storage view offset")?;
                let size = self.non_negative(&v[2], "storage view size")?;
                Some((root, offset, size))
            }
            Some(_) => return Err(self.malformed("malformed storage view record")),
        };
        let storage = Rc::new(StorageRef {
            key: key.clone(),
            dtype,
            numel,
            view,
        });
        // The same storage may be referenced by several tensors (views); keep the first record.
        let storage = self.storages.entry(key).or_insert(storage).clone();
        Ok(Value::Storage(storage))
    }

    // ----- containers -----

    fn set_items(&mut self, pairs: Vec<(Value, Value)>) -> Result<(), PickleError> {
        match self.peek()? {
            Value::Dict(d) => {
                d.borrow_mut().0.extend(pairs);
                Ok(())
            }
            Value::Opaque(_) => Ok(()),
            other => {
                let what = describe(other);
                Err(self.malformed(format!("SETITEM on {what}")))
            }
        }
    }

    fn append(&mut self, items: Vec<Value>) -> Result<(), PickleError> {
        match self.peek()? {
            Value::List(l) => {
                l.borrow_mut().0.extend(items);
                Ok(())
            }
            Value::Opaque(_) => Ok(()),
            other => {
                let what = describe(other);
                Err(self.malformed(format!("APPEND on {what}")))
            }
        }
    }

    fn pairs(&self, items: Vec<Value>) -> Result<Vec<(Value, Value)>, PickleError> {
        if !items.len().is_multiple_of(2) {
            return Err(self.malformed("odd number of items for a dict"));
        }
        let mut pairs = Vec::with_capacity(items.len() / 2);
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            pairs.push((k, v));
        }
        Ok(pairs)
    }

    fn put(&mut self, index: u32) -> Result<(), PickleError> {
        let top = self.peek()?.clone();
        self.memo.insert(index, top);
        Ok(())
    }

    fn get(&mut self, index: u32) -> Result<(), PickleError> {
        let value = self
            .memo
            .get(&index)
            .cloned()
            .ok_or_else(|| self.malformed(format!("memo slot {index} read before written")))?;
        self.stack.push(value);
        Ok(())
    }

    // ----- stack -----

    fn pop(&mut self) -> Result<Value, PickleError> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err(self.malformed("pop across a MARK"));
        }
        self.stack
            .pop()
            .ok_or_else(|| self.malformed("stack underflow"))
    }

    fn peek(&self) -> Result<&Value, PickleError> {
        self.stack
            .last()
            .ok_or_else(|| self.malformed("stack underflow"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, PickleError> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| self.malformed("no MARK on the stack"))?;
        if mark > self.stack.len() {
            return Err(self.malformed("MARK above the stack"));
        }
        Ok(self.stack.split_off(mark))
    }

    // ----- argument decoding -----

    fn non_negative(&self, v: &Value, what: &str) -> Result<u64, PickleError> {
        match v {
            Value::Int(i) if *i >= 0 => Ok(*i as u64),
            _ => Err(self.malformed(format!("{what} is not a non-negative integer"))),
        }
    }

    fn int_tuple(&self, v: &Value, what: &str) -> Result<Vec<u64>, PickleError> {
        match v {
            Value::Tuple(items) => items.0.iter().map(|i| self.non_negative(i, what)).collect(),
            _ => Err(self.malformed(format!("tensor {what} is not a tuple"))),
        }
    }

    // ----- byte reading -----

    fn take(&mut self, n: usize) -> Result<&[u8], PickleError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| self.malformed("unexpected end of data (truncated file?)"))?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn len4(&mut self) -> Result<usize, PickleError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    fn len8(&mut self) -> Result<usize, PickleError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        usize::try_from(u64::from_le_bytes(a)).map_err(|_| self.malformed("length overflows"))
    }

    fn utf8(&mut self, n: usize) -> Result<String, PickleError> {
        let bytes = self.take(n)?.to_vec();
        String::from_utf8(bytes).map_err(|_| self.malformed("string is not UTF-8"))
    }

    fn line(&mut self) -> Result<String, PickleError> {
        let rest = &self.data[self.pos.min(self.data.len())..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| self.malformed("unterminated GLOBAL name"))?;
        let s = self.utf8(n)?;
        self.pos += 1;
        Ok(s)
    }

    fn malformed(&self, message: impl Into<String>) -> PickleError {
        PickleError::Malformed {
            message: message.into(),
            offset: self.op_start,
        }
    }
}

fn new_dict(pairs: Vec<(Value, Value)>) -> Value {
    Value::Dict(Rc::new(RefCell::new(Pairs(pairs))))
}

fn new_list(items: Vec<Value>) -> Value {
    Value::List(Rc::new(RefCell::new(Items(items))))
}

fn new_tuple(items: Vec<Value>) -> Value {
    Value::Tuple(Rc::new(Items(items)))
}

/// LONG1/LONG4 payload: little-endian two's complement of any width.
fn long_value(bytes: Vec<u8>) -> Value {
    if bytes.is_empty() {
        return Value::Int(0);
    }
    if bytes.len() <= 8 {
        let fill = if bytes[bytes.len() - 1] & 0x80 != 0 {
            0xff
        } else {
            0
        };
        let mut a = [fill; 8];
        a[..bytes.len()].copy_from_slice(&bytes);
        return Value::Int(i64::from_le_bytes(a));
    }
    Value::BigInt(bytes)
}

/// A short description of a value's type, for error messages.
pub(crate) fn describe(v: &Value) -> String {
    match v {
        Value::None => "None".into(),
        Value::Bool(_) => "a bool".into(),
        Value::Int(_) | Value::BigInt(_) => "an int".into(),
        Value::Float(_) => "a float".into(),
        Value::Str(_) => "a str".into(),
        Value::Bytes(_) => "bytes".into(),
        Value::Tuple(_) => "a tuple".into(),
        Value::List(_) => "a list".into(),
        Value::Dict(_) => "a dict".into(),
        Value::Global(g) => format!("global {g:?}"),
        Value::Storage(_) => "a storage".into(),
        Value::Tensor(_) => "a tensor".into(),
        Value::Opaque(name) => format!("a {name} object"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(bytes: &[u8]) -> Result<Value, PickleError> {
        let mut storages = BTreeMap::new();
        unpickle(bytes, 0, &mut storages).map(|(v, _)| v)
    }

    #[test]
    fn builds_containers_and_scalars() {
        // pickle.dumps({'a': [1, -2, 3.5], 'b': (None, True)}, protocol=2)
        let bytes =
            b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01J\xfe\xff\xff\xffG@\x0c\x00\
\x00\x00\x00\x00\x00eX\x01\x00\x00\x00bq\x03N\x88\x86q\x04u.";
        let Value::Dict(d) = run(bytes).unwrap() else {
            panic!("not a dict")
        };
        let d = &d.borrow().0;
        assert_eq!(d.len(), 2);
        let Value::List(l) = &d[0].1 else { panic!() };
        let l = &l.borrow().0;
        assert!(matches!(l[0], Value::Int(1)));
        assert!(matches!(l[1], Value::Int(-2)));
        assert!(matches!(l[2], Value::Float(f) if f == 3.5));
        let Value::Tuple(t) = &d[1].1 else { panic!() };
        assert!(matches!(t[0], Value::None) && matches!(t[1], Value::Bool(true)));
    }

    #[test]
    fn memoised_container_is_shared() {
        // d = {}; pickle.dumps([d, d]) then d filled: EMPTY_DICT, BINPUT 1, BINGET 1 must alias.
        let bytes = b"\x80\x02]q\x00(}q\x01h\x01e.";
        let Value::List(l) = run(bytes).unwrap() else {
            panic!()
        };
        let l = &l.borrow().0;
        match (&l[0], &l[1]) {
            (Value::Dict(a), Value::Dict(b)) => assert!(Rc::ptr_eq(a, b)),
            _ => panic!("not two dicts"),
        }
    }

    #[test]
    fn refuses_globals_outside_the_allowlist_before_any_reduce() {
        for (module, name) in [
            ("posix", "system"),
            ("builtins", "eval"),
            ("__builtin__", "getattr"),
        ] {
            let mut bytes = b"\x80\x02c".to_vec();
            bytes.extend_from_slice(format!("{module}\n{name}\n").as_bytes());
            bytes.extend_from_slice(b"X\x02\x00\x00\x00ls\x85R.");
            match run(&bytes) {
                Err(PickleError::Forbidden { global, offset }) => {
                    assert_eq!(global, format!("{module}.{name}"));
                    assert_eq!(offset, 2);
                }
                other => panic!("{module}.{name} not refused: {other:?}"),
            }
        }
        // STACK_GLOBAL (protocol 4) is checked the same way.
        let bytes = b"\x80\x04\x8c\x02os\x8c\x06system\x93.";
        assert!(matches!(run(bytes), Err(PickleError::Forbidden { .. })));
    }

    #[test]
    fn truncated_and_malformed_input_is_an_error_not_a_panic() {
        let full = b"\x80\x02}q\x00(X\x01\x00\x00\x00aK\x01u.";
        for cut in 0..full.len() {
            assert!(run(&full[..cut]).is_err(), "cut at {cut}");
        }
        assert!(run(b"\x80\x02X\xff\xff\xff\xff.").is_err());
        assert!(run(b"\x80\x02h\x07.").is_err());
        assert!(run(b"\x80\x02u.").is_err());
        assert!(run(b"\x80\x02K\x01K\x02R.").is_err());
    }

    #[test]
    fn very_deep_nesting_drops_without_overflowing_the_stack() {
        // None wrapped in a 1-tuple 200k times: ((((None,),),),...).
        let mut bytes = b"\x80\x02N".to_vec();
        bytes.extend(std::iter::repeat_n(0x85u8, 200_000));
        bytes.push(b'.');
        let v = run(&bytes).unwrap();
        drop(v);
    }

    #[test]
    fn long_integers_decode_as_twos_complement() {
        assert!(matches!(long_value(vec![0xff]), Value::Int(-1)));
        assert!(matches!(long_value(vec![0x00, 0x01]), Value::Int(256)));
        assert!(matches!(long_value(vec![1; 10]), Value::BigInt(_)));
    }
}
