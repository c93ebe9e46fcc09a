//! Reading PyTorch checkpoint files (`torch.save` output) without running any of their code.
//!
//! Two container formats exist and both are still common for pose checkpoints:
//!
//! * **zip** (torch >= 1.6): `<top>/data.pkl` is the pickle, `<top>/data/<key>` holds each
//!   storage's raw bytes, `<top>/byteorder` says `little` or `big`. `<top>` is the file's stem at
//!   save time, so it is found, not assumed.
//! * **legacy** (torch < 1.6, or `_use_new_zipfile_serialization=False`; most official HRNet /
//!   HigherHRNet releases): four pickles in a row (magic number, protocol version, `sys_info`,
//!   the object), then a pickled list of storage keys, then each storage as an 8-byte
//!   little-endian element count followed by its bytes, in that order.
//!
//! The object pickle is run by the restricted machine in `weights::pickle`; tensors come out as
//! (storage, offset, size, stride) records and are materialised here into contiguous
//! [`RawTensor`]s, which copies views (transposes, slices, shared storages, stride-0 expansions)
//! into independent tensors, as `torch.load` followed by `.contiguous()` would.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufReader, Cursor, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::error::{printable, WeightsError};
use super::pickle::{self, describe, PickleError, StorageRef, TensorRef, Value};
use super::tensor::{checked_numel, RawTensor};

/// The magic number that opens a legacy checkpoint (`torch.serialization.MAGIC_NUMBER`),
/// 0x1950a86a20f9469cfc6c, as the little-endian bytes of its LONG1 pickle.
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
/// The only legacy protocol version torch has ever written.
const LEGACY_PROTOCOL: i64 = 1001;
/// Containers nested deeper than this in a checkpoint are refused: real checkpoints nest 3 or 4
/// levels (checkpoint / optimizer / state / param), and the limit also stops reference cycles.
const MAX_DEPTH: usize = 64;
/// Values visited when turning a pickle into items. A pickle can alias one memoised container
/// many times (`l1 = [l2, l2]`, `l0 = [l1, l1]`, ...), so a tree of depth 64 may have 2^64
/// nodes although the file is tiny; real checkpoints have tens of thousands of values.
const MAX_VALUES: usize = 10_000_000;
/// The largest `data.pkl` read: the pickle holds names and metadata, a few MB for the largest
/// real checkpoints; storages are separate members.
const MAX_PICKLE_BYTES: u64 = 256 << 20;
/// The largest `byteorder` record read (it holds `little` or `big`).
const MAX_BYTEORDER_BYTES: u64 = 16;

/// Which container a `.pth` file used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PthFormat {
    Zip,
    Legacy,
}

/// A value of a checkpoint, with tensors materialised. Non-tensor values are kept so that callers
/// can look at metadata (`epoch`, `meta`), but nothing depends on them.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Item>),
    /// Keys are stringified (optimizer states use integer keys); order is the file's.
    Dict(Vec<(String, Item)>),
    Tensor(RawTensor),
    /// A value kept only as a description: a huge integer, a NumPy scalar, an inert object.
    Other(String),
}

impl Item {
    /// The entry `key` of a dict.
    pub fn get(&self, key: &str) -> Option<&Item> {
        match self {
            Item::Dict(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Every tensor under this item, named by the dict keys (and list indices) leading to it,
    /// joined with `.`, which is how PyTorch names nested modules.
    pub fn tensors(&self) -> Vec<(String, &RawTensor)> {
        let mut out = Vec::new();
        collect_tensors(self, String::new(), &mut out);
        out
    }

    /// Consumes the item and returns its tensors named as [`Item::tensors`] names them, without
    /// copying their data.
    pub fn into_tensors(self) -> Vec<(String, RawTensor)> {
        let mut out = Vec::new();
        collect_owned(self, String::new(), &mut out);
        out
    }

    /// Takes the entry `key` out of a dict.
    pub fn remove(&mut self, key: &str) -> Option<Item> {
        match self {
            Item::Dict(entries) => {
                let i = entries.iter().position(|(k, _)| k == key)?;
                Some(entries.remove(i).1)
            }
            _ => None,
        }
    }

    /// Whether any tensor lies under this item.
    pub fn has_tensors(&self) -> bool {
        match self {
            Item::Tensor(_) => true,
            Item::List(items) => items.iter().any(Item::has_tensors),
            Item::Dict(entries) => entries.iter().any(|(_, v)| v.has_tensors()),
            _ => false,
        }
    }
}

fn collect_tensors<'a>(item: &'a Item, prefix: String, out: &mut Vec<(String, &'a RawTensor)>) {
    let join = |key: &str| {
        if prefix.is_empty() {
            key.to_string()
        } else {
            format!("{prefix}.{key}")
        }
    };
    match item {
        Item::Tensor(t) => out.push((prefix, t)),
        Item::Dict(entries) => {
            for (k, v) in entries {
                collect_tensors(v, join(k), out);
            }
        }
        Item::List(items) => {
            for (i, v) in items.iter().enumerate() {
                collect_tensors(v, join(&i.to_string()), out);
            }
        }
        _ => {}
    }
}

fn collect_owned(item: Item, prefix: String, out: &mut Vec<(String, RawTensor)>) {
    let join = |key: &str| {
        if prefix.is_empty() {
            key.to_string()
        } else {
            format!("{prefix}.{key}")
        }
    };
    match item {
        Item::Tensor(t) => out.push((prefix, t)),
        Item::Dict(entries) => {
            for (k, v) in entries {
                let name = join(&k);
                collect_owned(v, name, out);
            }
        }
        Item::List(items) => {
            for (i, v) in items.into_iter().enumerate() {
                let name = join(&i.to_string());
                collect_owned(v, name, out);
            }
        }
        _ => {}
    }
}

/// A parsed checkpoint.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub path: PathBuf,
    pub format: PthFormat,
    /// The checkpoint's object, or with [`read_pth_selected`] the part of it that was selected.
    pub root: Item,
    /// The dict keys [`read_pth_selected`]'s selector descended into (empty for [`read_pth`]).
    pub container: Vec<String>,
}

/// Picks the part of a checkpoint to read. It is given the checkpoint's *skeleton*: the
/// checkpoint's items where every tensor is a [`RawTensor`] with its dtype and shape but no data
/// (`data` is empty), built from the pickle before any storage is read. It returns the dict keys
/// to descend into (`["state_dict"]`), or an error, for instance when the shapes do not fit a
/// model: then nothing is inflated at all.
pub type Selector<'a> = &'a mut dyn FnMut(&Item) -> Result<Vec<String>, WeightsError>;

/// Reads a `.pth`/`.pt`/`.pth.tar` file of either format (recognised by content, not by name).
pub fn read_pth(path: &Path) -> Result<Checkpoint, WeightsError> {
    read_pth_impl(path, None)
}

/// [`read_pth`] in two steps: the pickle first, then `select` looks at the declared tensors,
/// and only then are the storages of the selected part read (issue 7, decompression bombs: a
/// 2 MB file declaring a 2 GB tensor a model cannot hold is refused before it is inflated, and
/// the optimizer state of a training checkpoint is never inflated at all).
pub fn read_pth_selected(path: &Path, select: Selector<'_>) -> Result<Checkpoint, WeightsError> {
    read_pth_impl(path, Some(select))
}

fn read_pth_impl(path: &Path, select: Option<Selector<'_>>) -> Result<Checkpoint, WeightsError> {
    let mut head = [0u8; 512];
    let mut f = File::open(path).map_err(|e| WeightsError::io(path, "cannot open", e))?;
    let n = read_up_to(&mut f, &mut head).map_err(|e| WeightsError::io(path, "cannot read", e))?;
    match sniff(&head[..n], path)? {
        // Zip members are read one by one from the file; the legacy format is parsed in memory.
        PthFormat::Zip => {
            f.seek(SeekFrom::Start(0))
                .map_err(|e| WeightsError::io(path, "cannot read", e))?;
            read_zip(BufReader::new(f), path, select)
        }
        PthFormat::Legacy => {
            drop(f);
            let data = std::fs::read(path).map_err(|e| WeightsError::io(path, "cannot read", e))?;
            parse_legacy(&data, path, select)
        }
    }
}

/// [`read_pth`] on bytes already in memory; `path` is only used in error messages.
pub fn parse_pth(bytes: &[u8], path: &Path) -> Result<Checkpoint, WeightsError> {
    parse_pth_selected(bytes, path, None)
}

/// [`read_pth_selected`] on bytes already in memory (`select` may be `None`: everything).
pub fn parse_pth_selected(
    bytes: &[u8],
    path: &Path,
    select: Option<Selector<'_>>,
) -> Result<Checkpoint, WeightsError> {
    match sniff(&bytes[..bytes.len().min(512)], path)? {
        PthFormat::Zip => read_zip(Cursor::new(bytes), path, select),
        PthFormat::Legacy => parse_legacy(bytes, path, select),
    }
}

fn sniff(head: &[u8], path: &Path) -> Result<PthFormat, WeightsError> {
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        Ok(PthFormat::Zip)
    } else if head.starts_with(&[0x80, 0x02, 0x8a]) {
        Ok(PthFormat::Legacy)
    } else if head.len() >= 262 && &head[257..262] == b"ustar" {
        Err(WeightsError::format(
            path,
            "a tar-format checkpoint (torch < 0.1.10) is not supported; re-save it with a newer torch",
        ))
    } else if head.is_empty() {
        Err(WeightsError::format(path, "the file is empty"))
    } else {
        Err(WeightsError::format(
            path,
            "not a PyTorch checkpoint: neither a zip archive nor a legacy torch.save pickle",
        ))
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

// ----- zip format -----

fn read_zip<R: Read + Seek>(
    reader: R,
    path: &Path,
    select: Option<Selector<'_>>,
) -> Result<Checkpoint, WeightsError> {
    let mut archive = zip::ZipArchive::new(reader).map_err(|e| {
        WeightsError::format(
            path,
            format!("not a readable zip archive (truncated?): {e}"),
        )
    })?;
    let names: Vec<String> = archive.file_names().map(str::to_string).collect();
    let pickle_name = names
        .iter()
        .filter(|n| n.ends_with("data.pkl") && n.matches('/').count() <= 1)
        .min_by_key(|n| n.len())
        .cloned()
        .ok_or_else(|| {
            let torchscript = names
                .iter()
                .any(|n| n.contains("/code/") || n.ends_with("constants.pkl"));
            if torchscript {
                WeightsError::format(
                    path,
                    "a TorchScript archive (torch.jit.save), not a state_dict; save \
                     `model.state_dict()` with torch.save instead",
                )
            } else {
                WeightsError::format(
                    path,
                    "zip archive without a data.pkl: not a torch.save file",
                )
            }
        })?;
    let prefix = pickle_name.trim_end_matches("data.pkl").to_string();
    // torch.jit.save archives also have a data.pkl, full of `__torch__` classes; say what the
    // file is rather than refusing its first global.
    if names
        .iter()
        .any(|n| n.starts_with(&format!("{prefix}code/")) || *n == format!("{prefix}constants.pkl"))
    {
        return Err(WeightsError::format(
            path,
            "a TorchScript archive (torch.jit.save), not a state_dict; save `model.state_dict()` \
             with torch.save instead",
        ));
    }

    let byteorder = format!("{prefix}byteorder");
    let big_endian = match read_member(&mut archive, path, &byteorder, MAX_BYTEORDER_BYTES) {
        Ok(bytes) => match bytes.as_slice() {
            b"little" => false,
            b"big" => true,
            other => {
                return Err(WeightsError::format(
                    path,
                    format!("unknown byteorder {:?}", String::from_utf8_lossy(other)),
                ))
            }
        },
        // Files from torch 1.6..1.9 have no byteorder record; they were little-endian.
        Err(_) => false,
    };

    let pkl = read_member(&mut archive, path, &pickle_name, MAX_PICKLE_BYTES)?;
    let mut storage_refs = BTreeMap::new();
    let (value, _) = pickle::unpickle(&pkl, 0, &mut storage_refs)
        .map_err(|e| pickle_error(path, &pickle_name, e))?;
    drop(pkl);
    let (value, container) = choose(value, path, select)?;

    // Only the storages the chosen tensors use are read, and of each only the elements they
    // reach; every size is checked against the pickle's declarations before inflating.
    let mut storages: HashMap<String, Cow<[u8]>> = HashMap::new();
    for (key, (storage, needed)) in storage_needs(&value, path)? {
        let member = format!("{prefix}data/{key}");
        let mut bytes = read_storage(&mut archive, path, &member, &storage, needed)?;
        if big_endian {
            swap_bytes(&mut bytes, storage.dtype.size());
        }
        storages.insert(key, Cow::Owned(bytes));
    }
    let root = Walk::data(&storages)
        .item(&value, 0)
        .map_err(|m| WeightsError::format(path, m))?;
    Ok(Checkpoint {
        path: path.to_path_buf(),
        format: PthFormat::Zip,
        root,
        container,
    })
}

/// Reads a whole archive member that may hold at most `limit` bytes. The member's declared
/// size is checked before inflating and the inflation is bounded, so a member whose header lies
/// cannot make us hold more than `limit + 1` bytes.
fn read_member<R: Read + Seek>(
    archive: &mut zip::ZipArchive<R>,
    path: &Path,
    name: &str,
    limit: u64,
) -> Result<Vec<u8>, WeightsError> {
    let entry = archive
        .by_name(name)
        .map_err(|e| WeightsError::format(path, format!("missing archive member {name}: {e}")))?;
    let declared = entry.size();
    if declared > limit {
        return Err(WeightsError::format(
            path,
            format!(
                "archive member {name} declares {declared} bytes, more than the {limit} bytes \
                 such a record can need; not inflating it"
            ),
        ));
    }
    inflate_bounded(entry, path, name, declared, declared)
}

/// Inflates the first `want` bytes of an archive member that declares `declared` bytes
/// (`want <= declared`). When the whole member is wanted it is read to its end through a
/// `take(declared + 1)`, which makes the zip crate verify the CRC (catching corrupted storages)
/// and catches a member that inflates to more than its header says; otherwise the rest of the
/// member is never inflated.
fn inflate_bounded(
    entry: impl Read,
    path: &Path,
    name: &str,
    declared: u64,
    want: u64,
) -> Result<Vec<u8>, WeightsError> {
    let mut bytes = Vec::new();
    let capacity = usize::try_from(want).ok();
    capacity
        .and_then(|c| bytes.try_reserve_exact(c).ok())
        .ok_or_else(|| {
            WeightsError::format(
                path,
                format!("cannot allocate {want} bytes for archive member {name}"),
            )
        })?;
    let whole = want == declared;
    let cap = if whole {
        declared.saturating_add(1)
    } else {
        want
    };
    entry.take(cap).read_to_end(&mut bytes).map_err(|e| {
        WeightsError::format(path, format!("cannot read archive member {name}: {e}"))
    })?;
    let got = bytes.len() as u64;
    if got > declared {
        return Err(WeightsError::format(
            path,
            format!(
                "archive member {name} inflates to more than the {declared} bytes its header \
                 declares (corrupt or hostile file); stopped"
            ),
        ));
    }
    if got < want {
        return Err(WeightsError::format(
            path,
            format!(
                "archive member {name} ends after {got} of its {declared} declared bytes \
                 (truncated?)"
            ),
        ));
    }
    Ok(bytes)
}

/// Reads the bytes of one storage that the chosen tensors reach (`needed` elements from its
/// start). `torch.save` writes exactly `numel x element size` bytes per storage, so a member
/// declaring more than the pickle's storage record is refused before anything is inflated, and
/// only the reached prefix is inflated: a storage larger than its views need (a bomb hiding
/// behind a one-element tensor) costs nothing.
fn read_storage<R: Read + Seek>(
    archive: &mut zip::ZipArchive<R>,
    path: &Path,
    member: &str,
    storage: &StorageRef,
    needed: u64,
) -> Result<Vec<u8>, WeightsError> {
    let elt = storage.dtype.size() as u64;
    let dtype = storage.dtype;
    let numel = storage.numel;
    let declared_by_pickle = numel.checked_mul(elt).ok_or_else(|| {
        WeightsError::format(
            path,
            format!("storage {} of {numel} elements overflows", storage.key),
        )
    })?;
    let entry = archive
        .by_name(member)
        .map_err(|e| WeightsError::format(path, format!("missing archive member {member}: {e}")))?;
    let declared = entry.size();
    if declared > declared_by_pickle {
        return Err(WeightsError::format(
            path,
            format!(
                "archive member {member} declares {declared} bytes, more than the \
                 {declared_by_pickle} bytes of the {numel}-element {dtype:?} storage the pickle \
                 describes; not inflating it"
            ),
        ));
    }
    // `needed <= numel` was checked by `storage_needs`, so this does not overflow.
    let needed_bytes = needed * elt;
    if declared < needed_bytes {
        return Err(WeightsError::format(
            path,
            format!(
                "archive member {member} holds {declared} bytes, but the tensors over its \
                 storage reach {needed_bytes} bytes"
            ),
        ));
    }
    inflate_bounded(entry, path, member, declared, needed_bytes)
}

/// Narrows the checkpoint to what `select` asks for, looking only at its skeleton.
fn choose(
    value: Value,
    path: &Path,
    select: Option<Selector<'_>>,
) -> Result<(Value, Vec<String>), WeightsError> {
    let Some(select) = select else {
        return Ok((value, Vec::new()));
    };
    let skeleton = Walk::skeleton()
        .item(&value, 0)
        .map_err(|m| WeightsError::format(path, m))?;
    let container = select(&skeleton)?;
    drop(skeleton);
    let mut value = value;
    for key in &container {
        let inner = match &value {
            Value::Dict(pairs) => pairs
                .borrow()
                .0
                .iter()
                .find(|(k, _)| key_string(k) == *key)
                .map(|(_, v)| v.clone()),
            _ => None,
        };
        value = inner.ok_or_else(|| {
            WeightsError::format(path, format!("the checkpoint has no container {key}"))
        })?;
    }
    Ok((value, container))
}

/// For every storage the tensors under `value` use, the number of elements from its start that
/// they reach (the furthest element + 1), checked against the storage's declared size.
fn storage_needs(
    value: &Value,
    path: &Path,
) -> Result<BTreeMap<String, (Rc<StorageRef>, u64)>, WeightsError> {
    let mut tensors = Vec::new();
    let mut visits = 0;
    collect_tensor_refs(value, 0, &mut visits, &mut tensors)
        .map_err(|m| WeightsError::format(path, m))?;
    let mut needs: BTreeMap<String, (Rc<StorageRef>, u64)> = BTreeMap::new();
    for t in tensors {
        let end = view_end(&t).map_err(|m| WeightsError::format(path, m))?;
        let storage = &t.storage;
        if storage.view.is_some() {
            // Pre-1.0 storage views only occur in legacy files, which are not read here.
            continue;
        }
        if end > storage.numel {
            return Err(WeightsError::format(
                path,
                format!(
                    "tensor view (offset {}, size {:?}, stride {:?}) reaches element {} of \
                     storage {}, which the pickle declares with {} elements",
                    t.offset,
                    t.size,
                    t.stride,
                    end - 1,
                    storage.key,
                    storage.numel
                ),
            ));
        }
        let entry = needs
            .entry(storage.key.clone())
            .or_insert_with(|| (storage.clone(), 0));
        entry.1 = entry.1.max(end);
    }
    Ok(needs)
}

/// One past the furthest storage element a tensor view touches (0 for an empty tensor).
fn view_end(t: &TensorRef) -> Result<u64, String> {
    if t.size.contains(&0) {
        return Ok(0);
    }
    t.size
        .iter()
        .zip(&t.stride)
        .try_fold(t.offset, |acc, (&n, &s)| {
            (n - 1).checked_mul(s).and_then(|x| acc.checked_add(x))
        })
        .and_then(|last| last.checked_add(1))
        .ok_or_else(|| "tensor view overflows".to_string())
}

fn collect_tensor_refs(
    value: &Value,
    depth: usize,
    visits: &mut usize,
    out: &mut Vec<Rc<TensorRef>>,
) -> Result<(), String> {
    visit(depth, visits)?;
    match value {
        Value::Tensor(t) => out.push(t.clone()),
        Value::Tuple(items) => {
            for v in items.0.iter() {
                collect_tensor_refs(v, depth + 1, visits, out)?;
            }
        }
        Value::List(items) => {
            for v in items.borrow().0.iter() {
                collect_tensor_refs(v, depth + 1, visits, out)?;
            }
        }
        Value::Dict(pairs) => {
            for (_, v) in pairs.borrow().0.iter() {
                collect_tensor_refs(v, depth + 1, visits, out)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Counts one visited value, refusing too deep or too many (see [`MAX_DEPTH`], [`MAX_VALUES`]).
fn visit(depth: usize, visits: &mut usize) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "containers nested deeper than {MAX_DEPTH} levels (or a reference cycle)"
        ));
    }
    *visits += 1;
    if *visits > MAX_VALUES {
        return Err(format!(
            "more than {MAX_VALUES} values (containers aliased many times over?)"
        ));
    }
    Ok(())
}

// ----- legacy format -----

fn parse_legacy(
    data: &[u8],
    path: &Path,
    select: Option<Selector<'_>>,
) -> Result<Checkpoint, WeightsError> {
    let mut refs = BTreeMap::new();
    let run = |start: usize, what: &str, refs: &mut BTreeMap<String, Rc<StorageRef>>| {
        pickle::unpickle(data, start, refs).map_err(|e| pickle_error(path, what, e))
    };

    let (magic, pos) = run(0, "the magic number", &mut refs)?;
    if !matches!(&magic, Value::BigInt(b) if b.as_slice() == LEGACY_MAGIC) {
        return Err(WeightsError::format(
            path,
            "a plain pickle, not a torch.save file (wrong magic number)",
        ));
    }
    let (protocol, pos) = run(pos, "the protocol version", &mut refs)?;
    if !matches!(protocol, Value::Int(LEGACY_PROTOCOL)) {
        return Err(WeightsError::format(
            path,
            "unsupported legacy protocol version",
        ));
    }
    let (sys_info, pos) = run(pos, "sys_info", &mut refs)?;
    let little_endian = match &sys_info {
        Value::Dict(d) => !d.borrow().0.iter().any(|(k, v)| {
            matches!(k, Value::Str(k) if k == "little_endian") && matches!(v, Value::Bool(false))
        }),
        _ => true,
    };
    let (value, pos) = run(pos, "the object pickle", &mut refs)?;
    let (keys, mut pos) = run(pos, "the storage list", &mut refs)?;
    let keys: Vec<String> = match &keys {
        Value::List(l) => l
            .borrow()
            .0
            .iter()
            .map(|k| match k {
                Value::Str(s) => Ok(s.clone()),
                other => Err(WeightsError::format(
                    path,
                    format!("storage key is {}, not a string", describe(other)),
                )),
            })
            .collect::<Result<_, _>>()?,
        other => {
            return Err(WeightsError::format(
                path,
                format!("storage list is {}, not a list", describe(other)),
            ))
        }
    };

    // Storages are borrowed from the file's bytes, not copied: a W48 checkpoint is 250 MB.
    let mut storages: HashMap<String, Cow<[u8]>> = HashMap::new();
    for key in &keys {
        let storage = refs.get(key).ok_or_else(|| {
            WeightsError::format(path, format!("storage {key} is listed but never used"))
        })?;
        let truncated = || {
            WeightsError::format(
                path,
                format!("unexpected end of file in storage {key} (truncated?)"),
            )
        };
        let header = data.get(pos..pos + 8).ok_or_else(truncated)?;
        let mut count = [0u8; 8];
        count.copy_from_slice(header);
        let count = if little_endian {
            u64::from_le_bytes(count)
        } else {
            u64::from_be_bytes(count)
        };
        let len = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(storage.dtype.size()))
            .ok_or_else(truncated)?;
        let start = pos + 8;
        let end = start.checked_add(len).ok_or_else(truncated)?;
        let bytes = data.get(start..end).ok_or_else(truncated)?;
        let bytes = if little_endian {
            Cow::Borrowed(bytes)
        } else {
            let mut swapped = bytes.to_vec();
            swap_bytes(&mut swapped, storage.dtype.size());
            Cow::Owned(swapped)
        };
        storages.insert(key.clone(), bytes);
        pos = end;
    }
    // Pre-1.0 storage views: a slice of another storage, by element offset and size.
    for storage in refs.values() {
        if let Some((root, offset, size)) = &storage.view {
            let elt = storage.dtype.size() as u64;
            let bytes = storages.get(root).ok_or_else(|| {
                WeightsError::format(path, format!("storage view of unknown storage {root}"))
            })?;
            let range = offset
                .checked_mul(elt)
                .zip(offset.checked_add(*size).and_then(|e| e.checked_mul(elt)))
                .filter(|&(_, e)| e <= bytes.len() as u64)
                .ok_or_else(|| WeightsError::format(path, "storage view out of range"))?;
            let slice = bytes[range.0 as usize..range.1 as usize].to_vec();
            storages.insert(storage.key.clone(), Cow::Owned(slice));
        }
    }

    // Storages are slices of the file, so choosing first only saves the copies of the views.
    let (value, container) = choose(value, path, select)?;
    let root = Walk::data(&storages)
        .item(&value, 0)
        .map_err(|m| WeightsError::format(path, m))?;
    Ok(Checkpoint {
        path: path.to_path_buf(),
        format: PthFormat::Legacy,
        root,
        container,
    })
}

// ----- values to items -----

/// Turns pickle values into items: with storage bytes (tensors materialised), or as a skeleton
/// (tensors with dtype and shape but no data, for [`Selector`]s).
struct Walk<'a> {
    storages: Option<&'a HashMap<String, Cow<'a, [u8]>>>,
    visits: usize,
}

impl<'a> Walk<'a> {
    fn data(storages: &'a HashMap<String, Cow<'a, [u8]>>) -> Self {
        Walk {
            storages: Some(storages),
            visits: 0,
        }
    }

    fn skeleton() -> Self {
        Walk {
            storages: None,
            visits: 0,
        }
    }

    fn item(&mut self, value: &Value, depth: usize) -> Result<Item, String> {
        visit(depth, &mut self.visits)?;
        Ok(match value {
            Value::None => Item::None,
            Value::Bool(b) => Item::Bool(*b),
            Value::Int(i) => Item::Int(*i),
            Value::BigInt(b) => Item::Other(format!("{}-byte integer", b.len())),
            Value::Float(f) => Item::Float(*f),
            Value::Str(s) => Item::Str(s.clone()),
            Value::Bytes(b) => Item::Bytes(b.clone()),
            Value::Tuple(items) => Item::List(
                items
                    .0
                    .iter()
                    .map(|v| self.item(v, depth + 1))
                    .collect::<Result<_, _>>()?,
            ),
            Value::List(items) => Item::List(
                items
                    .borrow()
                    .0
                    .iter()
                    .map(|v| self.item(v, depth + 1))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Dict(pairs) => {
                let pairs = pairs.borrow();
                let mut entries = Vec::with_capacity(pairs.0.len());
                for (k, v) in &pairs.0 {
                    entries.push((key_string(k), self.item(v, depth + 1)?));
                }
                Item::Dict(entries)
            }
            Value::Tensor(t) => Item::Tensor(match self.storages {
                Some(storages) => tensor_from_storage(t, storages)?,
                None => tensor_skeleton(t)?,
            }),
            Value::Storage(s) => Item::Other(format!("bare {:?} storage {}", s.dtype, s.key)),
            Value::Global(super::pickle::Global::Inert(name)) => Item::Other(name.to_string()),
            Value::Global(g) => Item::Other(format!("{g:?}")),
            Value::Opaque(name) => Item::Other(name.to_string()),
        })
    }
}

/// A tensor's dtype and shape with no data (see [`Selector`]).
fn tensor_skeleton(t: &TensorRef) -> Result<RawTensor, String> {
    let shape: Vec<usize> = t
        .size
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| "tensor size overflows".to_string()))
        .collect::<Result<_, _>>()?;
    checked_numel(&shape).ok_or("tensor size overflows")?;
    Ok(RawTensor {
        dtype: t.storage.dtype,
        shape,
        data: Vec::new(),
    })
}

fn key_string(k: &Value) -> String {
    match k {
        Value::Str(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Bool(b) => if *b { "True" } else { "False" }.to_string(),
        Value::Float(f) => f.to_string(),
        Value::None => "None".to_string(),
        other => format!("<{}>", describe(other)),
    }
}

/// Copies a strided view out of its storage into a contiguous tensor. Offsets, sizes and strides
/// are in elements, as PyTorch records them; every index is bounds-checked against the storage's
/// actual bytes, because they come from the file.
fn tensor_from_storage(
    t: &TensorRef,
    storages: &HashMap<String, Cow<[u8]>>,
) -> Result<RawTensor, String> {
    let dtype = t.storage.dtype;
    let elt = dtype.size();
    let bytes = storages
        .get(&t.storage.key)
        .ok_or_else(|| format!("storage {} has no data", t.storage.key))?;
    let shape: Vec<usize> = t
        .size
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| "tensor size overflows".to_string()))
        .collect::<Result<_, _>>()?;
    let numel = checked_numel(&shape).ok_or("tensor size overflows")?;
    let out_len = numel.checked_mul(elt).ok_or("tensor size overflows")?;
    let mut data = Vec::new();
    data.try_reserve_exact(out_len)
        .map_err(|_| format!("cannot allocate {out_len} bytes for a tensor of shape {shape:?}"))?;
    if numel == 0 {
        return RawTensor::new(dtype, shape, data);
    }

    // The furthest element the view touches must lie inside the storage.
    let last = t
        .size
        .iter()
        .zip(&t.stride)
        .try_fold(t.offset, |acc, (&n, &s)| {
            (n - 1).checked_mul(s).and_then(|x| acc.checked_add(x))
        })
        .ok_or("tensor view overflows")?;
    let available = bytes.len() / elt;
    if last >= available as u64 {
        return Err(format!(
            "tensor view (offset {}, size {:?}, stride {:?}) reaches element {last} of a {:?} \
             storage of {available} elements",
            t.offset, t.size, t.stride, dtype
        ));
    }

    let contiguous = is_contiguous(&t.size, &t.stride);
    if contiguous {
        let start = t.offset as usize * elt;
        data.extend_from_slice(&bytes[start..start + out_len]);
    } else {
        // Walk the index space in row-major order; `last` bounds every element's position.
        let rank = shape.len();
        let mut index = vec![0usize; rank];
        for _ in 0..numel {
            let pos = t.offset as usize
                + index
                    .iter()
                    .zip(&t.stride)
                    .map(|(&i, &s)| i * s as usize)
                    .sum::<usize>();
            data.extend_from_slice(&bytes[pos * elt..(pos + 1) * elt]);
            for d in (0..rank).rev() {
                index[d] += 1;
                if index[d] < shape[d] {
                    break;
                }
                index[d] = 0;
            }
        }
    }
    RawTensor::new(dtype, shape, data)
}

/// Row-major contiguity, ignoring the strides of size-1 dimensions (PyTorch does too).
fn is_contiguous(size: &[u64], stride: &[u64]) -> bool {
    let mut expected = 1u64;
    for (&n, &s) in size.iter().zip(stride).rev() {
        if n != 1 && s != expected {
            return false;
        }
        expected = expected.saturating_mul(n);
    }
    true
}

fn swap_bytes(bytes: &mut [u8], elt: usize) {
    if elt > 1 {
        bytes.chunks_exact_mut(elt).for_each(|c| c.reverse());
    }
}

fn pickle_error(path: &Path, member: &str, e: PickleError) -> WeightsError {
    match e {
        PickleError::Forbidden { global, offset } => WeightsError::ForbiddenGlobal {
            path: path.to_path_buf(),
            global: printable(&global),
            member: printable(member),
            offset,
        },
        PickleError::Malformed { message, offset } => WeightsError::format(
            path,
            format!("malformed pickle in {member} at byte {offset}: {message}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::tensor::DType;

    fn storage(values: &[f64]) -> (Rc<StorageRef>, HashMap<String, Cow<'static, [u8]>>) {
        let s = Rc::new(StorageRef {
            key: "0".into(),
            dtype: DType::F32,
            numel: values.len() as u64,
            view: None,
        });
        let mut map = HashMap::new();
        let bytes = values
            .iter()
            .flat_map(|&v| (v as f32).to_le_bytes())
            .collect();
        map.insert("0".to_string(), Cow::Owned(bytes));
        (s, map)
    }

    fn floats(t: &RawTensor) -> Vec<f32> {
        t.data
            .chunks(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    #[test]
    fn strided_views_are_materialised_in_row_major_order() {
        let (s, map) = storage(&[0., 1., 2., 3., 4., 5.]);
        // The transpose of a 2x3 matrix: size (3, 2), stride (1, 3).
        let t = TensorRef {
            storage: s.clone(),
            offset: 0,
            size: vec![3, 2],
            stride: vec![1, 3],
        };
        assert_eq!(
            floats(&tensor_from_storage(&t, &map).unwrap()),
            vec![0., 3., 1., 4., 2., 5.]
        );
        // Offset 1, every second element.
        let t = TensorRef {
            storage: s.clone(),
            offset: 1,
            size: vec![3],
            stride: vec![2],
        };
        assert_eq!(
            floats(&tensor_from_storage(&t, &map).unwrap()),
            vec![1., 3., 5.]
        );
        // Stride 0 (expand).
        let t = TensorRef {
            storage: s.clone(),
            offset: 2,
            size: vec![2, 2],
            stride: vec![1, 0],
        };
        assert_eq!(
            floats(&tensor_from_storage(&t, &map).unwrap()),
            vec![2., 2., 3., 3.]
        );
    }

    #[test]
    fn views_past_the_storage_are_refused() {
        let (s, map) = storage(&[0., 1., 2.]);
        let t = TensorRef {
            storage: s.clone(),
            offset: 1,
            size: vec![3],
            stride: vec![1],
        };
        assert!(tensor_from_storage(&t, &map).is_err());
        let t = TensorRef {
            storage: s,
            offset: 0,
            size: vec![u64::MAX, 2],
            stride: vec![u64::MAX, 1],
        };
        assert!(tensor_from_storage(&t, &map).is_err());
    }

    #[test]
    fn contiguity_ignores_unit_dimensions() {
        assert!(is_contiguous(&[2, 1, 3], &[3, 99, 1]));
        assert!(!is_contiguous(&[3, 2], &[1, 3]));
        assert!(is_contiguous(&[], &[]));
    }
}
