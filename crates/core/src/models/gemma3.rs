//! Gemma 3 text decoder (model_type gemma3_text, and gemma3 with a text_config): interleaved
//! sliding-window and global attention layers (each with its own rotary base: local layers use
//! `rope_local_base_freq`), per-head q/k RMSNorm, a GELU-tanh gated MLP wrapped in pre- and
//! post-feedforward norms, a post-attention norm on the attention output, RMSNorm weights stored
//! as offsets from 1 (`rms_norm(x, 1 + w)`), embeddings scaled by sqrt(hidden) rounded to
//! bfloat16, and attention scaled by `query_pre_attn_scalar^-1/2`. Sliding layers keep a
//! window-limited KV cache.

use mlx_rs::fast::{self, ScaledDotProductAttentionMask};
use mlx_rs::ops::indexing::TryIndexOp;
use mlx_rs::{ops, Array, Dtype};
use serde_json::Value;

use super::causal::{embedding_arrays, input_ids, linear_arrays, output_head, DecoderStack, Segment};
use super::config::{ModelConfig, RopeScaling};
use super::linear::{Embedding, Linear};
use super::rope::Rope;
use super::weights::WeightMap;
use crate::error::{EngineError, EngineResult};
use crate::generation::kv_cache::{AttnMask, KvCache};

type MlxResult<T> = Result<T, mlx_rs::error::Exception>;

struct Block {
    input_layernorm: Array,
    post_attention_layernorm: Array,
    pre_feedforward_layernorm: Array,
    post_feedforward_layernorm: Array,
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    q_norm: Array,
    k_norm: Array,
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
    sliding: bool,
}

pub struct Gemma3Model {
    pub config: ModelConfig,
    embed_tokens: Embedding,
    layers: Vec<Block>,
    norm: Array,
    lm_head: Option<Linear>,
    rope_global: Rope,
    rope_local: Rope,
    sliding_window: i32,
    attn_scale: f32,
}

/// Which layers use sliding-window attention: `layer_types` when config.json lists them, else
/// every layer except each `sliding_window_pattern`-th (default 6, as mlx-lm).
pub fn sliding_layers(raw: &Value, layers: i32) -> EngineResult<Vec<bool>> {
    if let Some(types) = raw.get("layer_types").and_then(Value::as_array) {
        if types.len() != layers as usize {
            return Err(EngineError::model_load("config.json: layer_types length differs from num_hidden_layers"));
        }
        return types
            .iter()
            .map(|t| match t.as_str() {
                Some("sliding_attention") => Ok(true),
                Some("full_attention") => Ok(false),
                _ => Err(EngineError::model_load(format!("config.json: unsupported layer type {t}"))),
            })
            .collect();
    }
    let pattern = raw.get("sliding_window_pattern").and_then(Value::as_i64).unwrap_or(6).max(1) as i32;
    Ok((0..layers).map(|i| (i + 1) % pattern != 0).collect())
}

impl Gemma3Model {
    pub fn load(config: ModelConfig, w: &WeightMap) -> EngineResult<Self> {
        let q = config.quantization.as_ref();
        let raw = &config.raw;
        let embed_tokens = Embedding::load(w, "model.embed_tokens", q)?;
        // As mlx-lm: the output projection is tied exactly when there is no lm_head tensor.
        let lm_head = if w.contains("lm_head.weight") { Some(Linear::load(w, "lm_head", q, false)?) } else { None };
        let sliding = sliding_layers(raw, config.num_hidden_layers)?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| load_block(&config, w, i, sliding[i as usize]))
            .collect::<EngineResult<Vec<_>>>()?;
        let num = |k: &str, d: f64| raw.get(k).and_then(Value::as_f64).unwrap_or(d);
        let rope_err = |e: mlx_rs::error::Exception| EngineError::model_load(format!("rotary setup failed: {}", e.what()));
        let rope_global = Rope::new(config.head_dim, config.rope_theta, false, &config.rope_scaling).map_err(rope_err)?;
        let rope_local = Rope::new(config.head_dim, num("rope_local_base_freq", 10000.0) as f32, false, &RopeScaling::None).map_err(rope_err)?;
        let sliding_window = raw.get("sliding_window").and_then(Value::as_i64).unwrap_or(512).max(1) as i32;
        let attn_scale = num("query_pre_attn_scalar", 256.0).powf(-0.5) as f32;
        let norm = one_plus(&w.require("model.norm.weight")?)?;
        Ok(Gemma3Model { embed_tokens, layers, norm, lm_head, rope_global, rope_local, sliding_window, attn_scale, config })
    }

    pub fn new_cache(&self) -> Vec<KvCache> {
        self.layers
            .iter()
            .map(|b| if b.sliding { KvCache::rotating(self.sliding_window) } else { KvCache::new() })
            .collect()
    }

    /// Per segment: (global mask, sliding mask), computed from that segment's first cache of
    /// each kind, as mlx-lm computes them once per forward pass.
    fn masks(&self, segs: &[Segment<'_>]) -> MlxResult<Vec<(AttnMask, AttnMask)>> {
        let first = |sliding: bool| self.layers.iter().position(|b| b.sliding == sliding);
        let (g, s) = (first(false), first(true));
        segs.iter()
            .map(|seg| {
                let n = seg.tokens.len() as i32;
                let global = match g {
                    Some(i) => seg.cache[i].mask(n, None)?,
                    None => AttnMask::None,
                };
                let sliding = match s {
                    Some(i) => seg.cache[i].mask(n, Some(self.sliding_window))?,
                    None => AttnMask::None,
                };
                Ok((global, sliding))
            })
            .collect()
    }

    fn block_forward(&self, b: &Block, layer: usize, x: &Array, segs: &mut [Segment<'_>], masks: &[(AttnMask, AttnMask)]) -> MlxResult<Array> {
        let eps = self.config.rms_norm_eps;
        let r = self.attention(b, layer, &fast::rms_norm(x, Some(&b.input_layernorm), eps)?, segs, masks)?;
        let h = residual(x, &fast::rms_norm(&r, Some(&b.post_attention_layernorm), eps)?)?;
        let normed = fast::rms_norm(&h, Some(&b.pre_feedforward_layernorm), eps)?;
        let act = ops::multiply(&gelu_approx(&b.gate_proj.forward(&normed)?)?, &b.up_proj.forward(&normed)?)?;
        let r = b.down_proj.forward(&act)?;
        residual(&h, &fast::rms_norm(&r, Some(&b.post_feedforward_layernorm), eps)?)
    }

    fn attention(&self, b: &Block, layer: usize, x: &Array, segs: &mut [Segment<'_>], masks: &[(AttnMask, AttnMask)]) -> MlxResult<Array> {
        let c = &self.config;
        let (q_all, k_all, v_all) = (b.q_proj.forward(x)?, b.k_proj.forward(x)?, b.v_proj.forward(x)?);
        let single = segs.len() == 1;
        let rope = if b.sliding { &self.rope_local } else { &self.rope_global };
        let mut outs = Vec::with_capacity(segs.len());
        let mut start = 0i32;
        for (si, seg) in segs.iter_mut().enumerate() {
            let len = seg.tokens.len() as i32;
            let part = |t: &Array| -> MlxResult<Array> {
                if single { Ok(t.clone()) } else { t.try_index((.., start..start + len, ..)) }
            };
            let heads = |t: Array, n: i32| t.reshape(&[1, len, n, c.head_dim])?.transpose_axes(&[0, 2, 1, 3]);
            let q = fast::rms_norm(&heads(part(&q_all)?, c.num_attention_heads)?, Some(&b.q_norm), c.rms_norm_eps)?;
            let k = fast::rms_norm(&heads(part(&k_all)?, c.num_key_value_heads)?, Some(&b.k_norm), c.rms_norm_eps)?;
            let v = heads(part(&v_all)?, c.num_key_value_heads)?;
            let cache = &mut seg.cache[layer];
            let offset = cache.offset();
            let (q, k) = (rope.apply(&q, offset)?, rope.apply(&k, offset)?);
            let (keys, values) = cache.update(&k, &v)?;
            let mask = if b.sliding { &masks[si].1 } else { &masks[si].0 };
            let out = match mask {
                AttnMask::None => fast::scaled_dot_product_attention(&q, &keys, &values, self.attn_scale, None, None)?,
                AttnMask::Causal => super::sdpa::causal(&q, &keys, &values, self.attn_scale)?,
                AttnMask::Array(m) => fast::scaled_dot_product_attention(&q, &keys, &values, self.attn_scale, ScaledDotProductAttentionMask::Array(m), None)?,
            };
            outs.push(out.transpose_axes(&[0, 2, 1, 3])?.reshape(&[1, len, c.num_attention_heads * c.head_dim])?);
            start += len;
        }
        let out = if single { outs.pop().unwrap() } else { ops::concatenate(&outs, 1)? };
        b.o_proj.forward(&out)
    }

    pub fn eval_weights(&self) -> MlxResult<()> {
        let mut arrays: Vec<Array> = vec![self.norm.clone()];
        embedding_arrays(&self.embed_tokens, &mut arrays);
        if let Some(h) = &self.lm_head {
            linear_arrays(h, &mut arrays);
        }
        for b in &self.layers {
            arrays.extend([&b.input_layernorm, &b.post_attention_layernorm, &b.pre_feedforward_layernorm, &b.post_feedforward_layernorm, &b.q_norm, &b.k_norm].map(Clone::clone));
            for l in [&b.q_proj, &b.k_proj, &b.v_proj, &b.o_proj, &b.gate_proj, &b.up_proj, &b.down_proj] {
                linear_arrays(l, &mut arrays);
            }
        }
        mlx_rs::transforms::eval(arrays.iter())
    }
}

/// Gemma's RMSNorm scales by `1 + w` (computed in the weight's dtype, as mlx-lm does).
fn one_plus(w: &Array) -> EngineResult<Array> {
    let one = Array::from_f32(1.0).as_dtype(w.dtype()).and_then(|o| ops::add(&o, w));
    one.map_err(|e| EngineError::model_load(format!("norm setup failed: {}", e.what())))
}

/// x + y; in float16 the sum is taken in float32 and clipped to the float16 range (mlx-lm).
fn residual(x: &Array, y: &Array) -> MlxResult<Array> {
    if x.dtype() != Dtype::Float16 {
        return ops::add(x, y);
    }
    let sum = ops::add(&x.as_dtype(Dtype::Float32)?, &y.as_dtype(Dtype::Float32)?)?;
    ops::clip(&sum, (-65504.0f32, 65504.0f32))?.as_dtype(Dtype::Float16)
}

/// 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3))), constants as Python floats → dtype.
fn gelu_approx(x: &Array) -> MlxResult<Array> {
    let c = |v: f64| Array::from_f32(v as f32).as_dtype(x.dtype());
    let cube = ops::power(x, &c(3.0)?)?;
    let inner = ops::multiply(&c((2.0 / std::f64::consts::PI).sqrt())?, &ops::add(x, &ops::multiply(&c(0.044715)?, &cube)?)?)?;
    let t = ops::add(&c(1.0)?, &ops::tanh(&inner)?)?;
    ops::multiply(&ops::multiply(&c(0.5)?, x)?, &t)
}

fn load_block(c: &ModelConfig, w: &WeightMap, i: i32, sliding: bool) -> EngineResult<Block> {
    let q = c.quantization.as_ref();
    let p = format!("model.layers.{i}");
    let lin = |name: &str| Linear::load(w, &format!("{p}.{name}"), q, false);
    let norm = |name: &str| one_plus(&w.require(&format!("{p}.{name}.weight"))?);
    Ok(Block {
        input_layernorm: norm("input_layernorm")?,
        post_attention_layernorm: norm("post_attention_layernorm")?,
        pre_feedforward_layernorm: norm("pre_feedforward_layernorm")?,
        post_feedforward_layernorm: norm("post_feedforward_layernorm")?,
        q_proj: lin("self_attn.q_proj")?,
        k_proj: lin("self_attn.k_proj")?,
        v_proj: lin("self_attn.v_proj")?,
        o_proj: lin("self_attn.o_proj")?,
        q_norm: norm("self_attn.q_norm")?,
        k_norm: norm("self_attn.k_norm")?,
        gate_proj: lin("mlp.gate_proj")?,
        up_proj: lin("mlp.up_proj")?,
        down_proj: lin("mlp.down_proj")?,
        sliding,
    })
}

impl DecoderStack for Gemma3Model {
    fn hidden_states(&self, segs: &mut [Segment<'_>]) -> MlxResult<Array> {
        if segs.iter().any(|s| s.batch.is_some()) {
            // Sliding-window layers keep window-limited caches, which do not stack
            // (`CausalModel::supports_stacked_decode`); the scheduler never sends such rows.
            return Err(mlx_rs::error::Exception::custom("gemma3 rows cannot be stacked"));
        }
        let h = self.embed_tokens.lookup(&input_ids(segs)?)?;
        // mlx-lm multiplies by sqrt(hidden) rounded to bfloat16.
        let scale = Array::from_f32((self.config.hidden_size as f64).sqrt() as f32).as_dtype(Dtype::Bfloat16)?.as_dtype(h.dtype())?;
        let mut h = ops::multiply(&h, &scale)?;
        // Masks depend only on the cache state before the pass: one per (segment, layer kind).
        let masks = self.masks(segs)?;
        for (li, b) in self.layers.iter().enumerate() {
            h = self.block_forward(b, li, &h, segs, &masks)?;
        }
        Ok(h)
    }

    fn project(&self, h: &Array) -> MlxResult<Array> {
        output_head(h, &self.norm, self.config.rms_norm_eps, self.lm_head.as_ref(), &self.embed_tokens)
    }
}
