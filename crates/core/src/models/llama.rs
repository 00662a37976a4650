//! The Llama-family decoder (model_type llama, mistral, qwen2, qwen3): pre-norm transformer
//! blocks with grouped-query attention, rotary embeddings and a SwiGLU MLP. The differences
//! between the types are data, not code: attention biases (qwen2), per-head q/k RMSNorm (qwen3),
//! explicit head_dim, tied or untied output projection, rope scaling.

use mlx_rs::fast;
use mlx_rs::{ops, Array};

use super::causal::{embedding_arrays, input_ids, linear_arrays, output_head, output_projection, segment_logits, DecoderStack, Segment};
use super::config::ModelConfig;
use super::linear::{Embedding, Linear, Projections};
use super::attention::{decode_attention, decode_positions, segment_attention, AttnSpec};
use super::fused_decode::{self, HeadLayout, RopeParams};
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
    /// Set when decode passes can run through `fused_decode` (fused q/k/v everywhere, a rope
    /// the kernel implements); used only on CUDA.
    decode_rope: Option<RopeParams>,
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
        let fused_qkv = layers.iter().all(|b| matches!(b.attn.qkv, Projections::Fused { .. }));
        let decode_rope = if fused_qkv { rope.decode_params(config.head_dim) } else { None };
        Ok(LlamaModel { embed_tokens, layers, norm: w.require("model.norm.weight")?, lm_head, rope, decode_rope, config })
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

    /// A decode pass (one token per row) or one sequence's short chunk (`fused_pass_shape`)
    /// through the fused CUDA kernels: the final-normed hidden states [1, T, hidden], or `None`
    /// (nothing touched) where that path does not apply — off, not CUDA, another pass shape, or
    /// heads/dtypes the kernels do not cover. Same
    /// operations as `block_forward`, with the residual adds merged into the RMSNorms that
    /// follow them and the q/k/v split, q/k norms and rotary merged into one kernel.
    fn decode_hidden_fused(&self, segs: &mut [Segment<'_>]) -> MlxResult<Option<Array>> {
        let Some(rope) = &self.decode_rope else { return Ok(None) };
        if !fused_decode::enabled() || !fused_pass_shape(segs) {
            return Ok(None);
        }
        let c = &self.config;
        if !fused_decode::heads_supported(c.head_dim, self.embed_tokens.dtype()) {
            return Ok(None);
        }
        let mut x = self.embed_tokens.lookup(&input_ids(segs)?)?;
        let eps = c.rms_norm_eps;
        let positions = decode_positions(segs);
        let mut normed = fast::rms_norm(&x, Some(&self.layers[0].input_layernorm), eps)?;
        for (li, b) in self.layers.iter().enumerate() {
            let spec = AttnSpec::standard(c, &self.rope, b.attn.q_norm.as_ref(), b.attn.k_norm.as_ref());
            let product = b.attn.qkv.product(&normed).expect("fused q/k/v checked at load")?;
            let layout = HeadLayout { heads: spec.heads, kv_heads: spec.kv_heads, head_dim: spec.head_dim, rope, norms: spec.qk_norm };
            let (q, k, v) = fused_decode::decode_heads(&product, &positions, &layout)?;
            let attn = b.attn.o_proj.forward(&decode_attention(&spec, li, &q, &k, &v, segs)?)?;
            let (h, normed_mlp) = add_rms_norm(&x, &attn, &b.post_attention_layernorm, eps)?;
            let mlp = b.mlp.down_proj.forward(&decode_swiglu(&b.mlp.gate_up, &normed_mlp)?)?;
            // the next layer's input norm, or after the last layer the final norm
            let next = self.layers.get(li + 1).map_or(&self.norm, |n| &n.input_layernorm);
            (x, normed) = add_rms_norm(&h, &mlp, next, eps)?;
        }
        Ok(Some(normed))
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

    fn forward_segments(&self, segs: &mut [Segment<'_>]) -> MlxResult<Array> {
        if let Some(normed) = self.decode_hidden_fused(segs)? {
            return segment_logits(&normed, segs, |h| output_projection(h, self.lm_head.as_ref(), &self.embed_tokens));
        }
        let h = self.hidden_states(segs)?;
        segment_logits(&h, segs, |h| self.project(h))
    }

    fn all_logits(&self, segs: &mut [Segment<'_>]) -> MlxResult<Array> {
        if let Some(normed) = self.decode_hidden_fused(segs)? {
            return output_projection(&normed, self.lm_head.as_ref(), &self.embed_tokens);
        }
        self.project(&self.hidden_states(segs)?)
    }
}

/// Passes the fused path takes: every segment one token or stacked decode rows, or a single
/// sequence's chunk short enough for the explicit causal attention (speculative verification,
/// the draft's catch-up, short prompt chunks).
fn fused_pass_shape(segs: &[Segment<'_>]) -> bool {
    let short_chunk = |s: &Segment<'_>| s.batch.is_none() && s.tokens.len() as i32 <= crate::models::sdpa::SMALL_QUERY_BLOCK;
    segs.iter().all(|s| s.batch.is_some() || s.tokens.len() == 1) || (segs.len() == 1 && short_chunk(&segs[0]))
}

/// silu(gate)·up of a decode pass: the rows read their parts straight out of the fused product
/// (`fused_decode::swiglu_rows`, where its self-check passed): one operation, where splitting
/// the product (copies for several rows, two views for one) and the compiled SwiGLU are three
/// for the host to build and MLX to evaluate. Without the kernel, the compiled SwiGLU.
fn decode_swiglu(gate_up: &Projections, x: &Array) -> MlxResult<Array> {
    if fused_decode::swiglu_enabled() {
        if let Some(product) = gate_up.product(x) {
            let product = product?;
            let f = product.shape()[2] / 2;
            return fused_decode::swiglu_rows(&product, f);
        }
    }
    let parts = gate_up.forward(x)?;
    swiglu(&parts[0], &parts[1])
}

/// h = x + d and rms_norm(h)·w: one fused kernel where it applies, else MLX's two operations.
fn add_rms_norm(x: &Array, d: &Array, w: &Array, eps: f32) -> MlxResult<(Array, Array)> {
    if let Some(pair) = fused_decode::add_rms_norm(x, d, w, eps)? {
        return Ok(pair);
    }
    let h = ops::add(x, d)?;
    let normed = fast::rms_norm(&h, Some(w), eps)?;
    Ok((h, normed))
}
