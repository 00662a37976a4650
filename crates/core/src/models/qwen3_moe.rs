//! Mixture-of-experts decoders: qwen3_moe (Qwen3-30B-A3B, Qwen3-235B-A22B) and mixtral.
//! Llama-style pre-norm blocks with grouped-query attention (qwen3_moe adds per-head q/k RMSNorm
//! and an explicit head_dim) whose MLP is a sparse `MoeBlock` (models/moe.rs); qwen3_moe keeps a
//! dense SwiGLU MLP on the layers in `mlp_only_layers` or off the `decoder_sparse_step` grid.
//! The two differ in data only: weight names, routing rule and which layers are sparse.

use mlx_rs::fast;
use mlx_rs::{ops, Array};
use serde_json::Value;

use super::attention::{segment_attention, AttnSpec};
use super::causal::{embedding_arrays, input_ids, linear_arrays, output_head, DecoderStack, Segment};
use super::config::ModelConfig;
use super::linear::{Embedding, Linear};
use super::moe::{stack_experts, MoeBlock, MoeKernel, Routing};
use super::rope::Rope;
use super::weights::WeightMap;
use super::activation::swiglu;
use crate::error::{EngineError, EngineResult};
use crate::generation::kv_cache::KvCache;

type MlxResult<T> = Result<T, mlx_rs::error::Exception>;

enum Ffn {
    Dense { gate_proj: Linear, up_proj: Linear, down_proj: Linear },
    Sparse(MoeBlock),
}

struct Block {
    input_layernorm: Array,
    post_attention_layernorm: Array,
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    q_norm: Option<Array>,
    k_norm: Option<Array>,
    ffn: Ffn,
}

pub struct MoeModel {
    pub config: ModelConfig,
    embed_tokens: Embedding,
    layers: Vec<Block>,
    norm: Array,
    lm_head: Option<Linear>,
    rope: Rope,
}

/// The MoE settings of a config.json, per family.
struct MoeSettings {
    experts: i32,
    top_k: i32,
    routing: Routing,
    /// Module path of a layer's MLP (`mlp` / `block_sparse_moe`).
    mlp: &'static str,
    sparse: Vec<bool>,
}

fn settings(c: &ModelConfig) -> EngineResult<MoeSettings> {
    let raw = &c.raw;
    let int = |k: &str| raw.get(k).and_then(Value::as_i64).map(|v| v as i32);
    let need = |k: &str| int(k).filter(|v| *v > 0).ok_or_else(|| EngineError::model_load(format!("config.json: missing or invalid '{k}'")));
    if c.model_type == "mixtral" {
        let experts = int("num_local_experts").unwrap_or(8);
        let top_k = int("num_experts_per_tok").unwrap_or(2);
        return Ok(MoeSettings { experts, top_k, routing: Routing::TopKSoftmax, mlp: "block_sparse_moe", sparse: vec![true; c.num_hidden_layers as usize] });
    }
    let experts = need("num_experts")?;
    let step = need("decoder_sparse_step")?;
    let dense_only: Vec<i64> = raw.get("mlp_only_layers").and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_i64).collect()).unwrap_or_default();
    let sparse = (0..c.num_hidden_layers).map(|i| !dense_only.contains(&(i as i64)) && (i + 1) % step == 0).collect();
    let norm_topk_prob = raw.get("norm_topk_prob").and_then(Value::as_bool).unwrap_or(false);
    Ok(MoeSettings { experts, top_k: need("num_experts_per_tok")?, routing: Routing::SoftmaxTopK { norm_topk_prob }, mlp: "mlp", sparse })
}

/// Hugging Face per-expert weights → the stacked `switch_mlp` layout (mlx-lm's sanitize).
pub fn sanitize(c: &ModelConfig, w: &mut WeightMap) -> EngineResult<()> {
    let s = settings(c)?;
    if c.model_type == "mixtral" {
        let names = [("w1", "gate_proj"), ("w2", "down_proj"), ("w3", "up_proj")];
        stack_experts(w, c.num_hidden_layers, s.experts, "block_sparse_moe.experts", "block_sparse_moe.switch_mlp", &names)
    } else {
        let names = [("gate_proj", "gate_proj"), ("up_proj", "up_proj"), ("down_proj", "down_proj")];
        stack_experts(w, c.num_hidden_layers, s.experts, "mlp.experts", "mlp.switch_mlp", &names)
    }
}

impl MoeModel {
    pub fn load(config: ModelConfig, w: &WeightMap) -> EngineResult<Self> {
        let q = config.quantization.as_ref();
        let embed_tokens = Embedding::load(w, "model.embed_tokens", q)?;
        if embed_tokens.rows() < config.vocab_size {
            return Err(EngineError::model_load(format!(
                "model.embed_tokens has {} rows but config.json vocab_size is {}",
                embed_tokens.rows(),
                config.vocab_size
            )));
        }
        let tied = config.tie_word_embeddings.unwrap_or(!w.contains("lm_head.weight"));
        let lm_head = if tied { None } else { Some(Linear::load(w, "lm_head", q, false)?) };
        let s = settings(&config)?;
        let kernel = MoeKernel::resolve(crate::services::runtime_info::device())?;
        let layers = (0..config.num_hidden_layers).map(|i| load_block(&config, &s, kernel, w, i)).collect::<EngineResult<Vec<_>>>()?;
        let rope = Rope::new(config.head_dim, config.rope_theta, config.rope_traditional, &config.rope_scaling)
            .map_err(|e| EngineError::model_load(format!("rotary setup failed: {}", e.what())))?;
        Ok(MoeModel { embed_tokens, layers, norm: w.require("model.norm.weight")?, lm_head, rope, config })
    }

    /// Runs every MoE layer's experts with `kernel` from now on.
    pub fn set_moe_kernel(&mut self, kernel: MoeKernel) {
        for b in &mut self.layers {
            if let Ffn::Sparse(moe) = &mut b.ffn {
                moe.set_kernel(kernel);
            }
        }
    }

    pub fn new_cache(&self) -> Vec<KvCache> {
        (0..self.layers.len()).map(|_| KvCache::new()).collect()
    }

    fn block_forward(&self, b: &Block, layer: usize, x: &Array, segs: &mut [Segment<'_>]) -> MlxResult<Array> {
        let c = &self.config;
        let normed = fast::rms_norm(x, Some(&b.input_layernorm), c.rms_norm_eps)?;
        let spec = AttnSpec::standard(c, &self.rope, b.q_norm.as_ref(), b.k_norm.as_ref());
        let (q, k, v) = (b.q_proj.forward(&normed)?, b.k_proj.forward(&normed)?, b.v_proj.forward(&normed)?);
        let attn = segment_attention(&spec, layer, &q, &k, &v, segs)?;
        let h = ops::add(x, &b.o_proj.forward(&attn)?)?;
        let normed = fast::rms_norm(&h, Some(&b.post_attention_layernorm), c.rms_norm_eps)?;
        let r = match &b.ffn {
            Ffn::Dense { gate_proj, up_proj, down_proj } => {
                down_proj.forward(&swiglu(&gate_proj.forward(&normed)?, &up_proj.forward(&normed)?)?)?
            }
            Ffn::Sparse(moe) => moe.forward(&normed)?,
        };
        ops::add(&h, &r)
    }

    pub fn eval_weights(&self) -> MlxResult<()> {
        let mut arrays: Vec<Array> = vec![self.norm.clone()];
        embedding_arrays(&self.embed_tokens, &mut arrays);
        if let Some(h) = &self.lm_head {
            linear_arrays(h, &mut arrays);
        }
        for b in &self.layers {
            arrays.extend([b.input_layernorm.clone(), b.post_attention_layernorm.clone()]);
            arrays.extend(b.q_norm.iter().chain(b.k_norm.iter()).cloned());
            for l in [&b.q_proj, &b.k_proj, &b.v_proj, &b.o_proj] {
                linear_arrays(l, &mut arrays);
            }
            match &b.ffn {
                Ffn::Dense { gate_proj, up_proj, down_proj } => [gate_proj, up_proj, down_proj].iter().for_each(|l| linear_arrays(l, &mut arrays)),
                Ffn::Sparse(moe) => moe.arrays(&mut arrays),
            }
        }
        mlx_rs::transforms::eval(arrays.iter())
    }
}

fn load_block(c: &ModelConfig, s: &MoeSettings, kernel: MoeKernel, w: &WeightMap, i: i32) -> EngineResult<Block> {
    let q = c.quantization.as_ref();
    let p = format!("model.layers.{i}");
    let lin = |name: &str| Linear::load(w, &format!("{p}.{name}"), q, false);
    let norm = |name: &str| if c.qk_norm { w.require(&format!("{p}.self_attn.{name}.weight")).map(Some) } else { Ok(None) };
    let mlp = format!("{p}.{}", s.mlp);
    let ffn = if s.sparse[i as usize] {
        Ffn::Sparse(MoeBlock::load(w, &format!("{mlp}.gate"), &format!("{mlp}.switch_mlp"), q, s.experts, s.top_k, s.routing, kernel)?)
    } else {
        Ffn::Dense { gate_proj: lin("mlp.gate_proj")?, up_proj: lin("mlp.up_proj")?, down_proj: lin("mlp.down_proj")? }
    };
    Ok(Block {
        input_layernorm: w.require(&format!("{p}.input_layernorm.weight"))?,
        post_attention_layernorm: w.require(&format!("{p}.post_attention_layernorm.weight"))?,
        q_proj: lin("self_attn.q_proj")?,
        k_proj: lin("self_attn.k_proj")?,
        v_proj: lin("self_attn.v_proj")?,
        o_proj: lin("self_attn.o_proj")?,
        q_norm: norm("q_norm")?,
        k_norm: norm("k_norm")?,
        ffn,
    })
}

impl DecoderStack for MoeModel {
    fn hidden_states(&self, segs: &mut [Segment<'_>]) -> MlxResult<Array> {
        let mut h = self.embed_tokens.lookup(&input_ids(segs)?)?;
        for (li, b) in self.layers.iter().enumerate() {
            h = self.block_forward(b, li, &h, segs)?;
        }
        Ok(h)
    }

    fn project(&self, h: &Array) -> MlxResult<Array> {
        output_head(h, &self.norm, self.config.rms_norm_eps, self.lm_head.as_ref(), &self.embed_tokens)
    }
}
