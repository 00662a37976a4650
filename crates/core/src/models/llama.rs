//! The Llama-family decoder (model_type llama, mistral, qwen2, qwen3): pre-norm transformer
//! blocks with grouped-query attention, rotary embeddings and a SwiGLU MLP. The differences
//! between the types are data, not code: attention biases (qwen2), per-head q/k RMSNorm (qwen3),
//! explicit head_dim, tied or untied output projection, rope scaling.

use mlx_rs::fast;
use mlx_rs::{nn, ops, Array};

use super::causal::{embedding_arrays, input_ids, linear_arrays, output_head, segment_logits, DecoderStack, Segment};
use super::config::ModelConfig;
use super::linear::{Embedding, Linear};
use super::rope::Rope;
use super::weights::WeightMap;
use crate::error::{EngineError, EngineResult};
use crate::generation::kv_cache::KvCache;

type MlxResult<T> = Result<T, mlx_rs::error::Exception>;

struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    q_norm: Option<Array>,
    k_norm: Option<Array>,
}

struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

struct Block {
    input_layernorm: Array,
    post_attention_layernorm: Array,
    attn: Attention,
    mlp: Mlp,
}

/// Explicit rotary tables for one sequence (cos and sin, [1, 1, L, head_dim]), applied as
/// `x·cos + rotate_half(x)·sin` instead of the configured rope: the hook multimodal position
/// schemes (Qwen2-VL's M-RoPE, where image tokens carry 3-D positions) use.
pub struct RotaryTables {
    pub cos: Array,
    pub sin: Array,
}

impl RotaryTables {
    fn apply(&self, x: &Array) -> MlxResult<Array> {
        use mlx_rs::ops::indexing::TryIndexOp;
        let half = x.shape()[3] / 2;
        let x1 = x.try_index((.., .., .., ..half))?;
        let x2 = x.try_index((.., .., .., half..))?;
        let rotated = ops::concatenate(&[ops::negative(&x2)?, x1], 3)?;
        ops::add(&ops::multiply(x, &self.cos)?, &ops::multiply(&rotated, &self.sin)?)
    }
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

    /// One sequence from input embeddings `h` [1, L, hidden] (token embeddings with image
    /// features spliced in) with explicit rotary tables → logits of the last position [1, vocab].
    pub fn forward_embeddings(&self, h: Array, cache: &mut [KvCache], rot: &RotaryTables) -> MlxResult<Array> {
        // attention only reads the segment's length from `tokens`
        let placeholder = vec![0u32; h.shape()[1] as usize];
        let mut segs = [Segment::ids(&placeholder, cache, true)];
        let mut h = h;
        for (li, layer) in self.layers.iter().enumerate() {
            h = self.block_forward(layer, li, &h, &mut segs, Some(rot))?;
        }
        segment_logits(&h, &segs, |h| self.project(h))
    }

    fn block_forward(&self, b: &Block, layer: usize, x: &Array, segs: &mut [Segment<'_>], rot: Option<&RotaryTables>) -> MlxResult<Array> {
        let eps = self.config.rms_norm_eps;
        let normed = fast::rms_norm(x, Some(&b.input_layernorm), eps)?;
        let h = ops::add(x, &self.attention(&b.attn, layer, &normed, segs, rot)?)?;
        let normed = fast::rms_norm(&h, Some(&b.post_attention_layernorm), eps)?;
        let gate = b.mlp.gate_proj.forward(&normed)?;
        let up = b.mlp.up_proj.forward(&normed)?;
        let act = ops::multiply(&nn::silu(&gate)?, &up)?;
        ops::add(&h, &b.mlp.down_proj.forward(&act)?)
    }

    fn attention(&self, a: &Attention, layer: usize, x: &Array, segs: &mut [Segment<'_>], rot: Option<&RotaryTables>) -> MlxResult<Array> {
        let c = &self.config;
        let q_all = a.q_proj.forward(x)?;
        let k_all = a.k_proj.forward(x)?;
        let v_all = a.v_proj.forward(x)?;
        let single = segs.len() == 1;
        let mut outs = Vec::with_capacity(segs.len());
        let mut start = 0i32;
        for seg in segs.iter_mut() {
            let len = seg.tokens.len() as i32;
            let part = |t: &Array| -> MlxResult<Array> {
                use mlx_rs::ops::indexing::TryIndexOp;
                if single { Ok(t.clone()) } else { t.try_index((.., start..start + len, ..)) }
            };
            let heads = |t: Array, n: i32, norm: &Option<Array>| -> MlxResult<Array> {
                let t = t.reshape(&[1, len, n, c.head_dim])?;
                let t = match norm {
                    Some(w) => fast::rms_norm(&t, Some(w), c.rms_norm_eps)?,
                    None => t,
                };
                t.transpose_axes(&[0, 2, 1, 3])
            };
            let q = heads(part(&q_all)?, c.num_attention_heads, &a.q_norm)?;
            let k = heads(part(&k_all)?, c.num_key_value_heads, &a.k_norm)?;
            let v = heads(part(&v_all)?, c.num_key_value_heads, &None)?;
            let cache = &mut seg.cache[layer];
            let offset = cache.offset();
            let (q, k) = match rot {
                Some(r) => (r.apply(&q)?, r.apply(&k)?),
                None => (self.rope.apply(&q, offset)?, self.rope.apply(&k, offset)?),
            };
            let (keys, values) = cache.update(&k, &v)?;
            let scale = (c.head_dim as f32).powf(-0.5);
            let out = if len > 1 {
                super::sdpa::causal(&q, &keys, &values, scale)?
            } else {
                fast::scaled_dot_product_attention(&q, &keys, &values, scale, None, None)?
            };
            outs.push(out.transpose_axes(&[0, 2, 1, 3])?.reshape(&[1, len, c.num_attention_heads * c.head_dim])?);
            start += len;
        }
        let out = if single { outs.pop().unwrap() } else { ops::concatenate(&outs, 1)? };
        a.o_proj.forward(&out)
    }
}

fn load_block(c: &ModelConfig, w: &WeightMap, i: i32) -> EngineResult<Block> {
    let q = c.quantization.as_ref();
    let p = format!("model.layers.{i}");
    let lin = |name: &str, bias: bool| Linear::load(w, &format!("{p}.{name}"), q, bias);
    let attn = Attention {
        q_proj: lin("self_attn.q_proj", c.attention_bias)?,
        k_proj: lin("self_attn.k_proj", c.attention_bias)?,
        v_proj: lin("self_attn.v_proj", c.attention_bias)?,
        o_proj: lin("self_attn.o_proj", false)?,
        q_norm: if c.qk_norm { Some(w.require(&format!("{p}.self_attn.q_norm.weight"))?) } else { None },
        k_norm: if c.qk_norm { Some(w.require(&format!("{p}.self_attn.k_norm.weight"))?) } else { None },
    };
    let mlp = Mlp { gate_proj: lin("mlp.gate_proj", c.mlp_bias)?, up_proj: lin("mlp.up_proj", c.mlp_bias)?, down_proj: lin("mlp.down_proj", c.mlp_bias)? };
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
            for l in [&b.attn.q_proj, &b.attn.k_proj, &b.attn.v_proj, &b.attn.o_proj, &b.mlp.gate_proj, &b.mlp.up_proj, &b.mlp.down_proj] {
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
