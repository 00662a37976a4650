//! Phi-3 decoder (model_type phi3: Phi-3 / Phi-3.5 mini and medium, Phi-4-mini): the Llama block
//! shape with FUSED projections — one `qkv_proj` ([q | k | v] rows) and one `gate_up_proj`
//! ([gate | up] rows) — so each runs as a single matmul, grouped-query attention with
//! head_dim = hidden / heads, optional partial rotary (`partial_rotary_factor`), and rotary
//! scaling default, linear or su/longrope (models/rope.rs).

use mlx_rs::fast;
use mlx_rs::{ops, Array};
use serde_json::Value;

use super::attention::{segment_attention, AttnSpec};
use super::linear::split_last;
use super::causal::{embedding_arrays, input_ids, linear_arrays, output_head, DecoderStack, Segment};
use super::config::ModelConfig;
use super::linear::{Embedding, Linear};
use super::rope::Rope;
use super::weights::WeightMap;
use super::activation::swiglu;
use crate::error::{EngineError, EngineResult};
use crate::generation::kv_cache::KvCache;

type MlxResult<T> = Result<T, mlx_rs::error::Exception>;

struct Block {
    input_layernorm: Array,
    post_attention_layernorm: Array,
    qkv_proj: Linear,
    o_proj: Linear,
    gate_up_proj: Linear,
    down_proj: Linear,
}

pub struct Phi3Model {
    pub config: ModelConfig,
    embed_tokens: Embedding,
    layers: Vec<Block>,
    norm: Array,
    lm_head: Option<Linear>,
    rope: Rope,
}

impl Phi3Model {
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
        let layers = (0..config.num_hidden_layers).map(|i| load_block(&config, w, i)).collect::<EngineResult<Vec<_>>>()?;
        let partial = config.raw.get("partial_rotary_factor").and_then(Value::as_f64).unwrap_or(1.0);
        if !(partial > 0.0 && partial <= 1.0) {
            return Err(EngineError::model_load(format!("config.json: partial_rotary_factor {partial} is not in (0, 1]")));
        }
        let rope_dims = (config.head_dim as f64 * partial) as i32;
        let rope = Rope::new(rope_dims, config.rope_theta, config.rope_traditional, &config.rope_scaling)
            .map_err(|e| EngineError::model_load(format!("rotary setup failed: {}", e.what())))?;
        Ok(Phi3Model { embed_tokens, layers, norm: w.require("model.norm.weight")?, lm_head, rope, config })
    }

    pub fn new_cache(&self) -> Vec<KvCache> {
        (0..self.layers.len()).map(|_| KvCache::new()).collect()
    }

    fn block_forward(&self, b: &Block, layer: usize, x: &Array, segs: &mut [Segment<'_>]) -> MlxResult<Array> {
        let c = &self.config;
        let normed = fast::rms_norm(x, Some(&b.input_layernorm), c.rms_norm_eps)?;
        let (nq, nkv) = (c.num_attention_heads * c.head_dim, c.num_key_value_heads * c.head_dim);
        let qkv = split_last(&b.qkv_proj.forward(&normed)?, &[nq, nq + nkv])?;
        let spec = AttnSpec::standard(c, &self.rope, None, None);
        let attn = segment_attention(&spec, layer, &qkv[0], &qkv[1], &qkv[2], segs)?;
        let h = ops::add(x, &b.o_proj.forward(&attn)?)?;
        let normed = fast::rms_norm(&h, Some(&b.post_attention_layernorm), c.rms_norm_eps)?;
        let gate_up = split_last(&b.gate_up_proj.forward(&normed)?, &[c.intermediate_size])?;
        let act = swiglu(&gate_up[0], &gate_up[1])?;
        ops::add(&h, &b.down_proj.forward(&act)?)
    }

    pub fn eval_weights(&self) -> MlxResult<()> {
        let mut arrays: Vec<Array> = vec![self.norm.clone()];
        embedding_arrays(&self.embed_tokens, &mut arrays);
        if let Some(h) = &self.lm_head {
            linear_arrays(h, &mut arrays);
        }
        for b in &self.layers {
            arrays.extend([b.input_layernorm.clone(), b.post_attention_layernorm.clone()]);
            for l in [&b.qkv_proj, &b.o_proj, &b.gate_up_proj, &b.down_proj] {
                linear_arrays(l, &mut arrays);
            }
        }
        mlx_rs::transforms::eval(arrays.iter())
    }
}

fn load_block(c: &ModelConfig, w: &WeightMap, i: i32) -> EngineResult<Block> {
    let q = c.quantization.as_ref();
    let p = format!("model.layers.{i}");
    let lin = |name: &str| Linear::load(w, &format!("{p}.{name}"), q, false);
    let block = Block {
        input_layernorm: w.require(&format!("{p}.input_layernorm.weight"))?,
        post_attention_layernorm: w.require(&format!("{p}.post_attention_layernorm.weight"))?,
        qkv_proj: lin("self_attn.qkv_proj")?,
        o_proj: lin("self_attn.o_proj")?,
        gate_up_proj: lin("mlp.gate_up_proj")?,
        down_proj: lin("mlp.down_proj")?,
    };
    // The fused projections must hold exactly [q | k | v] and [gate | up] rows.
    let qkv_rows = (c.num_attention_heads + 2 * c.num_key_value_heads) * c.head_dim;
    for (name, l, rows) in [("self_attn.qkv_proj", &block.qkv_proj, qkv_rows), ("mlp.gate_up_proj", &block.gate_up_proj, 2 * c.intermediate_size)] {
        if l.out_features() != rows {
            return Err(EngineError::model_load(format!("{p}.{name} has {} output rows, config.json implies {rows}", l.out_features()))
                .with_detail("tensor", format!("{p}.{name}.weight")));
        }
    }
    Ok(block)
}

impl DecoderStack for Phi3Model {
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
