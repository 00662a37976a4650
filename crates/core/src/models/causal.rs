//! `CausalModel`: the architecture-agnostic handle the rest of the engine holds. Every
//! architecture implements the same batched interface (`forward_segments`: position-wise layers
//! over all tokens of all segments at once, rotary/cache/attention per segment), its own cache
//! layout (`new_cache`: full or window-limited per layer) and `eval_weights`.

use mlx_rs::Array;

use super::config::ModelConfig;
use super::gemma3::Gemma3Model;
use super::llama::LlamaModel;
use super::phi3::Phi3Model;
use super::qwen3_moe::MoeModel;
use crate::generation::batch_kv::BatchKv;
use crate::generation::kv_cache::KvCache;

type MlxResult<T> = Result<T, mlx_rs::error::Exception>;

/// One sequence's share of a batched forward pass.
pub struct Segment<'a> {
    /// The segment's token ids. For a pipelined decode row (`lazy` set) a placeholder of the
    /// right length whose values are ignored.
    pub tokens: &'a [u32],
    /// A decode row's input id still on the device ([1], any integer dtype): the previous step's
    /// sample, fed before the host has read it (pipelined decode), so the host never waits for
    /// the device between steps.
    pub lazy: Option<&'a Array>,
    /// That sequence's per-layer KV cache (appended to by this pass).
    pub cache: &'a mut [KvCache],
    /// Whether the caller needs logits for the segment's last token.
    pub logits: bool,
    /// Set for the stacked decode rows of a batch (`BatchKv`): one token per row, `lazy` holds
    /// their ids ([rows]), `cache` is empty, and the pass returns logits for EVERY row.
    pub batch: Option<&'a mut BatchKv>,
}

pub enum CausalModel {
    Llama(LlamaModel),
    Gemma3(Gemma3Model),
    Phi3(Phi3Model),
    Moe(MoeModel),
}

macro_rules! dispatch {
    ($self:ident, $m:ident => $e:expr) => {
        match $self {
            CausalModel::Llama($m) => $e,
            CausalModel::Gemma3($m) => $e,
            CausalModel::Phi3($m) => $e,
            CausalModel::Moe($m) => $e,
        }
    };
}

impl CausalModel {
    pub fn config(&self) -> &ModelConfig {
        dispatch!(self, m => &m.config)
    }

    pub fn new_cache(&self) -> Vec<KvCache> {
        dispatch!(self, m => m.new_cache())
    }

    /// See [`LlamaModel::forward_segments`]: logits [R, vocab] for the last token of each
    /// segment with `logits: true`, in order.
    pub fn forward_segments(&self, segs: &mut [Segment<'_>]) -> MlxResult<Array> {
        dispatch!(self, m => m.forward_segments(segs))
    }

    /// Whether decode rows of this model may be stacked into one `BatchKv` (a segment with
    /// `batch` set): every family whose attention layers keep every position.
    pub fn supports_stacked_decode(&self) -> bool {
        !matches!(self, CausalModel::Gemma3(_))
    }

    /// ids: int32 [1, L] → logits [1, 1, vocab] (`last_only`) or [1, L, vocab].
    pub fn forward(&self, ids: &Array, cache: &mut [KvCache], last_only: bool) -> MlxResult<Array> {
        dispatch!(self, m => m.forward(ids, cache, last_only))
    }

    /// One sequence's tokens through the model, logits for EVERY position: [L, vocab]
    /// (speculative decoding's verification pass scores all proposed tokens at once). With
    /// `lazy` (int32 [L], possibly not yet computed) the ids come from the device and `tokens`
    /// is a placeholder of the same length, so no host sync is needed to build the pass.
    pub fn forward_all(&self, tokens: &[u32], lazy: Option<&Array>, cache: &mut [KvCache]) -> MlxResult<Array> {
        let mut seg = [Segment { tokens, lazy, cache, logits: true, batch: None }];
        let logits = dispatch!(self, m => m.all_logits(&mut seg))?;
        let vocab = *logits.shape().last().unwrap();
        logits.reshape(&[tokens.len() as i32, vocab])
    }

    /// How mixture-of-experts layers run their experts from now on (tests and benchmarks
    /// compare the kernels); dense families have none and ignore it.
    pub fn set_moe_kernel(&mut self, kernel: super::moe::MoeKernel) {
        if let CausalModel::Moe(m) = self {
            m.set_moe_kernel(kernel);
        }
    }

    /// Forces every weight to be read now (MLX loads lazily).
    pub fn eval_weights(&self) -> MlxResult<()> {
        dispatch!(self, m => m.eval_weights())
    }
}

impl<'a> Segment<'a> {
    /// A segment of known token ids.
    pub fn ids(tokens: &'a [u32], cache: &'a mut [KvCache], logits: bool) -> Self {
        Segment { tokens, lazy: None, cache, logits, batch: None }
    }

    /// The stacked decode rows of `batch`, fed `ids` (int32 [rows], on the device or not);
    /// `placeholder` is any slice of `rows` tokens (only its length is read).
    pub fn stacked(placeholder: &'a [u32], ids: &'a Array, batch: &'a mut BatchKv) -> Self {
        Segment { tokens: placeholder, lazy: Some(ids), cache: &mut [], logits: true, batch: Some(batch) }
    }
}

/// The input ids of all segments, concatenated: int32 [1, T]. Host ids become one constant;
/// lazily fed ids (pipelined decode) are spliced in on the device.
pub(crate) fn input_ids(segs: &[Segment<'_>]) -> MlxResult<Array> {
    let total: i32 = segs.iter().map(|s| s.tokens.len() as i32).sum();
    if segs.iter().all(|s| s.lazy.is_none()) {
        let ids: Vec<i32> = segs.iter().flat_map(|s| s.tokens.iter().map(|&t| t as i32)).collect();
        return Ok(Array::from_slice(&ids, &[1, total]));
    }
    let mut parts = Vec::with_capacity(segs.len());
    for s in segs {
        match s.lazy {
            Some(id) => parts.push(id.as_dtype(mlx_rs::Dtype::Int32)?.reshape(&[-1])?),
            None => {
                let ids: Vec<i32> = s.tokens.iter().map(|&t| t as i32).collect();
                parts.push(Array::from_slice(&ids, &[ids.len() as i32]));
            }
        }
    }
    mlx_rs::ops::concatenate(&parts, 0)?.reshape(&[1, total])
}

/// What each family supplies — its layer stack and its output head; the single-sequence and
/// batched entry points built on them are the same for every family.
pub(crate) trait DecoderStack {
    /// Final hidden states [1, T, hidden] for all tokens of all segments (their caches appended).
    fn hidden_states(&self, segs: &mut [Segment<'_>]) -> MlxResult<Array>;

    /// Final norm and output head: [.., hidden] → logits [.., vocab].
    fn project(&self, h: &Array) -> MlxResult<Array>;

    /// ids: int32 [1, L] → logits [1, 1, vocab] of the last position (`last_only`) or [1, L, vocab].
    fn forward(&self, ids: &Array, cache: &mut [KvCache], last_only: bool) -> MlxResult<Array> {
        let tokens: Vec<u32> = ids.as_dtype(mlx_rs::Dtype::Uint32)?.as_slice::<u32>().to_vec();
        let mut seg = [Segment::ids(&tokens, cache, true)];
        let h = self.hidden_states(&mut seg)?;
        let h = if last_only { select_rows(&h, &seg)? } else { h };
        self.project(&h)
    }

    /// One pass over several sequences (continuous batching): position-wise layers over all
    /// tokens at once, rotary/cache/attention per segment; logits [R, vocab] for the last token
    /// of each segment with `logits: true`, in order.
    fn forward_segments(&self, segs: &mut [Segment<'_>]) -> MlxResult<Array> {
        let h = self.hidden_states(segs)?;
        segment_logits(&h, segs, |h| self.project(h))
    }

    /// Logits of every token of the segments, [1, T, vocab] (speculative verification).
    fn all_logits(&self, segs: &mut [Segment<'_>]) -> MlxResult<Array> {
        self.project(&self.hidden_states(segs)?)
    }
}

/// Row indices (into the concatenated token axis) of the segments' last tokens that want logits,
/// and the total token count.
pub(crate) fn logit_rows(segs: &[Segment<'_>]) -> (Vec<i32>, i32) {
    let mut last = Vec::new();
    let mut pos = 0i32;
    for s in segs.iter() {
        let start = pos;
        pos += s.tokens.len() as i32;
        if s.batch.is_some() {
            last.extend(start..pos);
        } else if s.logits {
            last.push(pos - 1);
        }
    }
    (last, pos)
}

/// Selects the rows of `h` [1, T, hidden] named by `logit_rows` → [1, R, hidden].
pub(crate) fn select_rows(h: &Array, segs: &[Segment<'_>]) -> MlxResult<Array> {
    use mlx_rs::ops::indexing::TryIndexOp;
    let (last, total) = logit_rows(segs);
    let rows = last.len() as i32;
    if rows == 1 && last[0] == total - 1 && segs.len() == 1 && segs[0].batch.is_none() {
        h.try_index((.., total - 1.., ..))
    } else {
        h.take_axis(&Array::from_slice(&last, &[rows]), 1)
    }
}

/// Logits [R, vocab] for the segments that want them: the selected rows of the final hidden
/// states `h` through the model's output head `project` (every family's `forward_segments` tail).
pub(crate) fn segment_logits(h: &Array, segs: &[Segment<'_>], project: impl FnOnce(&Array) -> MlxResult<Array>) -> MlxResult<Array> {
    let rows = logit_rows(segs).0.len() as i32;
    let logits = project(&select_rows(h, segs)?)?;
    let vocab = *logits.shape().last().unwrap();
    logits.reshape(&[rows, vocab])
}

/// The final RMSNorm and the output head: an untied `lm_head`, else the tied embedding.
pub(crate) fn output_head(h: &Array, norm: &Array, eps: f32, lm_head: Option<&super::linear::Linear>, embed: &super::linear::Embedding) -> MlxResult<Array> {
    output_projection(&mlx_rs::fast::rms_norm(h, Some(norm), eps)?, lm_head, embed)
}

/// The output projection alone (hidden states already through the final norm): an untied
/// `lm_head`, else the tied embedding.
pub(crate) fn output_projection(normed: &Array, lm_head: Option<&super::linear::Linear>, embed: &super::linear::Embedding) -> MlxResult<Array> {
    match lm_head {
        Some(head) => head.forward(normed),
        None => embed.as_linear(normed),
    }
}

/// Collects a linear layer's arrays (for `eval_weights`).
pub(crate) fn linear_arrays(l: &super::linear::Linear, out: &mut Vec<Array>) {
    use super::linear::Linear;
    match l {
        Linear::Dense { weight, weight_t, bias } => {
            out.extend([weight.clone(), weight_t.clone()]);
            out.extend(bias.iter().cloned());
        }
        Linear::Quantized { q, bias } => {
            out.extend([q.weight.clone(), q.scales.clone(), q.biases.clone()]);
            out.extend(bias.iter().cloned());
        }
    }
}

pub(crate) fn embedding_arrays(e: &super::linear::Embedding, out: &mut Vec<Array>) {
    use super::linear::Embedding;
    match e {
        Embedding::Dense { table, table_t } => out.extend([table.clone(), table_t.clone()]),
        Embedding::Quantized(q) => out.extend([q.weight.clone(), q.scales.clone(), q.biases.clone()]),
    }
}
