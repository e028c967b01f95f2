//! A bounded reader for GGUF headers: metadata and tensor shapes, never
//! tensor data. `scout plan` uses it to count a model's parameters exactly.
//!
//! Format (GGUF v2/v3): magic `GGUF`, version u32, tensor count u64, KV
//! count u64, KV pairs, tensor infos (name, dims, ggml type, offset). All
//! little-endian. Every count and length is checked against limits, so a
//! hostile file cannot make the reader allocate without bound.

use std::collections::BTreeMap;
use std::io::{BufReader, Read};
use std::path::Path;

/// More metadata pairs or tensors than any real model has.
const MAX_ENTRIES: u64 = 1_000_000;
/// Longest string (keys, names, chat templates) read.
const MAX_STRING: u64 = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("{path}: {detail}")]
    Io { path: String, detail: String },
    #[error("{path}: not a GGUF file")]
    NotGguf { path: String },
    #[error("{path}: unsupported GGUF version {version}")]
    Version { path: String, version: u32 },
    #[error("{path}: malformed header: {detail}")]
    Malformed { path: String, detail: String },
}

/// A metadata value. Arrays keep only their length unless the reader was
/// asked for them by key ([`read_header_keeping`]): vocabularies are large
/// and plan needs only their size.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    Int(i128),
    Float(f64),
    Bool(bool),
    Str(String),
    Array {
        len: u64,
    },
    /// A kept array of strings, as raw bytes (token texts need not be UTF-8).
    Bytes(Vec<Vec<u8>>),
    /// A kept array of integers.
    Ints(Vec<i128>),
}

impl GgufValue {
    #[must_use]
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            GgufValue::Int(i) => u64::try_from(*i).ok(),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufTensor {
    pub name: String,
    pub dims: Vec<u64>,
    pub ggml_type: u32,
}

impl GgufTensor {
    #[must_use]
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Bytes the tensor takes, from ggml's block sizes (`None` for a type
    /// this table does not know).
    #[must_use]
    pub fn bytes(&self) -> Option<u64> {
        let (block, bytes) = ggml_block(self.ggml_type)?;
        Some(self.elements().div_ceil(block) * bytes)
    }
}

/// (weights per block, bytes per block) for ggml tensor types.
#[must_use]
pub fn ggml_block(t: u32) -> Option<(u64, u64)> {
    // F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K..Q8_K, I8, I16,
    // I32, I64, F64, BF16 (ggml.h's type numbers).
    Some(match t {
        24 => (1, 1),
        1 | 25 | 30 => (1, 2),
        0 | 26 => (1, 4),
        27 | 28 => (1, 8),
        2 => (32, 18),
        3 => (32, 20),
        6 => (32, 22),
        7 => (32, 24),
        8 => (32, 34),
        9 => (32, 36),
        10 => (256, 84),
        11 => (256, 110),
        12 => (256, 144),
        13 => (256, 176),
        14 => (256, 210),
        15 => (256, 292),
        _ => return None,
    })
}

#[derive(Debug, Clone, PartialEq)]
pub struct GgufHeader {
    pub version: u32,
    pub metadata: BTreeMap<String, GgufValue>,
    pub tensors: Vec<GgufTensor>,
}

impl GgufHeader {
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }

    #[must_use]
    pub fn u64(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(GgufValue::as_u64)
    }

    #[must_use]
    pub fn str(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(GgufValue::Str(s)) => Some(s),
            _ => None,
        }
    }
}

struct Cursor<R> {
    r: R,
    path: String,
}

impl<R: Read> Cursor<R> {
    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], GgufError> {
        let mut b = [0u8; N];
        self.r.read_exact(&mut b).map_err(|e| GgufError::Malformed {
            path: self.path.clone(),
            detail: e.to_string(),
        })?;
        Ok(b)
    }
    fn u32(&mut self) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }
    fn u64(&mut self) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }
    fn count(&mut self, what: &str) -> Result<u64, GgufError> {
        let n = self.u64()?;
        if n > MAX_ENTRIES {
            return Err(self.bad(format!("{what} count {n} is implausible")));
        }
        Ok(n)
    }
    fn bad(&self, detail: String) -> GgufError {
        GgufError::Malformed {
            path: self.path.clone(),
            detail,
        }
    }
    fn raw_string(&mut self) -> Result<Vec<u8>, GgufError> {
        let len = self.u64()?;
        if len > MAX_STRING {
            return Err(self.bad(format!("string of {len} bytes")));
        }
        let mut buf = vec![0u8; len as usize];
        self.r.read_exact(&mut buf).map_err(|e| self.bad(e.to_string()))?;
        Ok(buf)
    }
    fn string(&mut self) -> Result<String, GgufError> {
        Ok(String::from_utf8_lossy(&self.raw_string()?).into_owned())
    }
    fn skip(&mut self, n: u64) -> Result<(), GgufError> {
        let copied =
            std::io::copy(&mut (&mut self.r).take(n), &mut std::io::sink()).map_err(|e| self.bad(e.to_string()))?;
        if copied == n {
            Ok(())
        } else {
            Err(self.bad("file ends inside the header".into()))
        }
    }
    /// Reads an array of `len` items of type `inner` whole.
    fn kept_array(&mut self, inner: u32, len: u64) -> Result<GgufValue, GgufError> {
        if len > MAX_ENTRIES {
            return Err(self.bad(format!("kept array of {len} items")));
        }
        if inner == 8 {
            return Ok(GgufValue::Bytes(
                (0..len).map(|_| self.raw_string()).collect::<Result<_, _>>()?,
            ));
        }
        let mut ints = Vec::with_capacity(len as usize);
        for _ in 0..len {
            match self.value(inner, false)? {
                GgufValue::Int(i) => ints.push(i),
                GgufValue::Bool(b) => ints.push(i128::from(b)),
                _ => return Err(self.bad(format!("kept array of value type {inner}"))),
            }
        }
        Ok(GgufValue::Ints(ints))
    }
    fn value(&mut self, t: u32, keep: bool) -> Result<GgufValue, GgufError> {
        Ok(match t {
            0 => GgufValue::Int(i128::from(self.bytes::<1>()?[0])),
            1 => GgufValue::Int(i128::from(i8::from_le_bytes(self.bytes()?))),
            2 => GgufValue::Int(i128::from(u16::from_le_bytes(self.bytes()?))),
            3 => GgufValue::Int(i128::from(i16::from_le_bytes(self.bytes()?))),
            4 => GgufValue::Int(i128::from(self.u32()?)),
            5 => GgufValue::Int(i128::from(i32::from_le_bytes(self.bytes()?))),
            6 => GgufValue::Float(f64::from(f32::from_le_bytes(self.bytes()?))),
            7 => GgufValue::Bool(self.bytes::<1>()?[0] != 0),
            8 => GgufValue::Str(self.string()?),
            9 => {
                let inner = self.u32()?;
                let len = self.u64()?;
                if len > u64::from(u32::MAX) {
                    return Err(self.bad(format!("array of {len} items")));
                }
                if keep {
                    return self.kept_array(inner, len);
                }
                let size = match inner {
                    0 | 1 | 7 => Some(1),
                    2 | 3 => Some(2),
                    4..=6 => Some(4),
                    10..=12 => Some(8),
                    _ => None,
                };
                match size {
                    Some(s) => self.skip(len * s)?,
                    None => {
                        for _ in 0..len {
                            self.value(inner, false)?;
                        }
                    }
                }
                GgufValue::Array { len }
            }
            10 => GgufValue::Int(i128::from(self.u64()?)),
            11 => GgufValue::Int(i128::from(i64::from_le_bytes(self.bytes()?))),
            12 => GgufValue::Float(f64::from_le_bytes(self.bytes()?)),
            other => return Err(self.bad(format!("unknown value type {other}"))),
        })
    }
}

/// Reads the header of the GGUF file at `path`.
pub fn read_header(path: &Path) -> Result<GgufHeader, GgufError> {
    read_header_keeping(path, &[])
}

/// Reads the header of the GGUF file at `path`, keeping the arrays under
/// `keep` whole (a vocabulary, its merges).
pub fn read_header_keeping(path: &Path, keep: &[&str]) -> Result<GgufHeader, GgufError> {
    let shown = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| GgufError::Io {
        path: shown.clone(),
        detail: e.to_string(),
    })?;
    parse(BufReader::new(file), shown, keep)
}

fn parse(r: impl Read, path: String, keep: &[&str]) -> Result<GgufHeader, GgufError> {
    let mut c = Cursor { r, path };
    if &c
        .bytes::<4>()
        .map_err(|_| GgufError::NotGguf { path: c.path.clone() })?
        != b"GGUF"
    {
        return Err(GgufError::NotGguf { path: c.path });
    }
    let version = c.u32()?;
    if !(2..=3).contains(&version) {
        return Err(GgufError::Version { path: c.path, version });
    }
    let n_tensors = c.count("tensor")?;
    let n_kv = c.count("metadata")?;
    let mut metadata = BTreeMap::new();
    for _ in 0..n_kv {
        let key = c.string()?;
        let t = c.u32()?;
        let v = c.value(t, keep.contains(&key.as_str()))?;
        metadata.insert(key, v);
    }
    let mut tensors = Vec::with_capacity(n_tensors.min(65_536) as usize);
    for _ in 0..n_tensors {
        let name = c.string()?;
        let n_dims = c.u32()?;
        if n_dims > 8 {
            return Err(c.bad(format!("tensor {name} has {n_dims} dimensions")));
        }
        let dims = (0..n_dims).map(|_| c.u64()).collect::<Result<Vec<_>, _>>()?;
        let ggml_type = c.u32()?;
        let _offset = c.u64()?;
        tensors.push(GgufTensor { name, dims, ggml_type });
    }
    Ok(GgufHeader {
        version,
        metadata,
        tensors,
    })
}

/// Writes a GGUF header with `metadata` (u32, u64 and string values) and
/// tensor infos; for tests here and in `facts`.
#[cfg(test)]
#[must_use]
pub fn write_header(metadata: &[(&str, GgufValue)], tensors: &[GgufTensor]) -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    out.extend((metadata.len() as u64).to_le_bytes());
    let s = |out: &mut Vec<u8>, s: &str| {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    };
    for (k, v) in metadata {
        s(&mut out, k);
        match v {
            GgufValue::Int(i) => {
                out.extend(10u32.to_le_bytes());
                out.extend((*i as u64).to_le_bytes());
            }
            GgufValue::Str(v) => {
                out.extend(8u32.to_le_bytes());
                s(&mut out, v);
            }
            GgufValue::Array { len } => {
                out.extend(9u32.to_le_bytes());
                out.extend(8u32.to_le_bytes());
                out.extend(len.to_le_bytes());
                for _ in 0..*len {
                    s(&mut out, "t");
                }
            }
            GgufValue::Bytes(items) => {
                out.extend(9u32.to_le_bytes());
                out.extend(8u32.to_le_bytes());
                out.extend((items.len() as u64).to_le_bytes());
                for item in items {
                    out.extend((item.len() as u64).to_le_bytes());
                    out.extend(item);
                }
            }
            GgufValue::Ints(items) => {
                out.extend(9u32.to_le_bytes());
                out.extend(5u32.to_le_bytes());
                out.extend((items.len() as u64).to_le_bytes());
                for &i in items {
                    out.extend((i as i32).to_le_bytes());
                }
            }
            GgufValue::Float(_) | GgufValue::Bool(_) => unreachable!("not needed by tests"),
        }
    }
    let mut offset = 0u64;
    for t in tensors {
        s(&mut out, &t.name);
        out.extend((t.dims.len() as u32).to_le_bytes());
        for d in &t.dims {
            out.extend(d.to_le_bytes());
        }
        out.extend(t.ggml_type.to_le_bytes());
        out.extend(offset.to_le_bytes());
        offset += t.bytes().unwrap_or(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_metadata_and_tensor_shapes() {
        let bytes = write_header(
            &[
                ("general.architecture", GgufValue::Str("llama".into())),
                ("llama.block_count", GgufValue::Int(2)),
                ("tokenizer.ggml.tokens", GgufValue::Array { len: 3 }),
            ],
            &[GgufTensor {
                name: "token_embd.weight".into(),
                dims: vec![64, 3],
                ggml_type: 12,
            }],
        );
        let h = parse(&bytes[..], "t.gguf".into(), &[]).unwrap();
        assert_eq!(h.str("general.architecture"), Some("llama"));
        assert_eq!(h.u64("llama.block_count"), Some(2));
        assert_eq!(h.get("tokenizer.ggml.tokens"), Some(&GgufValue::Array { len: 3 }));
        let kept = parse(&bytes[..], "t.gguf".into(), &["tokenizer.ggml.tokens"]).unwrap();
        assert_eq!(
            kept.get("tokenizer.ggml.tokens"),
            Some(&GgufValue::Bytes(vec![b"t".to_vec(); 3]))
        );
        assert_eq!(h.tensors[0].elements(), 192);
        // Q4_K: 144 bytes per 256 weights; 192 weights round up to a block.
        assert_eq!(h.tensors[0].bytes(), Some(144));
    }

    #[test]
    fn hostile_counts_and_truncation_are_errors_not_allocations() {
        let mut bytes = b"GGUF".to_vec();
        bytes.extend(3u32.to_le_bytes());
        bytes.extend(u64::MAX.to_le_bytes());
        bytes.extend(0u64.to_le_bytes());
        assert!(matches!(
            parse(&bytes[..], "x".into(), &[]),
            Err(GgufError::Malformed { .. })
        ));
        let ok = write_header(&[("k", GgufValue::Str("v".into()))], &[]);
        assert!(matches!(
            parse(&ok[..ok.len() - 1], "x".into(), &[]),
            Err(GgufError::Malformed { .. })
        ));
        assert!(matches!(
            parse(&b"GGML...."[..], "x".into(), &[]),
            Err(GgufError::NotGguf { .. })
        ));
    }
}
