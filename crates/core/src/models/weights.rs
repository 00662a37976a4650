//! Reading a model folder's safetensors weights (one file or shards listed in
//! `model.safetensors.index.json`) into MLX arrays, with load errors that name the file.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use mlx_rs::Array;
use serde_json::Value;

use crate::error::{EngineError, EngineResult};

/// The stream that reads weight files: the default device's. mlx-rs reads on the CPU stream
/// unless told otherwise; on a GPU backend that materializes every weight in host memory first
/// (peak host RSS ≈ the model size, measured 2–5× mlx-lm's on the CUDA backend), while a load on
/// the GPU stream goes to device memory as mlx-lm's does. On the CPU backend both are the CPU.
fn load_stream() -> mlx_rs::Stream {
    mlx_rs::Stream::new()
}

pub struct WeightMap {
    tensors: HashMap<String, Array>,
}

impl WeightMap {
    pub fn load_dir(dir: &Path) -> EngineResult<Self> {
        let mut tensors = HashMap::new();
        for file in weight_files(dir)? {
            let path = dir.join(&file);
            let loaded = mlx_rs::with_stream(&load_stream(), || Array::load_safetensors(&path)).map_err(|e| {
                EngineError::model_load(format!("cannot read weights file {file}: {e}")).with_detail("file", file.clone())
            })?;
            tensors.extend(loaded);
        }
        Ok(WeightMap { tensors })
    }

    /// Keeps only the tensors named `prefix...`, without the prefix (the language model of a
    /// multimodal checkpoint).
    pub fn keep_prefixed(&mut self, prefix: &str) {
        let old = std::mem::take(&mut self.tensors);
        self.tensors = old.into_iter().filter_map(|(k, v)| k.strip_prefix(prefix).map(|s| (s.to_owned(), v))).collect();
    }

    pub fn from_map(tensors: HashMap<String, Array>) -> Self {
        WeightMap { tensors }
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    pub fn insert(&mut self, name: String, a: Array) {
        self.tensors.insert(name, a);
    }

    pub fn remove(&mut self, name: &str) -> Option<Array> {
        self.tensors.remove(name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    pub fn get(&self, name: &str) -> Option<&Array> {
        self.tensors.get(name)
    }

    /// A tensor the architecture cannot work without.
    pub fn require(&self, name: &str) -> EngineResult<Array> {
        self.tensors
            .get(name)
            .cloned()
            .ok_or_else(|| EngineError::model_load(format!("weights are missing tensor '{name}'")).with_detail("tensor", name))
    }

    pub fn parameter_count(&self) -> u64 {
        self.tensors
            .iter()
            .filter(|(k, _)| !k.ends_with(".scales") && !k.ends_with(".biases"))
            .map(|(k, a)| {
                let n = a.size() as u64;
                // packed quantized weights hold 32/bits values per uint32 element
                if a.dtype() == mlx_rs::Dtype::Uint32 && self.tensors.contains_key(&scales_name(k)) {
                    n * 32 / self.bits_hint(k).max(1) as u64
                } else {
                    n
                }
            })
            .sum()
    }

    fn bits_hint(&self, weight_name: &str) -> i32 {
        let (Some(w), Some(s)) = (self.tensors.get(weight_name), self.tensors.get(&scales_name(weight_name))) else {
            return 32;
        };
        let packed = *w.shape().last().unwrap_or(&1) as i64;
        let groups = *s.shape().last().unwrap_or(&1) as i64;
        // in_features = packed * 32 / bits = groups * group_size; assume the common group sizes
        for gs in [64i64, 32, 128] {
            let in_features = groups * gs;
            if in_features > 0 && (packed * 32) % in_features == 0 {
                let bits = packed * 32 / in_features;
                if [2, 3, 4, 5, 6, 8].contains(&bits) {
                    return bits as i32;
                }
            }
        }
        4
    }

    pub fn dtype_name(&self) -> String {
        let name = "model.embed_tokens.scales";
        let probe = self.tensors.get(name).or_else(|| self.tensors.get("model.embed_tokens.weight"));
        probe.map(|a| dtype_name(a.dtype())).unwrap_or_else(|| "unknown".into())
    }
}

fn scales_name(weight_name: &str) -> String {
    format!("{}.scales", weight_name.trim_end_matches(".weight"))
}

pub fn dtype_name(d: mlx_rs::Dtype) -> String {
    use mlx_rs::Dtype::*;
    match d {
        Float32 => "float32",
        Float16 => "float16",
        Bfloat16 => "bfloat16",
        Uint32 => "uint32",
        _ => "other",
    }
    .into()
}

/// The safetensors files of a folder: the shards named by the index, else every `*.safetensors`.
fn weight_files(dir: &Path) -> EngineResult<Vec<String>> {
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text = std::fs::read_to_string(&index)
            .map_err(|e| EngineError::model_load(format!("cannot read model.safetensors.index.json: {e}")))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| EngineError::model_load(format!("model.safetensors.index.json is not valid JSON: {e}")))?;
        let map = v.get("weight_map").and_then(Value::as_object).ok_or_else(|| {
            EngineError::model_load("model.safetensors.index.json has no weight_map")
        })?;
        let files: BTreeSet<String> = map.values().filter_map(Value::as_str).map(str::to_owned).collect();
        for f in &files {
            if !dir.join(f).is_file() {
                return Err(EngineError::model_load(format!("weights shard {f} listed in model.safetensors.index.json is missing"))
                    .with_detail("file", f.clone()));
            }
        }
        return Ok(files.into_iter().collect());
    }
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| EngineError::model_load(format!("cannot list model folder: {e}")))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(EngineError::model_load("no *.safetensors weights file in the model folder"));
    }
    Ok(files)
}
