//! Token selection from logits, on the device: repetition / presence / frequency penalties,
//! temperature, top-k, top-p, min-p and seeded categorical sampling. Temperature 0 is greedy
//! argmax (deterministic regardless of seed). A seeded request owns its RNG key, so concurrent
//! requests never disturb each other's random streams.

use std::collections::HashMap;

use mlx_rs::ops::indexing::{argmax_axis, put_along_axis};
use mlx_rs::{ops, random, Array};

type MlxResult<T> = Result<T, mlx_rs::error::Exception>;

#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    pub temperature: f32,
    pub top_p: f32,
    pub top_k: u32,
    pub min_p: f32,
    pub repetition_penalty: f32,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    pub seed: Option<u64>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams { temperature: 0.0, top_p: 1.0, top_k: 0, min_p: 0.0, repetition_penalty: 1.0, presence_penalty: 0.0, frequency_penalty: 0.0, seed: None }
    }
}

pub struct Sampler {
    params: SamplingParams,
    key: Option<Array>,
    /// Ids seen so far (prompt + generated): the repetition penalty's domain.
    seen: Vec<u32>,
    /// Generated ids and their counts: the presence/frequency penalties' domain.
    generated: HashMap<u32, u32>,
}

pub struct Sampled {
    pub token: u32,
    pub logprob: f32,
}

impl Sampler {
    pub fn new(params: SamplingParams, prompt: &[u32]) -> MlxResult<Self> {
        let key = match params.seed {
            Some(seed) if params.temperature > 0.0 => Some(random::key(seed)?),
            _ => None,
        };
        let mut seen: Vec<u32> = prompt.to_vec();
        seen.sort_unstable();
        seen.dedup();
        Ok(Sampler { params, key, seen, generated: HashMap::new() })
    }

    /// logits: [vocab] (any float dtype). Returns the chosen id and its log-probability.
    pub fn sample(&mut self, logits: &Array, allowed: Option<&Array>) -> MlxResult<Sampled> {
        let (token, lp) = self.sample_lazy(logits, allowed)?;
        mlx_rs::transforms::eval([&token, &lp])?;
        let sampled = Sampled { token: token.item_cast::<u32>(), logprob: lp.item_cast::<f32>() };
        self.commit(sampled.token);
        Ok(sampled)
    }

    /// Builds (does not evaluate) the chosen id and its log-probability, so that the rows of a
    /// batch are evaluated together; call [`Self::commit`] with the evaluated id afterwards.
    /// `allowed` (structured output): a bool [vocab] mask; disallowed ids get -inf before
    /// penalties, temperature and filters, so every sampling mode draws only allowed ids.
    pub fn sample_lazy(&mut self, logits: &Array, allowed: Option<&Array>) -> MlxResult<(Array, Array)> {
        let mut logits = logits.as_dtype(mlx_rs::Dtype::Float32)?;
        if let Some(mask) = allowed {
            logits = ops::select(mask, &logits, &Array::from_f32(f32::NEG_INFINITY))?;
        }
        let logits = self.penalized(&logits)?;
        let p = &self.params;
        let (token, logprobs) = if p.temperature <= 0.0 {
            (argmax_axis(&logits, -1, None)?, log_softmax(&logits)?)
        } else {
            let scaled = ops::divide(&logits, &Array::from_f32(p.temperature))?;
            let logprobs = log_softmax(&scaled)?;
            let filtered = self.filtered(&logprobs)?;
            let key = match self.key.take() {
                Some(k) => {
                    let (next, sub) = random::split(&k, 2)?;
                    self.key = Some(next);
                    Some(sub)
                }
                None => None,
            };
            (random::categorical(&filtered, -1, None, key.as_ref())?, logprobs)
        };
        let lp = logprobs.take_axis(&token, -1)?;
        Ok((token, lp))
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// True when a penalty makes the distribution depend on the sampled history (speculative
    /// decoding falls back to plain decoding then: its verification pass scores all proposed
    /// positions at once with one history).
    pub fn has_penalties(&self) -> bool {
        let p = &self.params;
        (p.repetition_penalty > 0.0 && p.repetition_penalty != 1.0) || p.presence_penalty != 0.0 || p.frequency_penalty != 0.0
    }

    /// Temperature-scaled log-probabilities with top-k / top-p / min-p applied (masked → -inf),
    /// for logits [.., vocab] (rows independent). Sampling from `softmax` of this is what
    /// [`Self::sample_lazy`] does for temperature > 0 without penalties; an unmasked entry equals
    /// the logprob `sample_lazy` reports for that id.
    pub fn filtered_logprobs(&self, logits: &Array) -> MlxResult<Array> {
        let scaled = ops::divide(&logits.as_dtype(mlx_rs::Dtype::Float32)?, &Array::from_f32(self.params.temperature))?;
        self.filtered(&log_softmax(&scaled)?)
    }

    /// Records a sampled id for the penalties' history.
    pub fn commit(&mut self, token: u32) {
        self.record(token);
    }

    fn record(&mut self, token: u32) {
        if let Err(pos) = self.seen.binary_search(&token) {
            self.seen.insert(pos, token);
        }
        *self.generated.entry(token).or_insert(0) += 1;
    }

    fn penalized(&self, logits: &Array) -> MlxResult<Array> {
        let p = &self.params;
        let mut logits = logits.clone();
        // A penalty of 0 would divide positive logits by zero; the spec admits it (≥ 0), so it
        // is treated like 1 (off) rather than producing infinities.
        if p.repetition_penalty > 0.0 && p.repetition_penalty != 1.0 && !self.seen.is_empty() {
            let idx = ids_array(&self.seen);
            let vals = logits.take_axis(&idx, -1)?;
            let rp = Array::from_f32(p.repetition_penalty);
            let new = ops::select(&ops::gt(&vals, &Array::from_f32(0.0))?, &ops::divide(&vals, &rp)?, &ops::multiply(&vals, &rp)?)?;
            logits = put_along_axis(&logits, &idx, &new, -1)?;
        }
        if (p.presence_penalty != 0.0 || p.frequency_penalty != 0.0) && !self.generated.is_empty() {
            let mut ids: Vec<u32> = self.generated.keys().copied().collect();
            ids.sort_unstable();
            let subtract: Vec<f32> = ids
                .iter()
                .map(|id| p.presence_penalty + p.frequency_penalty * self.generated[id] as f32)
                .collect();
            let idx = ids_array(&ids);
            let vals = logits.take_axis(&idx, -1)?;
            let new = ops::subtract(&vals, &Array::from_slice(&subtract, &[subtract.len() as i32]))?;
            logits = put_along_axis(&logits, &idx, &new, -1)?;
        }
        Ok(logits)
    }

    /// Applies top-k, top-p and min-p to temperature-scaled log-probabilities (masked → -inf).
    fn filtered(&self, logprobs: &Array) -> MlxResult<Array> {
        let p = &self.params;
        let neg_inf = Array::from_f32(f32::NEG_INFINITY);
        let vocab = logprobs.shape()[logprobs.ndim() - 1];
        let mut out = logprobs.clone();
        if p.top_k > 0 && (p.top_k as i32) < vocab {
            let kth = ops::min_axis(&ops::indexing::topk_axis(&out, p.top_k as i32, -1)?, -1, true)?;
            out = ops::select(&ops::lt(&out, &kth)?, &neg_inf, &out)?;
        }
        if p.min_p > 0.0 {
            // prob < min_p * max_prob  <=>  logprob < log(min_p) + max_logprob
            let max = ops::max_axis(&out, -1, true)?;
            let threshold = ops::add(&max, &Array::from_f32(p.min_p.ln()))?;
            out = ops::select(&ops::lt(&out, &threshold)?, &neg_inf, &out)?;
        }
        if p.top_p < 1.0 {
            let order = ops::argsort_axis(&ops::negative(&out)?, -1)?;
            let sorted_probs = ops::exp(&out.take_along_axis(&order, -1)?)?;
            let cum = ops::cumsum(&sorted_probs, -1, None, None)?;
            // keep a token while the mass before it is below top_p (the first is always kept)
            let keep_sorted = ops::lt(&ops::subtract(&cum, &sorted_probs)?, &Array::from_f32(p.top_p))?;
            let inverse = ops::argsort_axis(&order, -1)?;
            let keep = keep_sorted.take_along_axis(&inverse, -1)?;
            out = ops::select(&keep, &out, &neg_inf)?;
        }
        Ok(out)
    }
}

fn ids_array(ids: &[u32]) -> Array {
    let v: Vec<i32> = ids.iter().map(|&i| i as i32).collect();
    Array::from_slice(&v, &[v.len() as i32])
}

/// Greedy sampling of many rows at once (the stacked decode rows of a batch, all plain greedy):
/// logits [rows, vocab] → ids [rows] (uint32) and their log-probabilities [rows] (f32), the
/// same ids [`Sampler::sample_lazy`] gives each row at temperature 0 (logprobs equal up to rounding).
pub(crate) fn greedy_rows(logits: &Array) -> MlxResult<(Array, Array)> {
    let logits = logits.as_dtype(mlx_rs::Dtype::Float32)?;
    let tokens = argmax_axis(&logits, -1, None)?;
    let rows = tokens.shape()[0];
    let logprobs = log_softmax(&logits)?.take_along_axis(&tokens.reshape(&[rows, 1])?, -1)?.reshape(&[rows])?;
    Ok((tokens, logprobs))
}

pub(crate) fn log_softmax(x: &Array) -> MlxResult<Array> {
    ops::subtract(x, &ops::logsumexp_axis(x, -1, true)?)
}
