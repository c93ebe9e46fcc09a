//! A reader for MATLAB MAT-file level 5 (the `.mat` files MATLAB writes with `-v6`/`-v7` and
//! `scipy.io.savemat` writes by default).
//!
//! The MPII benchmark ships its validation ground truth (`gt_valid.mat`) in this format, and the
//! official HRNet/MMPose evaluation reads it with `scipy.io.loadmat`. Reading it natively keeps
//! `posekit eval mpii` free of Python. The reader covers what such files contain: numeric arrays
//! of every class (real part, imaginary part kept when present), logical arrays, char arrays,
//! cell arrays and structs, in either byte order, with or without per-variable zlib compression
//! (`miCOMPRESSED`, what `-v7` and `do_compression=True` produce). Sparse matrices, objects and
//! function handles are recognised and kept as [`MatValue::Unsupported`], so a file that carries
//! one alongside the variables we need still opens; asking for such a variable is an error.
//!
//! MATLAB stores arrays column-major (first index fastest); [`MatArray::linear_index`] turns a
//! MATLAB-style (0-based) subscript into a position in the flat data.
//!
//! Every structural problem (not a MAT file, a truncated file, a tag whose size runs past its
//! container, a data type that cannot hold the class, a corrupt zlib stream) is an [`Error`]
//! that names the file and the variable, because these files come from users and the tool must
//! never panic on them.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The class of a MATLAB array (the low byte of its array-flags sub-element).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatClass {
    Cell,
    Struct,
    Object,
    Char,
    Sparse,
    Double,
    Single,
    Int8,
    Uint8,
    Int16,
    Uint16,
    Int32,
    Uint32,
    Int64,
    Uint64,
    Function,
    Opaque,
    /// A class code this reader does not know.
    Unknown(u8),
}

impl MatClass {
    fn from_code(code: u8) -> Self {
        match code {
            1 => MatClass::Cell,
            2 => MatClass::Struct,
            3 => MatClass::Object,
            4 => MatClass::Char,
            5 => MatClass::Sparse,
            6 => MatClass::Double,
            7 => MatClass::Single,
            8 => MatClass::Int8,
            9 => MatClass::Uint8,
            10 => MatClass::Int16,
            11 => MatClass::Uint16,
            12 => MatClass::Int32,
            13 => MatClass::Uint32,
            14 => MatClass::Int64,
            15 => MatClass::Uint64,
            16 => MatClass::Function,
            17 => MatClass::Opaque,
            other => MatClass::Unknown(other),
        }
    }

    /// MATLAB's name for the class, as `class(x)` prints it; used in error messages.
    pub fn name(&self) -> String {
        match self {
            MatClass::Cell => "cell".into(),
            MatClass::Struct => "struct".into(),
            MatClass::Object => "object".into(),
            MatClass::Char => "char".into(),
            MatClass::Sparse => "sparse".into(),
            MatClass::Double => "double".into(),
            MatClass::Single => "single".into(),
            MatClass::Int8 => "int8".into(),
            MatClass::Uint8 => "uint8".into(),
            MatClass::Int16 => "int16".into(),
            MatClass::Uint16 => "uint16".into(),
            MatClass::Int32 => "int32".into(),
            MatClass::Uint32 => "uint32".into(),
            MatClass::Int64 => "int64".into(),
            MatClass::Uint64 => "uint64".into(),
            MatClass::Function => "function_handle".into(),
            MatClass::Opaque => "opaque".into(),
            MatClass::Unknown(code) => format!("unknown class {code}"),
        }
    }

    fn is_numeric(&self) -> bool {
        matches!(
            self,
            MatClass::Double
                | MatClass::Single
                | MatClass::Int8
                | MatClass::Uint8
                | MatClass::Int16
                | MatClass::Uint16
                | MatClass::Int32
                | MatClass::Uint32
                | MatClass::Int64
                | MatClass::Uint64
        )
    }
}

/// A numeric or logical array. Values are widened to `f64` whatever the class or the (possibly
/// narrower) type they were stored in, because every consumer here computes in `f64`; 64-bit
/// integers above 2^53 lose precision, which no pose-data file needs.
#[derive(Debug, Clone, PartialEq)]
pub struct NumericData {
    pub class: MatClass,
    /// MATLAB `logical` arrays are stored as `uint8` with this flag set.
    pub logical: bool,
    /// Real part, column-major.
    pub real: Vec<f64>,
    /// Imaginary part, column-major, for complex arrays.
    pub imag: Option<Vec<f64>>,
}

/// A struct array: `values[element * fields.len() + field]`, elements in column-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct StructData {
    pub fields: Vec<String>,
    pub values: Vec<MatArray>,
}

impl StructData {
    /// The value of `field` in struct element `element` (0-based, column-major).
    pub fn get(&self, element: usize, field: &str) -> Option<&MatArray> {
        let f = self.fields.iter().position(|name| name == field)?;
        self.values.get(element * self.fields.len() + f)
    }
}

/// The contents of an array, by kind.
#[derive(Debug, Clone, PartialEq)]
pub enum MatValue {
    Numeric(NumericData),
    /// Characters, column-major (a `1 x n` char array is one string).
    Char(Vec<char>),
    /// Cell elements, column-major.
    Cell(Vec<MatArray>),
    Struct(StructData),
    /// A class this reader skips (sparse, object, function handle, ...); kept so that the rest
    /// of the file stays usable.
    Unsupported(MatClass),
}

/// One MATLAB array: its dimensions and its contents.
#[derive(Debug, Clone, PartialEq)]
pub struct MatArray {
    /// MATLAB dimensions (at least two for anything MATLAB writes).
    pub dims: Vec<usize>,
    pub value: MatValue,
}

impl MatArray {
    /// The number of elements (product of the dimensions).
    pub fn numel(&self) -> usize {
        self.dims.iter().product()
    }

    pub fn class(&self) -> MatClass {
        match &self.value {
            MatValue::Numeric(n) => n.class,
            MatValue::Char(_) => MatClass::Char,
            MatValue::Cell(_) => MatClass::Cell,
            MatValue::Struct(_) => MatClass::Struct,
            MatValue::Unsupported(class) => *class,
        }
    }

    /// The dimensions with trailing singleton dimensions dropped, padded with ones to `n`
    /// entries. MATLAB drops trailing singletons when it saves (a 16x2x1 array is stored as
    /// 16x2), so shape checks compare against this instead of `dims`. `None` when the array has
    /// more than `n` non-singleton trailing dimensions.
    pub fn dims_as(&self, n: usize) -> Option<Vec<usize>> {
        let mut dims = self.dims.clone();
        while dims.len() > n && dims.last() == Some(&1) {
            dims.pop();
        }
        if dims.len() > n {
            return None;
        }
        dims.resize(n, 1);
        Some(dims)
    }

    /// The position in the column-major data of a 0-based subscript; `None` when the subscript
    /// has the wrong number of entries or is out of range.
    pub fn linear_index(&self, subscript: &[usize]) -> Option<usize> {
        let dims = self.dims_as(subscript.len())?;
        let mut index = 0;
        let mut stride = 1;
        for (&s, &d) in subscript.iter().zip(&dims) {
            if s >= d {
                return None;
            }
            index += s * stride;
            stride *= d;
        }
        Some(index)
    }

    /// The numeric contents, if this is a numeric or logical array.
    pub fn as_numeric(&self) -> Option<&NumericData> {
        match &self.value {
            MatValue::Numeric(n) => Some(n),
            _ => None,
        }
    }

    /// The rows of a char array as strings (a `1 x n` array gives one string). MATLAB pads the
    /// rows of a char matrix with spaces, so trailing spaces are trimmed.
    pub fn char_rows(&self) -> Option<Vec<String>> {
        let MatValue::Char(chars) = &self.value else {
            return None;
        };
        let dims = self.dims_as(2)?;
        let (rows, cols) = (dims[0], dims[1]);
        Some(
            (0..rows)
                .map(|r| {
                    let row: String = (0..cols).filter_map(|c| chars.get(r + rows * c)).collect();
                    row.trim_end_matches(' ').to_string()
                })
                .collect(),
        )
    }
}

/// A parsed MAT v5 file: its variables in file order.
#[derive(Debug, Clone)]
pub struct MatFile {
    path: PathBuf,
    /// The 116-byte descriptive text of the header ("MATLAB 5.0 MAT-file, Platform: ...").
    pub description: String,
    variables: Vec<(String, MatArray)>,
    /// Every variable name in file order, including the ones skipped by
    /// [`MatFile::open_variables`], so that "missing variable" errors list what the file has.
    names: Vec<String>,
}

/// The most bytes one variable may take once inflated or decoded (512 MiB). The largest MPII
/// file (the full `mpii_human_pose_v1_u12_1.mat` annotation release) inflates to well under
/// this; a variable above it is a corrupt or hostile file (issue 7: a 3 MB file with a deflated
/// 20000x20000 double), refused before anything is inflated.
pub const MAX_VARIABLE_BYTES: u64 = 512 << 20;

/// How many inflated bytes of a compressed variable are read to learn its name, class and
/// dimensions before deciding whether to inflate the rest. The array flags, a dimensions element
/// of up to 32 dimensions and a 63-character name (MATLAB's limits) take under 256 bytes.
const HEADER_PEEK: usize = 4096;

impl MatFile {
    /// Reads and parses a file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = crate::error::read_file(path)?;
        Self::from_bytes(path, &bytes)
    }

    /// Reads only the variables named in `wanted`. The others are skipped by their element's
    /// byte count: an uncompressed one is not decoded, a compressed one is not inflated beyond
    /// its first few hundred bytes (its name is inside the zlib stream; scipy's `loadmat` with
    /// `variable_names` does the same). Their names still appear in "missing variable" errors.
    pub fn open_variables(path: impl AsRef<Path>, wanted: &[&str]) -> Result<Self> {
        let path = path.as_ref();
        let bytes = crate::error::read_file(path)?;
        Self::from_bytes_selected(path, &bytes, Some(wanted))
    }

    /// Parses the bytes of a file; `path` is only used to name the file in errors.
    pub fn from_bytes(path: impl AsRef<Path>, bytes: &[u8]) -> Result<Self> {
        Self::from_bytes_selected(path, bytes, None)
    }

    /// [`MatFile::from_bytes`] that parses only the variables in `wanted` (all when `None`); see
    /// [`MatFile::open_variables`].
    pub fn from_bytes_selected(
        path: impl AsRef<Path>,
        bytes: &[u8],
        wanted: Option<&[&str]>,
    ) -> Result<Self> {
        let path = path.as_ref();
        let (description, big_endian) = parse_header(bytes).map_err(|m| Error::parse(path, m))?;
        let mut cursor = Cursor {
            bytes,
            pos: HEADER_LEN,
            big_endian,
        };
        let mut variables = Vec::new();
        let mut names = Vec::new();
        let is_wanted = |name: &str| wanted.is_none_or(|w| w.contains(&name));
        while cursor.pos < bytes.len() {
            let offset = cursor.pos;
            // Until its name is read a variable can only be named by its position.
            let unnamed = format!("variable #{} (at byte {offset})", names.len() + 1);
            let element = cursor
                .element(false)
                .map_err(|m| Error::invalid(path, &unnamed, m))?;
            let parsed = match element.ty {
                MI_MATRIX => {
                    cursor.skip_padding(element.data.len());
                    let header = peek_header(element.data, big_endian, &unnamed)
                        .map_err(|e| located_error(path, e))?;
                    if is_wanted(&header.name) {
                        parse_matrix(element.data, big_endian, &mut Context::top(&unnamed))
                            .map(Some)
                    } else {
                        names.push(header.name);
                        Ok(None)
                    }
                }
                MI_COMPRESSED => parse_compressed(element.data, big_endian, &unnamed, &is_wanted)
                    .map(|parsed| match parsed {
                        Compressed::Parsed(name, array) => Some((name, array)),
                        Compressed::Skipped(name) => {
                            names.push(name);
                            None
                        }
                    }),
                other => Err(Located {
                    at: unnamed.clone(),
                    message: format!(
                        "unexpected data element type {} at the top level (expected a matrix \
                         or a compressed matrix)",
                        type_name(other)
                    ),
                }),
            }
            .map_err(|e| located_error(path, e))?;
            if let Some((name, array)) = parsed {
                names.push(name.clone());
                variables.push((name, array));
            }
        }
        Ok(MatFile {
            path: path.to_path_buf(),
            description,
            variables,
            names,
        })
    }

    /// The file this was read from (for error messages of the code that interprets it).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Variable names and arrays, in file order.
    pub fn variables(&self) -> impl Iterator<Item = (&str, &MatArray)> {
        self.variables.iter().map(|(n, a)| (n.as_str(), a))
    }

    pub fn get(&self, name: &str) -> Option<&MatArray> {
        self.variables
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a)
    }

    /// The variable `name`, or an error that lists what the file does contain.
    pub fn require(&self, name: &str) -> Result<&MatArray> {
        self.get(name).ok_or_else(|| {
            let present: Vec<&str> = self.names.iter().map(String::as_str).collect();
            Error::invalid(
                &self.path,
                name,
                format!(
                    "variable is missing (the file has: {})",
                    if present.is_empty() {
                        "no variables".to_string()
                    } else {
                        printable(&present.join(", "))
                    }
                ),
            )
        })
    }

    /// The variable `name` as a numeric (or logical) array.
    pub fn require_numeric(&self, name: &str) -> Result<(&[usize], &NumericData)> {
        let array = self.require(name)?;
        match &array.value {
            MatValue::Numeric(n) => Ok((&array.dims, n)),
            _ => Err(Error::invalid(
                &self.path,
                name,
                format!(
                    "expected a numeric array, found class {}",
                    array.class().name()
                ),
            )),
        }
    }

    /// The variable `name` as a list of strings: a cell array of char rows (MATLAB's usual
    /// `{'a', 'b'}`), or a char matrix whose rows are the strings.
    pub fn require_strings(&self, name: &str) -> Result<Vec<String>> {
        let array = self.require(name)?;
        let invalid = |message: String| Error::invalid(&self.path, name, message);
        match &array.value {
            MatValue::Char(_) => array
                .char_rows()
                .ok_or_else(|| invalid(format!("char array with dimensions {:?}", array.dims))),
            MatValue::Cell(cells) => cells
                .iter()
                .enumerate()
                .map(|(i, cell)| match cell.char_rows().as_deref() {
                    Some([one]) => Ok(one.clone()),
                    Some([]) => Ok(String::new()),
                    _ => Err(invalid(format!(
                        "cell {{{}}} is not a single string (class {}, dimensions {:?})",
                        i + 1,
                        cell.class().name(),
                        cell.dims
                    ))),
                })
                .collect(),
            _ => Err(invalid(format!(
                "expected a cell array of strings, found class {}",
                array.class().name()
            ))),
        }
    }
}

const HEADER_LEN: usize = 128;

// Data element types (MAT-file format, table "MAT-File Data Types").
const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;
const MI_UTF8: u32 = 16;
const MI_UTF16: u32 = 17;
const MI_UTF32: u32 = 18;

// Array flags.
const FLAG_COMPLEX: u32 = 0x08;
const FLAG_LOGICAL: u32 = 0x02;

/// Nesting deeper than this is refused: a crafted file of nested cells would otherwise overflow
/// the stack, and no real data nests more than a handful of levels.
const MAX_DEPTH: usize = 64;

fn type_name(ty: u32) -> String {
    let name = match ty {
        MI_INT8 => "miINT8",
        MI_UINT8 => "miUINT8",
        MI_INT16 => "miINT16",
        MI_UINT16 => "miUINT16",
        MI_INT32 => "miINT32",
        MI_UINT32 => "miUINT32",
        MI_SINGLE => "miSINGLE",
        MI_DOUBLE => "miDOUBLE",
        MI_INT64 => "miINT64",
        MI_UINT64 => "miUINT64",
        MI_MATRIX => "miMATRIX",
        MI_COMPRESSED => "miCOMPRESSED",
        MI_UTF8 => "miUTF8",
        MI_UTF16 => "miUTF16",
        MI_UTF32 => "miUTF32",
        other => return format!("{other} (unknown)"),
    };
    name.to_string()
}

/// Checks the 128-byte header and returns its text and whether the data are big-endian.
fn parse_header(bytes: &[u8]) -> std::result::Result<(String, bool), String> {
    if bytes.len() < HEADER_LEN {
        return Err(format!(
            "not a MAT v5 file: {} bytes is shorter than the 128-byte header",
            bytes.len()
        ));
    }
    // The version is written as the 16-bit value 0x0100 and the indicator as the characters
    // 'M' 'I' packed into a 16-bit value, both in the writer's byte order: reading 'I' 'M'
    // means little-endian.
    let big_endian = match &bytes[126..128] {
        b"IM" => false,
        b"MI" => true,
        _ => {
            return Err(
                if bytes.starts_with(b"\x89HDF") || bytes.get(512..516) == Some(b"\x89HDF") {
                    "MAT v7.3 (HDF5) files are not supported; save with -v7 or scipy.io.savemat"
                        .into()
                } else {
                    "not a MAT v5 file: no endianness indicator ('IM' or 'MI') at bytes 126-127"
                        .into()
                },
            )
        }
    };
    let version = if big_endian {
        u16::from_be_bytes([bytes[124], bytes[125]])
    } else {
        u16::from_le_bytes([bytes[124], bytes[125]])
    };
    let description = String::from_utf8_lossy(&bytes[..116])
        .trim_end_matches([' ', '\0'])
        .to_string();
    if version == 0x0200 || description.starts_with("MATLAB 7.3") {
        return Err(
            "MAT v7.3 (HDF5) files are not supported; save with -v7 or scipy.io.savemat".into(),
        );
    }
    if version != 0x0100 {
        return Err(format!(
            "unsupported MAT-file version 0x{version:04x} (expected 0x0100)"
        ));
    }
    Ok((description, big_endian))
}

/// An error message and the variable (or cell/field inside it) it concerns.
struct Located {
    at: String,
    message: String,
}

/// Where the parser is, for error messages: `pos_gt_src`, `dataset_joints{3}`, `s(2).name`.
struct Context {
    at: String,
    depth: usize,
}

impl Context {
    fn top(at: &str) -> Self {
        Context {
            at: at.to_string(),
            depth: 0,
        }
    }

    fn fail<T>(&self, message: impl Into<String>) -> std::result::Result<T, Located> {
        Err(Located {
            at: self.at.clone(),
            message: message.into(),
        })
    }

    fn child(&self, suffix: String) -> Self {
        Context {
            at: format!("{}{}", self.at, suffix),
            depth: self.depth + 1,
        }
    }
}

struct Element<'a> {
    ty: u32,
    data: &'a [u8],
}

/// Reads data elements from a byte buffer in the file's byte order.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    big_endian: bool,
}

impl<'a> Cursor<'a> {
    fn u32_at(&self, b: &[u8]) -> u32 {
        let b = [b[0], b[1], b[2], b[3]];
        if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }

    /// Reads one data element. Elements are padded to 8 bytes, except compressed ones at the
    /// top level (their byte count is exact), hence `pad`; the caller of a top-level matrix
    /// skips its padding itself.
    fn element(&mut self, pad: bool) -> std::result::Result<Element<'a>, String> {
        let remaining = self.bytes.len() - self.pos;
        if remaining < 8 {
            return Err(format!(
                "truncated: a data element tag needs 8 bytes at byte {}, only {remaining} left",
                self.pos
            ));
        }
        let tag = &self.bytes[self.pos..self.pos + 8];
        let first = self.u32_at(&tag[..4]);
        // Small data element format: the upper 16 bits hold the byte count (at most 4) and the
        // data sit in the second half of the 8-byte tag.
        if first >> 16 != 0 {
            let len = (first >> 16) as usize;
            if len > 4 {
                return Err(format!(
                    "bad tag at byte {}: small data element claims {len} bytes (at most 4)",
                    self.pos
                ));
            }
            let data = &tag[4..4 + len];
            self.pos += 8;
            return Ok(Element {
                ty: first & 0xffff,
                data,
            });
        }
        let len = self.u32_at(&tag[4..8]) as usize;
        if len > remaining - 8 {
            return Err(format!(
                "truncated: data element of type {} at byte {} claims {len} bytes, only {} left",
                type_name(first),
                self.pos,
                remaining - 8
            ));
        }
        let data = &self.bytes[self.pos + 8..self.pos + 8 + len];
        self.pos += 8 + len;
        if pad {
            self.skip_padding(len);
        }
        Ok(Element { ty: first, data })
    }

    /// Skips the padding after an element of `len` bytes. A writer may omit the padding of the
    /// very last element, so running out of bytes here is not an error.
    fn skip_padding(&mut self, len: usize) {
        let padding = (8 - len % 8) % 8;
        self.pos = (self.pos + padding).min(self.bytes.len());
    }

    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }
}

/// What [`parse_compressed`] did with a compressed variable.
enum Compressed {
    Parsed(String, MatArray),
    /// Not wanted: only its header was inflated.
    Skipped(String),
}

/// The start of a matrix: enough to name it and bound its size before decoding it.
struct MatrixHeader {
    name: String,
    class: MatClass,
    complex: bool,
    numel: usize,
    dims: Vec<usize>,
}

impl MatrixHeader {
    /// An upper bound on the bytes this array's data can take, decoded (numbers become f64) or
    /// stored (no numeric MAT type is wider than 8 bytes, no character type wider than 4);
    /// `None` for cells, structs and other classes, whose size the header does not tell.
    fn data_bound(&self) -> Option<u64> {
        let numel = self.numel as u64;
        if self.class.is_numeric() {
            numel
                .checked_mul(8)
                .and_then(|b| b.checked_mul(if self.complex { 2 } else { 1 }))
        } else if self.class == MatClass::Char {
            numel.checked_mul(4)
        } else {
            None
        }
    }
}

/// Reads the array flags, dimensions and name at the start of a matrix payload (possibly only a
/// prefix of it), the way [`parse_matrix`] reads them.
fn peek_header(
    payload: &[u8],
    big_endian: bool,
    unnamed: &str,
) -> std::result::Result<MatrixHeader, Located> {
    let ctx = Context::top(unnamed);
    if payload.is_empty() {
        return Ok(MatrixHeader {
            name: String::new(),
            class: MatClass::Double,
            complex: false,
            numel: 0,
            dims: vec![0, 0],
        });
    }
    let mut c = Cursor {
        bytes: payload,
        pos: 0,
        big_endian,
    };
    let flags = next(&mut c, "array flags", &ctx)?;
    if flags.ty != MI_UINT32 || flags.data.len() != 8 {
        return ctx.fail(format!(
            "bad array flags: expected 8 bytes of miUINT32, found {} bytes of {}",
            flags.data.len(),
            type_name(flags.ty)
        ));
    }
    let flag_word = c.u32_at(&flags.data[..4]);
    let dims = read_dims(&mut c, &ctx)?;
    let numel = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .map_or_else(|| ctx.fail(format!("dimensions {dims:?} overflow")), Ok)?;
    let name = read_name(&mut c, &ctx)?;
    Ok(MatrixHeader {
        name,
        class: MatClass::from_code((flag_word & 0xff) as u8),
        complex: (flag_word >> 8) & FLAG_COMPLEX != 0,
        numel,
        dims,
    })
}

fn read_dims(c: &mut Cursor<'_>, ctx: &Context) -> std::result::Result<Vec<usize>, Located> {
    let dims_el = next(c, "dimensions", ctx)?;
    if dims_el.ty != MI_INT32 || dims_el.data.len() % 4 != 0 || dims_el.data.is_empty() {
        return ctx.fail(format!(
            "bad dimensions: expected miINT32 values, found {} bytes of {}",
            dims_el.data.len(),
            type_name(dims_el.ty)
        ));
    }
    let mut dims = Vec::with_capacity(dims_el.data.len() / 4);
    for chunk in dims_el.data.chunks_exact(4) {
        let d = c.u32_at(chunk) as i32;
        if d < 0 {
            return ctx.fail(format!("negative dimension {d}"));
        }
        dims.push(d as usize);
    }
    Ok(dims)
}

fn read_name(c: &mut Cursor<'_>, ctx: &Context) -> std::result::Result<String, Located> {
    let name_el = next(c, "array name", ctx)?;
    if name_el.ty != MI_INT8 && name_el.ty != MI_UINT8 && name_el.ty != MI_UTF8 {
        return ctx.fail(format!("bad array name: type {}", type_name(name_el.ty)));
    }
    Ok(String::from_utf8_lossy(name_el.data)
        .trim_end_matches('\0')
        .to_string())
}

/// Inflates an `miCOMPRESSED` element, which holds exactly one (uncompressed) `miMATRIX`
/// element, and parses that. The inflation is bounded three ways (issue 7, decompression
/// bombs): only the first [`HEADER_PEEK`] bytes are inflated to learn the variable's name,
/// class and dimensions, and a variable that is not wanted stops there; a wanted one may
/// inflate to no more than its inner tag announces, which must fit what its dimensions and class
/// can need and [`MAX_VARIABLE_BYTES`], all checked before the rest is inflated.
fn parse_compressed(
    data: &[u8],
    big_endian: bool,
    unnamed: &str,
    is_wanted: &dyn Fn(&str) -> bool,
) -> std::result::Result<Compressed, Located> {
    let fail = |message: String| Located {
        at: unnamed.to_string(),
        message,
    };
    let zlib_error = |e: std::io::Error| {
        fail(format!(
            "compressed variable: corrupt or truncated zlib stream ({e})"
        ))
    };
    let mut decoder = flate2::read::ZlibDecoder::new(data);
    let mut tag = [0u8; 8];
    decoder.read_exact(&mut tag).map_err(zlib_error)?;
    let cursor = Cursor {
        bytes: &tag,
        pos: 0,
        big_endian,
    };
    let ty = cursor.u32_at(&tag[..4]);
    if ty != MI_MATRIX {
        return Err(fail(format!(
            "compressed variable holds a {} element (expected miMATRIX)",
            type_name(ty)
        )));
    }
    let len = cursor.u32_at(&tag[4..]) as u64;
    let peek_len = len.min(HEADER_PEEK as u64);
    let mut inner = Vec::new();
    (&mut decoder)
        .take(peek_len)
        .read_to_end(&mut inner)
        .map_err(zlib_error)?;
    let truncated = |got: usize| {
        fail(format!(
            "compressed variable: truncated, the matrix claims {len} bytes but the stream inflates \
             to {got}"
        ))
    };
    // A short stream is only an error if it does not even hold the header, or (below) if the
    // variable is wanted.
    let header = match peek_header(&inner, big_endian, unnamed) {
        Ok(header) => header,
        Err(_) if (inner.len() as u64) < peek_len => return Err(truncated(inner.len())),
        Err(e) => return Err(e),
    };
    let at = if header.name.is_empty() {
        unnamed.to_string()
    } else {
        header.name.clone()
    };
    if !is_wanted(&header.name) {
        return Ok(Compressed::Skipped(header.name));
    }
    if let Some(bound) = header.data_bound() {
        // Flags (16 bytes), dimensions, name and one data tag per part, each padded to 8.
        let overhead =
            16 + 8 * 3 + 8 + 8 * header.dims.len() as u64 + 8 + header.name.len() as u64 + 8;
        let parts = if header.complex { 2 } else { 1 };
        if bound > MAX_VARIABLE_BYTES {
            return Err(Located {
                at,
                message: format!(
                    "a {:?} {} array of {} elements would take {bound} bytes, more than the \
                     {MAX_VARIABLE_BYTES}-byte limit of one variable (corrupt or hostile file?)",
                    header.dims,
                    header.class.name(),
                    header.numel
                ),
            });
        }
        if len > bound.saturating_add(overhead + 8 * parts) {
            return Err(Located {
                at,
                message: format!(
                    "compressed variable claims {len} bytes, more than a {:?} {} array can \
                     take ({} bytes); not inflating it",
                    header.dims,
                    header.class.name(),
                    bound + overhead + 8 * parts
                ),
            });
        }
    }
    if len > MAX_VARIABLE_BYTES {
        return Err(Located {
            at,
            message: format!(
                "compressed variable claims {len} bytes, more than the {MAX_VARIABLE_BYTES}-byte \
                 limit of one variable (corrupt or hostile file?); not inflating it"
            ),
        });
    }
    // `len` is now bounded, so reserving it up front cannot be used to exhaust memory.
    inner.reserve_exact((len as usize).saturating_sub(inner.len()));
    (&mut decoder)
        .take(len - peek_len)
        .read_to_end(&mut inner)
        .map_err(zlib_error)?;
    if (inner.len() as u64) < len {
        return Err(truncated(inner.len()));
    }
    let (name, array) = parse_matrix(&inner, big_endian, &mut Context::top(unnamed))?;
    Ok(Compressed::Parsed(name, array))
}

/// Parses the payload of an `miMATRIX` element into its name and array. `ctx.at` names the
/// variable for errors; once the name is read errors use it instead of the position.
fn parse_matrix(
    payload: &[u8],
    big_endian: bool,
    ctx: &mut Context,
) -> std::result::Result<(String, MatArray), Located> {
    if ctx.depth > MAX_DEPTH {
        return ctx.fail(format!(
            "cells or structs nested deeper than {MAX_DEPTH} levels"
        ));
    }
    // MATLAB writes an empty matrix element (no sub-elements) for an empty cell element.
    if payload.is_empty() {
        return Ok((
            String::new(),
            MatArray {
                dims: vec![0, 0],
                value: MatValue::Numeric(NumericData {
                    class: MatClass::Double,
                    logical: false,
                    real: Vec::new(),
                    imag: None,
                }),
            },
        ));
    }
    let mut c = Cursor {
        bytes: payload,
        pos: 0,
        big_endian,
    };
    let flags = next(&mut c, "array flags", ctx)?;
    if flags.ty != MI_UINT32 || flags.data.len() != 8 {
        return ctx.fail(format!(
            "bad array flags: expected 8 bytes of miUINT32, found {} bytes of {}",
            flags.data.len(),
            type_name(flags.ty)
        ));
    }
    let flag_word = c.u32_at(&flags.data[..4]);
    let class = MatClass::from_code((flag_word & 0xff) as u8);
    let complex = (flag_word >> 8) & FLAG_COMPLEX != 0;
    let logical = (flag_word >> 8) & FLAG_LOGICAL != 0;

    let dims = read_dims(&mut c, ctx)?;
    let numel = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .map_or_else(|| ctx.fail(format!("dimensions {dims:?} overflow")), Ok)?;

    let name = read_name(&mut c, ctx)?;
    if ctx.depth == 0 && !name.is_empty() {
        ctx.at = name.clone();
    }

    let value = if class.is_numeric() {
        let real_el = next(&mut c, "real part", ctx)?;
        let real =
            decode_numbers(&c, &real_el, numel).or_else(|m| ctx.fail(format!("real part: {m}")))?;
        let imag = if complex {
            let imag_el = next(&mut c, "imaginary part", ctx)?;
            Some(
                decode_numbers(&c, &imag_el, numel)
                    .or_else(|m| ctx.fail(format!("imaginary part: {m}")))?,
            )
        } else {
            None
        };
        MatValue::Numeric(NumericData {
            class,
            logical,
            real,
            imag,
        })
    } else {
        match class {
            MatClass::Char => {
                let el = next(&mut c, "characters", ctx)?;
                MatValue::Char(
                    decode_chars(&c, &el, numel)
                        .or_else(|m| ctx.fail(format!("characters: {m}")))?,
                )
            }
            MatClass::Cell => {
                let mut cells = Vec::new();
                for i in 0..numel {
                    let mut child = ctx.child(format!("{{{}}}", i + 1));
                    let el = c.element(true).or_else(|m| child.fail(m))?;
                    if el.ty != MI_MATRIX {
                        return child.fail(format!(
                            "cell element is a {} (expected miMATRIX)",
                            type_name(el.ty)
                        ));
                    }
                    cells.push(parse_matrix(el.data, big_endian, &mut child)?.1);
                }
                MatValue::Cell(cells)
            }
            MatClass::Struct => MatValue::Struct(parse_struct(&mut c, numel, big_endian, ctx)?),
            // Sparse arrays, objects and function handles are not needed for pose data; the
            // element's byte count lets us step over them.
            other => MatValue::Unsupported(other),
        }
    };
    let array = MatArray { dims, value };
    if !matches!(array.value, MatValue::Unsupported(_)) && !c.at_end() {
        return ctx.fail(format!(
            "{} unexpected bytes after the array data",
            payload.len() - c.pos
        ));
    }
    Ok((name, array))
}

/// A parse error of `path`. Names and text in it come from the file, so control characters
/// are escaped: an error stays one line (issue 7, item 10: a variable name holding a newline
/// split the message).
fn located_error(path: &Path, e: Located) -> Error {
    Error::invalid(path, printable(&e.at), printable(&e.message))
}

/// `s` with control characters written as escapes (`\n`, `\u{1b}`).
fn printable(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

/// Reads the next sub-element of a matrix, naming what was expected in the error.
fn next<'a>(
    c: &mut Cursor<'a>,
    what: &str,
    ctx: &Context,
) -> std::result::Result<Element<'a>, Located> {
    c.element(true)
        .or_else(|m| ctx.fail(format!("reading the {what}: {m}")))
}

fn parse_struct(
    c: &mut Cursor<'_>,
    numel: usize,
    big_endian: bool,
    ctx: &Context,
) -> std::result::Result<StructData, Located> {
    let len_el = c
        .element(true)
        .or_else(|m| ctx.fail(format!("field name length: {m}")))?;
    if len_el.ty != MI_INT32 || len_el.data.len() != 4 {
        return ctx.fail("bad field name length element");
    }
    let name_len = c.u32_at(len_el.data) as usize;
    let names_el = c
        .element(true)
        .or_else(|m| ctx.fail(format!("field names: {m}")))?;
    let empty = names_el.data.is_empty();
    if names_el.ty != MI_INT8 || (!empty && (name_len == 0 || names_el.data.len() % name_len != 0))
    {
        return ctx.fail("bad field names element");
    }
    let fields: Vec<String> = names_el
        .data
        .chunks_exact(name_len.max(1))
        .map(|chunk| {
            let end = chunk.iter().position(|&b| b == 0).unwrap_or(chunk.len());
            String::from_utf8_lossy(&chunk[..end]).into_owned()
        })
        .collect();
    let mut values = Vec::new();
    // A struct without fields has no values to read, however many elements it has.
    for element in 0..if fields.is_empty() { 0 } else { numel } {
        for field in &fields {
            let mut child = ctx.child(format!("({}).{field}", element + 1));
            let el = c.element(true).or_else(|m| child.fail(m))?;
            if el.ty != MI_MATRIX {
                return child.fail(format!(
                    "struct field is a {} (expected miMATRIX)",
                    type_name(el.ty)
                ));
            }
            values.push(parse_matrix(el.data, big_endian, &mut child)?.1);
        }
    }
    Ok(StructData { fields, values })
}

/// Widens the numbers of a data element to `f64`. MATLAB may store an array in a narrower type
/// than its class (a double array of small integers as miUINT8) to save space.
fn decode_numbers(
    c: &Cursor<'_>,
    el: &Element<'_>,
    numel: usize,
) -> std::result::Result<Vec<f64>, String> {
    let size = match el.ty {
        MI_INT8 | MI_UINT8 => 1,
        MI_INT16 | MI_UINT16 => 2,
        MI_INT32 | MI_UINT32 | MI_SINGLE => 4,
        MI_DOUBLE | MI_INT64 | MI_UINT64 => 8,
        other => {
            return Err(format!(
                "data type {} cannot hold numbers",
                type_name(other)
            ))
        }
    };
    if Some(el.data.len()) != numel.checked_mul(size) {
        return Err(format!(
            "{} bytes of {} do not hold the {numel} elements of the dimensions",
            el.data.len(),
            type_name(el.ty)
        ));
    }
    let be = c.big_endian;
    let values = el
        .data
        .chunks_exact(size)
        .map(|b| match el.ty {
            MI_INT8 => b[0] as i8 as f64,
            MI_UINT8 => b[0] as f64,
            MI_INT16 => {
                let b = [b[0], b[1]];
                (if be {
                    i16::from_be_bytes(b)
                } else {
                    i16::from_le_bytes(b)
                }) as f64
            }
            MI_UINT16 => {
                let b = [b[0], b[1]];
                (if be {
                    u16::from_be_bytes(b)
                } else {
                    u16::from_le_bytes(b)
                }) as f64
            }
            MI_INT32 => c.u32_at(b) as i32 as f64,
            MI_UINT32 => c.u32_at(b) as f64,
            MI_SINGLE => f32::from_bits(c.u32_at(b)) as f64,
            _ => {
                let b = [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]];
                let bits = if be {
                    u64::from_be_bytes(b)
                } else {
                    u64::from_le_bytes(b)
                };
                match el.ty {
                    MI_DOUBLE => f64::from_bits(bits),
                    MI_INT64 => bits as i64 as f64,
                    _ => bits as f64,
                }
            }
        })
        .collect();
    Ok(values)
}

/// Decodes a char array. MATLAB writes UTF-16 code units (miUINT16/miUTF16), scipy writes
/// miUTF8; single bytes are read as Latin-1. A lone surrogate becomes U+FFFD, as MATLAB's
/// dimensions count code units, not characters.
fn decode_chars(
    c: &Cursor<'_>,
    el: &Element<'_>,
    numel: usize,
) -> std::result::Result<Vec<char>, String> {
    let chars: Vec<char> = match el.ty {
        MI_UTF8 => String::from_utf8_lossy(el.data).chars().collect(),
        MI_INT8 | MI_UINT8 => el.data.iter().map(|&b| b as char).collect(),
        MI_UINT16 | MI_UTF16 | MI_INT16 => {
            if !el.data.len().is_multiple_of(2) {
                return Err("odd number of bytes for 16-bit characters".into());
            }
            el.data
                .chunks_exact(2)
                .map(|b| {
                    let b = [b[0], b[1]];
                    let unit = if c.big_endian {
                        u16::from_be_bytes(b)
                    } else {
                        u16::from_le_bytes(b)
                    };
                    char::from_u32(unit as u32).unwrap_or(char::REPLACEMENT_CHARACTER)
                })
                .collect()
        }
        MI_UTF32 | MI_UINT32 | MI_INT32 => {
            if !el.data.len().is_multiple_of(4) {
                return Err("byte count is not a multiple of 4 for 32-bit characters".into());
            }
            el.data
                .chunks_exact(4)
                .map(|b| char::from_u32(c.u32_at(b)).unwrap_or(char::REPLACEMENT_CHARACTER))
                .collect()
        }
        other => {
            return Err(format!(
                "data type {} cannot hold characters",
                type_name(other)
            ))
        }
    };
    if chars.len() != numel {
        return Err(format!(
            "{} characters do not fill the {numel} elements of the dimensions",
            chars.len()
        ));
    }
    Ok(chars)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds MAT v5 files byte by byte, in either byte order, so that the tests can cover
    /// layouts scipy does not write (big-endian, UTF-16 chars, structs, complex, small elements).
    struct Writer {
        big: bool,
    }

    impl Writer {
        fn u32(&self, v: u32) -> [u8; 4] {
            if self.big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        }

        fn header(&self) -> Vec<u8> {
            let mut h = b"MATLAB 5.0 MAT-file, written by posekit tests".to_vec();
            h.resize(116, b' ');
            h.extend_from_slice(&[0; 8]);
            if self.big {
                h.extend_from_slice(&[0x01, 0x00, b'M', b'I']);
            } else {
                h.extend_from_slice(&[0x00, 0x01, b'I', b'M']);
            }
            h
        }

        /// A data element in the normal format, padded to 8 bytes.
        fn element(&self, ty: u32, data: &[u8]) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&self.u32(ty));
            out.extend_from_slice(&self.u32(data.len() as u32));
            out.extend_from_slice(data);
            out.resize(out.len() + (8 - data.len() % 8) % 8, 0);
            out
        }

        /// A data element in the small format (at most 4 bytes).
        fn small(&self, ty: u32, data: &[u8]) -> Vec<u8> {
            assert!(data.len() <= 4);
            let mut out = self.u32(((data.len() as u32) << 16) | ty).to_vec();
            out.extend_from_slice(data);
            out.resize(8, 0);
            out
        }

        fn matrix(
            &self,
            class: u8,
            flags: u32,
            dims: &[i32],
            name: &str,
            body: &[Vec<u8>],
        ) -> Vec<u8> {
            let mut payload = Vec::new();
            let mut f = self.u32((flags << 8) | class as u32).to_vec();
            f.extend_from_slice(&[0; 4]);
            payload.extend(self.element(MI_UINT32, &f));
            let d: Vec<u8> = dims.iter().flat_map(|&d| self.u32(d as u32)).collect();
            payload.extend(self.element(MI_INT32, &d));
            if name.len() <= 4 && !name.is_empty() {
                payload.extend(self.small(MI_INT8, name.as_bytes()));
            } else {
                payload.extend(self.element(MI_INT8, name.as_bytes()));
            }
            for b in body {
                payload.extend_from_slice(b);
            }
            self.element(MI_MATRIX, &payload)
        }

        fn doubles(&self, values: &[f64]) -> Vec<u8> {
            let data: Vec<u8> = values
                .iter()
                .flat_map(|v| {
                    if self.big {
                        v.to_be_bytes()
                    } else {
                        v.to_le_bytes()
                    }
                })
                .collect();
            self.element(MI_DOUBLE, &data)
        }

        fn utf16(&self, s: &str) -> Vec<u8> {
            let data: Vec<u8> = s
                .encode_utf16()
                .flat_map(|u| {
                    if self.big {
                        u.to_be_bytes()
                    } else {
                        u.to_le_bytes()
                    }
                })
                .collect();
            self.element(MI_UINT16, &data)
        }

        fn string(&self, name: &str, s: &str) -> Vec<u8> {
            self.matrix(
                4,
                0,
                &[1, s.encode_utf16().count() as i32],
                name,
                &[self.utf16(s)],
            )
        }

        fn compressed(&self, element: &[u8]) -> Vec<u8> {
            use std::io::Write;
            let mut enc =
                flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(element).unwrap();
            let z = enc.finish().unwrap();
            let mut out = self.u32(MI_COMPRESSED).to_vec();
            out.extend_from_slice(&self.u32(z.len() as u32));
            out.extend(z);
            out
        }
    }

    /// A file with one of everything, in the given byte order.
    fn sample(big: bool, compress: bool) -> Vec<u8> {
        let w = Writer { big };
        let mut file = w.header();
        let vars = vec![
            // 2x3 double, column-major 1..6.
            w.matrix(
                6,
                0,
                &[2, 3],
                "pos_gt_src",
                &[w.doubles(&[1., 2., 3., 4., 5., 6.])],
            ),
            // A double array stored compactly as miUINT8, with a small-format data element.
            w.matrix(6, 0, &[1, 3], "u", &[w.small(MI_UINT8, &[7, 8, 255])]),
            // uint8 logical.
            w.matrix(
                9,
                FLAG_LOGICAL,
                &[1, 2],
                "mask",
                &[w.small(MI_UINT8, &[1, 0])],
            ),
            // Complex single.
            w.matrix(
                7,
                FLAG_COMPLEX,
                &[1, 1],
                "z",
                &[
                    w.small(MI_SINGLE, &w.u32(1.5f32.to_bits())),
                    w.small(MI_SINGLE, &w.u32((-2.0f32).to_bits())),
                ],
            ),
            // int16 column with negatives.
            w.matrix(
                10,
                0,
                &[2, 1],
                "i16",
                &[w.small(MI_INT16, &{
                    let mut v = Vec::new();
                    for x in [-3i16, 300] {
                        v.extend_from_slice(&if big {
                            x.to_be_bytes()
                        } else {
                            x.to_le_bytes()
                        });
                    }
                    v
                })],
            ),
            // 1x2 cell of strings (UTF-16 chars, as MATLAB writes them).
            w.matrix(
                1,
                0,
                &[1, 2],
                "dataset_joints",
                &[w.string("", "head"), w.string("", "lsho")],
            ),
            // 2x3 char matrix: rows "ab " and "cde" stored column-major.
            w.matrix(4, 0, &[2, 3], "cm", &[w.utf16("acbd e")]),
            // 1x1 struct with fields a (double) and b (string).
            w.matrix(
                2,
                0,
                &[1, 1],
                "s",
                &[
                    w.small(MI_INT32, &w.u32(8)),
                    w.element(MI_INT8, b"a\0\0\0\0\0\0\0b\0\0\0\0\0\0\0"),
                    w.matrix(6, 0, &[1, 1], "", &[w.doubles(&[42.0])]),
                    w.string("", "hi"),
                ],
            ),
            // A sparse matrix: kept as unsupported, the rest of the file still reads.
            w.matrix(5, 0, &[2, 2], "sp", &[w.element(MI_INT32, &[0; 4])]),
            // An empty cell element (MATLAB writes an miMATRIX with no payload).
            w.matrix(1, 0, &[1, 1], "empty", &[w.element(MI_MATRIX, &[])]),
        ];
        for v in vars {
            if compress {
                file.extend(w.compressed(&v));
            } else {
                file.extend(v);
            }
        }
        file
    }

    fn check_sample(file: &MatFile) {
        let (dims, pos) = file.require_numeric("pos_gt_src").unwrap();
        assert_eq!(dims, &[2, 3]);
        assert_eq!(pos.real, vec![1., 2., 3., 4., 5., 6.]);
        let arr = file.get("pos_gt_src").unwrap();
        assert_eq!(arr.linear_index(&[1, 2]), Some(5));
        assert_eq!(arr.linear_index(&[1, 2, 0]), Some(5));
        assert_eq!(arr.linear_index(&[2, 0]), None);
        assert_eq!(
            file.require_numeric("u").unwrap().1.real,
            vec![7., 8., 255.]
        );
        let mask = file.require_numeric("mask").unwrap().1;
        assert!(mask.logical);
        assert_eq!(mask.class, MatClass::Uint8);
        assert_eq!(mask.real, vec![1., 0.]);
        let z = file.require_numeric("z").unwrap().1;
        assert_eq!(z.real, vec![1.5]);
        assert_eq!(z.imag, Some(vec![-2.0]));
        assert_eq!(file.require_numeric("i16").unwrap().1.real, vec![-3., 300.]);
        assert_eq!(
            file.require_strings("dataset_joints").unwrap(),
            vec!["head", "lsho"]
        );
        assert_eq!(file.require_strings("cm").unwrap(), vec!["ab", "cde"]);
        let MatValue::Struct(s) = &file.get("s").unwrap().value else {
            panic!("not a struct")
        };
        assert_eq!(s.fields, vec!["a", "b"]);
        assert_eq!(
            s.get(0, "a").unwrap().as_numeric().unwrap().real,
            vec![42.0]
        );
        assert_eq!(s.get(0, "b").unwrap().char_rows().unwrap(), vec!["hi"]);
        assert_eq!(
            file.get("sp").unwrap().value,
            MatValue::Unsupported(MatClass::Sparse)
        );
        let err = file.require_numeric("sp").unwrap_err().to_string();
        assert!(err.contains("sp") && err.contains("sparse"), "{err}");
        let MatValue::Cell(cells) = &file.get("empty").unwrap().value else {
            panic!("not a cell")
        };
        assert_eq!(cells[0].dims, vec![0, 0]);
        let names: Vec<&str> = file.variables().map(|(n, _)| n).collect();
        assert_eq!(names.len(), 10);
    }

    #[test]
    fn reads_every_supported_kind_in_both_byte_orders_with_and_without_compression() {
        for big in [false, true] {
            for compress in [false, true] {
                let bytes = sample(big, compress);
                let file = MatFile::from_bytes("sample.mat", &bytes)
                    .unwrap_or_else(|e| panic!("big={big} compress={compress}: {e}"));
                check_sample(&file);
            }
        }
    }

    #[test]
    fn missing_variable_error_lists_what_the_file_has() {
        let file = MatFile::from_bytes("x.mat", &sample(false, false)).unwrap();
        let err = file.require("jnt_missing").unwrap_err().to_string();
        assert!(
            err.contains("x.mat") && err.contains("jnt_missing") && err.contains("pos_gt_src"),
            "{err}"
        );
        let err = file
            .require_numeric("dataset_joints")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("dataset_joints") && err.contains("cell"),
            "{err}"
        );
        let err = file.require_strings("pos_gt_src").unwrap_err().to_string();
        assert!(
            err.contains("pos_gt_src") && err.contains("double"),
            "{err}"
        );
    }

    #[test]
    fn names_with_control_characters_stay_on_one_line_in_errors() {
        let w = Writer { big: false };
        let mut bytes = w.header();
        bytes.extend(w.matrix(6, 0, &[1, 1], "a\nb", &[w.doubles(&[1.0])]));
        let file = MatFile::from_bytes("n.mat", &bytes).unwrap();
        let err = file.require("x").unwrap_err().to_string();
        assert!(err.contains("a\\nb") && !err.contains('\n'), "{err}");
        let mut bad = w.header();
        bad.extend(w.matrix(6, 0, &[2, 2], "c\nd", &[w.doubles(&[1.0])]));
        let err = MatFile::from_bytes("n.mat", &bad).unwrap_err().to_string();
        assert!(err.contains("c\\nd") && !err.contains('\n'), "{err}");
    }

    #[test]
    fn rejects_files_that_are_not_mat_v5() {
        for (bytes, needle) in [
            (b"hello".to_vec(), "shorter than the 128-byte header"),
            (vec![b'x'; 200], "endianness"),
            (
                b"\x89HDF\r\n\x1a\n"
                    .iter()
                    .copied()
                    .chain([0; 200])
                    .collect(),
                "7.3",
            ),
        ] {
            let err = MatFile::from_bytes("bad.mat", &bytes)
                .unwrap_err()
                .to_string();
            assert!(err.contains("bad.mat") && err.contains(needle), "{err}");
        }
        let mut v73 = Writer { big: false }.header();
        v73[124] = 0x00;
        v73[125] = 0x02;
        let err = MatFile::from_bytes("v73.mat", &v73)
            .unwrap_err()
            .to_string();
        assert!(err.contains("7.3"), "{err}");
    }

    #[test]
    fn malformed_elements_name_the_variable() {
        let w = Writer { big: false };
        let mut bad_class_data = w.header();
        // A double array whose data are characters.
        bad_class_data.extend(w.matrix(
            6,
            0,
            &[1, 2],
            "headboxes_src",
            &[w.element(MI_UTF8, b"ab")],
        ));
        let err = MatFile::from_bytes("g.mat", &bad_class_data)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("g.mat") && err.contains("headboxes_src") && err.contains("miUTF8"),
            "{err}"
        );

        let mut wrong_count = w.header();
        wrong_count.extend(w.matrix(6, 0, &[2, 2], "jnt_missing", &[w.doubles(&[1., 2., 3.])]));
        let err = MatFile::from_bytes("g.mat", &wrong_count)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("jnt_missing") && err.contains("4 elements"),
            "{err}"
        );

        let mut bad_top = w.header();
        bad_top.extend(w.element(MI_DOUBLE, &[0; 8]));
        let err = MatFile::from_bytes("g.mat", &bad_top)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("variable #1") && err.contains("top level"),
            "{err}"
        );

        let mut bad_small = w.header();
        bad_small.extend_from_slice(&w.u32((9 << 16) | MI_INT8));
        bad_small.extend_from_slice(&[0; 4]);
        let err = MatFile::from_bytes("g.mat", &bad_small)
            .unwrap_err()
            .to_string();
        assert!(err.contains("small data element"), "{err}");

        let mut bad_zlib = w.header();
        bad_zlib.extend(w.element(MI_COMPRESSED, b"not zlib at all"));
        let err = MatFile::from_bytes("g.mat", &bad_zlib)
            .unwrap_err()
            .to_string();
        assert!(err.contains("zlib"), "{err}");

        // Nested cells deeper than the limit are refused, not a stack overflow.
        let mut nested = w.matrix(6, 0, &[1, 1], "", &[w.doubles(&[1.0])]);
        for _ in 0..(MAX_DEPTH + 2) {
            nested = w.matrix(1, 0, &[1, 1], "", &[nested]);
        }
        let mut deep = w.header();
        deep.extend(w.matrix(1, 0, &[1, 1], "deep", &[nested]));
        let err = MatFile::from_bytes("g.mat", &deep).unwrap_err().to_string();
        assert!(err.contains("deep{1}") && err.contains("nested"), "{err}");
    }

    #[test]
    fn truncated_and_garbled_files_are_errors_never_panics() {
        for compress in [false, true] {
            let bytes = sample(false, compress);
            // Every truncation point, since the file is small.
            for cut in 0..bytes.len() {
                let result = MatFile::from_bytes("t.mat", &bytes[..cut]);
                if let Err(e) = result {
                    assert!(e.to_string().contains("t.mat"));
                }
            }
            // Deterministic pseudo-random byte corruption (xorshift), a few thousand variants.
            let mut state = 0x9e3779b97f4a7c15u64;
            let mut next = || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state
            };
            for _ in 0..3000 {
                let mut garbled = bytes.clone();
                for _ in 0..1 + next() % 4 {
                    let i = HEADER_LEN + (next() as usize) % (garbled.len() - HEADER_LEN);
                    garbled[i] = next() as u8;
                }
                let _ = MatFile::from_bytes("t.mat", &garbled);
            }
        }
    }

    /// The first bytes of a `dims` double matrix named `name` whose tag claims the full data size,
    /// without the data: what a bomb's zlib stream starts with. `filler` zero bytes follow.
    fn bomb_stream(w: &Writer, name: &str, dims: &[i32], filler: usize) -> Vec<u8> {
        let numel: u64 = dims.iter().map(|&d| d as u64).product();
        let full = w.matrix(6, 0, dims, name, &[w.doubles(&[])]);
        // The matrix tag says `payload + numel * 8` bytes; the data tag says `numel * 8` bytes.
        let payload_len = (full.len() - 8) as u64 + numel * 8;
        let mut out = w.u32(MI_MATRIX).to_vec();
        out.extend_from_slice(&w.u32(payload_len as u32));
        let mut payload = full[8..full.len() - 8].to_vec();
        payload.extend_from_slice(&w.u32(MI_DOUBLE));
        payload.extend_from_slice(&w.u32((numel * 8) as u32));
        out.extend(payload);
        out.resize(out.len() + filler, 0);
        out
    }

    fn compress_raw(w: &Writer, stream: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(stream).unwrap();
        let z = enc.finish().unwrap();
        let mut out = w.u32(MI_COMPRESSED).to_vec();
        out.extend_from_slice(&w.u32(z.len() as u32));
        out.extend(z);
        out
    }

    #[test]
    fn variables_not_asked_for_are_skipped_without_inflating_them() {
        let w = Writer { big: false };
        let mut bytes = w.header();
        // A 20000x20000 double (3.2 GB) whose stream stops after 1 KB: inflating it at all
        // would end in a "truncated" error.
        bytes.extend(compress_raw(
            &w,
            &bomb_stream(&w, "bomb", &[20000, 20000], 1024),
        ));
        bytes.extend(w.matrix(6, 0, &[1, 2], "wanted", &[w.doubles(&[1.0, 2.0])]));
        bytes.extend(w.matrix(6, 0, &[1, 1], "other", &[w.doubles(&[3.0])]));
        let file = MatFile::from_bytes_selected("b.mat", &bytes, Some(&["wanted"])).unwrap();
        let (_, data) = file.require_numeric("wanted").unwrap();
        assert_eq!(data.real, vec![1.0, 2.0]);
        assert!(file.get("other").is_none());
        let err = file.require("missing").unwrap_err().to_string();
        assert!(
            err.contains("bomb, wanted, other"),
            "skipped variables are still listed: {err}"
        );

        // Asked for, the bomb is refused from its header, before the rest is inflated.
        let err = MatFile::from_bytes("b.mat", &bytes)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("b.mat") && err.contains("bomb") && err.contains("limit"),
            "{err}"
        );
    }

    #[test]
    fn a_compressed_variable_claiming_more_than_its_dimensions_need_is_refused() {
        let w = Writer { big: false };
        // A 2x2 double whose tag claims 10 MB.
        let mut stream = w.matrix(6, 0, &[2, 2], "small", &[w.doubles(&[0.0; 4])]);
        stream[4..8].copy_from_slice(&w.u32(10 << 20));
        stream.resize(stream.len() + (10 << 20), 0);
        let mut bytes = w.header();
        bytes.extend(compress_raw(&w, &stream));
        let err = MatFile::from_bytes("s.mat", &bytes)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("s.mat") && err.contains("small") && err.contains("claims 10485760 bytes"),
            "{err}"
        );
    }

    #[test]
    fn a_real_compressed_bomb_is_refused_before_it_is_inflated() {
        let w = Writer { big: false };
        // 200 MB of zeros behind a 20000x20000 header: ~200 KB compressed.
        let stream = bomb_stream(&w, "pos_gt_src", &[20000, 20000], 200 << 20);
        let mut bytes = w.header();
        bytes.extend(compress_raw(&w, &stream));
        drop(stream);
        assert!(bytes.len() < 1 << 20, "{} bytes", bytes.len());
        let err = MatFile::from_bytes_selected("z.mat", &bytes, Some(&["pos_gt_src"]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("z.mat: pos_gt_src:") && err.contains("limit"),
            "{err}"
        );
    }
}
