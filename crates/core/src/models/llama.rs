//! The Llama-family decoder (model_type llama, mistral, qwen2, qwen3): pre-norm transformer
//! blocks with grouped-query attention, rotary embeddings and a SwiGLU MLP. The differences
//! between the types are data, not code: attention biases (qwen2), per-head q/k RMSNorm (qwen3),
//! explicit head_dim, tied or untied output projection, rope scaling.

use mlx_rs::fast;
use mlx_rs::{ops, Array};

use super::causal::{embedding_arrays, input_ids, linear_arrays, output_head, segment_logits, DecoderStack, Segment};
use super::config::ModelConfig;
use super::linear::{Embedding, Linear, Projections};
use super::attention::{segment_attention, AttnSpec};
pub use super::rope::RotaryTables;
use super::rope::Rope;
use super::weights::WeightMap;
use super::activation::swiglu;
use crate::error::{EngineError, EngineResult};
use crate::generation::kv_cache::KvCache;

type MlxResult<T> = Result<T, mlx_rs::error::Exception>;

struct Attention {
    /// q, k, v (one fused matmul by default).
    qkv: Projections,
    o_proj: Linear,
    q_norm: Option<Array>,
    k_norm: Option<Array>,
}

struct Mlp {
    /// gate, up (one fused matmul by default).
    gate_up: Projections,
    down_proj: Linear,
}

struct Block {
    input_layernorm: Array,
    post_attention_layernorm: Array,
    attn: Attention,
    mlp: Mlp,
}

pub struct LlamaModel {
    pub config: ModelConfig,
    embed_tokens: Embedding,
    layers: Vec<Block>,
    norm: Array,
    lm_head: Option<Linear>,
    rope: Rope,
}

impl LlamaModel {
    pub fn load(config: ModelConfig, w: &WeightMap) -> EngineResult<Self> {
        let q = config.quantization.as_ref();
        let embed_tokens = Embedding::load(w, "model.embed_tokens", q)?;
        let has_lm_head = w.contains("lm_head.weight");
        let tied = config.tie_word_embeddings.unwrap_or(!has_lm_head);
        let lm_head = if tied { None } else { Some(Linear::load(w, "lm_head", q, false)?) };
        let mut layers = Vec::with_capacity(config.num_hidden_layers as usize);
        for i in 0..config.num_hidden_layers {
            layers.push(load_block(&config, w, i)?);
        }
        let rope = Rope::new(config.head_dim, config.rope_theta, config.rope_traditional, &config.rope_scaling)
            .map_err(|e| EngineError::model_load(format!("rotary setup failed: {}", e.what())))?;
        if embed_tokens.rows() < config.vocab_size {
            return Err(EngineError::model_load(format!(
                "model.embed_tokens has {} rows but config.json vocab_size is {}",
                embed_tokens.rows(),
                config.vocab_size
            )));
        }
        Ok(LlamaModel { embed_tokens, layers, norm: w.require("model.norm.weight")?, lm_head, rope, config })
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    pub fn new_cache(&self) -> Vec<KvCache> {
        (0..self.layers.len()).map(|_| KvCache::new()).collect()
    }

    /// Token embeddings [1, L, hidden].
    pub fn embed(&self, ids: &[u32]) -> MlxResult<Array> {
        let ids: Vec<i32> = ids.iter().map(|&t| t as i32).collect();
        self.embed_tokens.lookup(&Array::from_slice(&ids, &[1, ids.len() as i32]))
    }

    /// Token embeddings [1, L, hidden] of ids on the device (any integer dtype, L ids).
    pub fn embed_ids(&self, ids: &Array) -> MlxResult<Array> {
        self.embed_tokens.lookup(&ids.as_dtype(mlx_rs::Dtype::Int32)?.reshape(&[1, -1])?)
    }

    /// One sequence from input embeddings `h` [1, L, hidden] (token embeddings with image
    /// features spliced in) with explicit rotary tables (or, `None`, the model's own rope at the
    /// cache offset) → logits of the last position [1, vocab].
    pub fn forward_embeddings(&self, h: Array, cache: &mut [KvCache], rot: Option<&RotaryTables>) -> MlxResult<Array> {
        // attention only reads the segment's length from `tokens`
        let placeholder = vec![0u32; h.shape()[1] as usize];
        let mut segs = [Segment::ids(&placeholder, cache, true)];
        let mut h = h;
        for (li, layer) in self.layers.iter().enumerate() {
            h = self.block_forward(layer, li, &h, &mut segs, rot)?;
        }
        segment_logits(&h, &segs, |h| self.project(h))
    }

    fn block_forward(&self, b: &Block, layer: usize, x: &Array, segs: &mut [Segment<'_>], rot: Option<&RotaryTables>) -> MlxResult<Array> {
        let eps = self.config.rms_norm_eps;
        let normed = fast::rms_norm(x, Some(&b.input_layernorm), eps)?;
        let h = ops::add(x, &self.attention(&b.attn, layer, &normed, segs, rot)?)?;
        let normed = fast::rms_norm(&h, Some(&b.post_attention_layernorm), eps)?;
        let gate_up = b.mlp.gate_up.forward(&normed)?;
        let act = swiglu(&gate_up[0], &gate_up[1])?;
        ops::add(&h, &b.mlp.down_proj.forward(&act)?)
    }

    fn attention(&self, a: &Attention, layer: usize, x: &Array, segs: &mut [Segment<'_>], rot: Option<&RotaryTables>) -> MlxResult<Array> {
        let c = &self.config;
        let spec = AttnSpec { tables: rot, ..AttnSpec::standard(c, &self.rope, a.q_norm.as_ref(), a.k_norm.as_ref()) };
        let qkv = a.qkv.forward(x)?;
        let out = segment_attention(&spec, layer, &qkv[0], &qkv[1], &qkv[2], segs)?;
        a.o_proj.forward(&out)
    }
}

fn load_block(c: &ModelConfig, w: &WeightMap, i: i32) -> EngineResult<Block> {
    let q = c.quantization.as_ref();
    let p = format!("model.layers.{i}");
    let lin = |name: &str, bias: bool| Linear::load(w, &format!("{p}.{name}"), q, bias);
    let fuse_err = |e: mlx_rs::error::Exception| EngineError::model_load(format!("{p}: cannot stack projections: {}", e.what()));
    let qkv = vec![lin("self_attn.q_proj", c.attention_bias)?, lin("self_attn.k_proj", c.attention_bias)?, lin("self_attn.v_proj", c.attention_bias)?];
    let attn = Attention {
        qkv: Projections::new(qkv).map_err(fuse_err)?,
        o_proj: lin("self_attn.o_proj", false)?,
        q_norm: if c.qk_norm { Some(w.require(&format!("{p}.self_attn.q_norm.weight"))?) } else { None },
        k_norm: if c.qk_norm { Some(w.require(&format!("{p}.self_attn.k_norm.weight"))?) } else { None },
    };
    let gate_up = vec![lin("mlp.gate_proj", c.mlp_bias)?, lin("mlp.up_proj", c.mlp_bias)?];
    let mlp = Mlp { gate_up: Projections::new(gate_up).map_err(fuse_err)?, down_proj: lin("mlp.down_proj", c.mlp_bias)? };
    Ok(Block {
        input_layernorm: w.require(&format!("{p}.input_layernorm.weight"))?,
        post_attention_layernorm: w.require(&format!("{p}.post_attention_layernorm.weight"))?,
        attn,
        mlp,
    })
}

impl LlamaModel {
    /// Forces every weight to be read now (MLX loads lazily).
    pub fn eval_weights(&self) -> MlxResult<()> {
        let mut arrays: Vec<Array> = vec![self.norm.clone()];
        embedding_arrays(&self.embed_tokens, &mut arrays);
        if let Some(h) = &self.lm_head {
            linear_arrays(h, &mut arrays);
        }
        for b in &self.layers {
            arrays.extend([b.input_layernorm.clone(), b.post_attention_layernorm.clone()]);
            arrays.extend(b.attn.q_norm.iter().cloned());
            arrays.extend(b.attn.k_norm.iter().cloned());
            for l in b.attn.qkv.layers().into_iter().chain(b.mlp.gate_up.layers()).chain([&b.attn.o_proj, &b.mlp.down_proj]) {
                linear_arrays(l, &mut arrays);
            }
        }
        mlx_rs::transforms::eval(arrays.iter())
    }
}

impl DecoderStack for LlamaModel {
    fn hidden_states(&self, segs: &mut [Segment<'_>]) -> MlxResult<Array> {
        let mut h = self.embed_tokens.lookup(&input_ids(segs)?)?;
        for (li, layer) in self.layers.iter().enumerate() {
            h = self.block_forward(layer, li, &h, segs, None)?;
        }
        Ok(h)
    }

    fn project(&self, h: &Array) -> MlxResult<Array> {
        output_head(h, &self.norm, self.config.rms_norm_eps, self.lm_head.as_ref(), &self.embed_tokens)
    }
}
