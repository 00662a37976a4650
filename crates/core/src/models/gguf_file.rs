//! A GGUF file read by ourselves (format v2/v3: header, typed metadata, tensor table, aligned
//! tensor data). MLX's own reader converts every tensor type other than Q4_0/Q4_1/Q8_0 through
//! gguflib to f16 and rejects the whole file when one type is missing (Q5_0, Q5_K, Q3_K, …),
//! so the common Q4_K_M / Q5_K_M mixes did not load; here every block type of
//! `gguf_quants.rs` is decoded. Errors say what is wrong; the caller names the file.

use std::collections::HashMap;

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
    Str(String),
    Array(Vec<MetaValue>),
}

impl MetaValue {
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::Int(i) => Some(i as f64),
            MetaValue::UInt(u) => Some(u as f64),
            MetaValue::Float(f) => Some(f),
            MetaValue::Bool(b) => Some(f64::from(u8::from(b))),
            _ => None,
        }
    }
}

/// A tensor's table entry: `dims` innermost first, as stored (numpy shape is the reverse).
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub ggml_type: u32,
    /// Byte range inside the file.
    pub start: usize,
    pub len: usize,
}

impl TensorInfo {
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }
    /// Row-major shape (outermost first), as MLX and numpy see it.
    pub fn shape(&self) -> Vec<i32> {
        self.dims.iter().rev().map(|&d| d as i32).collect()
    }
}

pub struct GgufData {
    pub metadata: HashMap<String, MetaValue>,
    pub tensors: Vec<TensorInfo>,
    pub bytes: Vec<u8>,
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len()).ok_or("is truncated (header or metadata cut off)")?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn string(&mut self) -> Result<String, String> {
        let n = self.u64()?;
        let n = usize::try_from(n).map_err(|_| "has a string length out of range")?;
        Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
    }
    fn value(&mut self, ty: u32, depth: u32) -> Result<MetaValue, String> {
        let le = |s: &[u8]| {
            let mut b = [0u8; 8];
            b[..s.len()].copy_from_slice(s);
            u64::from_le_bytes(b)
        };
        let sext = |v: u64, bits: u32| ((v << (64 - bits)) as i64) >> (64 - bits);
        Ok(match ty {
            0 => MetaValue::UInt(le(self.take(1)?)),
            1 => MetaValue::Int(sext(le(self.take(1)?), 8)),
            2 => MetaValue::UInt(le(self.take(2)?)),
            3 => MetaValue::Int(sext(le(self.take(2)?), 16)),
            4 => MetaValue::UInt(le(self.take(4)?)),
            5 => MetaValue::Int(sext(le(self.take(4)?), 32)),
            6 => MetaValue::Float(f32::from_bits(self.u32()?) as f64),
            7 => MetaValue::Bool(self.take(1)?[0] != 0),
            8 => MetaValue::Str(self.string()?),
            9 if depth == 0 => {
                let elem = self.u32()?;
                let n = self.u64()?;
                // Every element takes at least one byte: a count beyond the file is corrupt.
                if n > (self.b.len() - self.at) as u64 {
                    return Err("has a metadata array longer than the file".into());
                }
                (0..n).map(|_| self.value(elem, depth + 1)).collect::<Result<_, _>>().map(MetaValue::Array)?
            }
            10 => MetaValue::UInt(self.u64()?),
            11 => MetaValue::Int(self.u64()? as i64),
            12 => MetaValue::Float(f64::from_bits(self.u64()?)),
            other => return Err(format!("has an unknown metadata value type {other}")),
        })
    }
}

/// Parses the whole file (already read into memory). Tensor byte ranges are checked against
/// the file length, so a truncated file fails here, naming the first tensor cut off.
pub fn parse(bytes: Vec<u8>) -> Result<GgufData, String> {
    let mut c = Cursor { b: &bytes, at: 0 };
    if c.take(4).map_err(|_| "is not a GGUF file (too short)")? != b"GGUF" {
        return Err("is not a GGUF file (bad magic)".into());
    }
    let version = c.u32()?;
    if !(2..=3).contains(&version) {
        return Err(format!("has unsupported GGUF version {version} (2, 3)"));
    }
    let (n_tensors, n_kv) = (c.u64()?, c.u64()?);
    let mut metadata = HashMap::new();
    for _ in 0..n_kv {
        let key = c.string()?;
        let ty = c.u32()?;
        metadata.insert(key, c.value(ty, 0)?);
    }
    let mut infos = Vec::new();
    for _ in 0..n_tensors {
        let name = c.string()?;
        let n_dims = c.u32()?;
        if n_dims > 4 {
            return Err(format!("has tensor '{name}' with {n_dims} dimensions"));
        }
        let dims = (0..n_dims).map(|_| c.u64()).collect::<Result<Vec<_>, _>>()?;
        let (ggml_type, offset) = (c.u32()?, c.u64()?);
        infos.push((name, dims, ggml_type, offset));
    }
    let align = match metadata.get("general.alignment").and_then(MetaValue::as_f64) {
        Some(a) if a >= 1.0 => a as usize,
        _ => 32,
    };
    let data_start = c.at.div_ceil(align) * align;
    let mut tensors = Vec::with_capacity(infos.len());
    for (name, dims, ggml_type, offset) in infos {
        let elements: u64 = dims.iter().product();
        let len = super::gguf_quants::byte_size(ggml_type, elements)
            .map_err(|e| format!("has tensor '{name}' {e}"))?;
        let start = usize::try_from(offset).ok().and_then(|o| o.checked_add(data_start));
        match start {
            Some(s) if s.checked_add(len).is_some_and(|e| e <= bytes.len()) => {
                tensors.push(TensorInfo { name, dims, ggml_type, start: s, len })
            }
            _ => return Err(format!("is truncated: tensor '{name}' lies beyond the end of the file")),
        }
    }
    Ok(GgufData { metadata, tensors, bytes })
}
