//! Speculative decoding for one stream (spec §7.8, issue 5): a small draft model proposes `k`
//! tokens one at a time, the target scores the last accepted token plus all `k` proposals in ONE
//! forward pass, and the longest acceptable prefix is kept; both KV caches are rolled back
//! (`KvCache::trim`) past what was rejected. Every round emits between 1 and k+1 tokens.
//!
//! Lossless by construction:
//! * temperature 0: a proposal is accepted only when it equals the target's argmax at that
//!   position, and the round ends with the target's own argmax, so the ids are those of plain
//!   greedy decoding;
//! * temperature > 0: the standard speculative-sampling rule (Leviathan et al. / Chen et al.):
//!   accept proposal d with probability min(1, p(d)/q(d)); on rejection sample from
//!   norm(max(0, p − q)); when all are accepted, a bonus token from the target's next
//!   distribution. p and q are the target's and the draft's distributions after temperature,
//!   top-k, top-p and min-p (the same filtering the plain sampler applies), so the output
//!   distribution equals plain sampling from the target.
//!
//! Random draws come from a per-stream SplitMix64 seeded with the request's `seed` (a random
//! seed otherwise), so a seeded speculative request is reproducible. Requests with repetition /
//! presence / frequency penalties are decoded without speculation (the verification pass scores
//! all positions with one history) — see [`GenerationStream::enable_speculation`].

use std::rc::Rc;
use std::time::Instant;

use mlx_rs::ops::indexing::argmax_axis;
use mlx_rs::{ops, Array, Dtype};

use super::{GenerationStream, Step};
use crate::engine::step_trace;
use crate::error::EngineResult;
use crate::generation::kv_cache::KvCache;
use crate::generation::sampler::log_softmax;
use crate::models::Segment;
use crate::services::model_lifecycle::LoadedModel;

/// Proposal length when the request gives no `numDraftTokens`.
pub const DEFAULT_DRAFT_TOKENS: usize = 4;
/// On MLX's CUDA backend: there a verification pass costs about the same for 5 or 7 tokens (its
/// cost is per operation, not per token), so longer proposals pay off — measured on an H200 with
/// two draft/target pairs, k = 6 gave 1.13× and 1.32–1.36× plain decode where k = 4 gave 0.93×
/// and 0.79–0.91× (bench/RESULTS-gpu.md).
pub const DEFAULT_DRAFT_TOKENS_CUDA: usize = 6;

/// The proposal length used when the request gives none, for this process's device.
pub fn default_draft_tokens() -> usize {
    if crate::services::runtime_info::device() == "cuda" {
        DEFAULT_DRAFT_TOKENS_CUDA
    } else {
        DEFAULT_DRAFT_TOKENS
    }
}

/// Tokens per draft forward pass while the draft catches up with the prompt.
const DRAFT_CATCH_UP_CHUNK: usize = 512;

/// How often a greedy round hands its lazy proposals to the device (`async_eval`): after every
/// n-th draft pass; 0 = never (the round's one `eval` runs drafts and verification together).
/// Each hand-off ends a CUDA graph, whose launch costs host time, while the device would
/// otherwise idle until the round's graph is built. An A/B switch for the GPU bench
/// (`MLX_SERVING_DRAFT_ASYNC_EVERY`), 1 by default.
fn draft_async_every() -> usize {
    static EVERY: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *EVERY.get_or_init(|| std::env::var("MLX_SERVING_DRAFT_ASYNC_EVERY").ok().and_then(|v| v.parse().ok()).unwrap_or(1))
}

pub struct Speculation {
    draft: Rc<LoadedModel>,
    /// The draft's KV cache; it always holds `kv_tokens[..fed]` of the stream.
    cache: Vec<KvCache>,
    fed: usize,
    k: usize,
    proposed: u64,
    accepted: u64,
    rng: SplitMix64,
}

/// (draftTokensAccepted, draftTokensProposed) so far.
pub type SpecCounts = (u64, u64);

impl Speculation {
    pub fn counts(&self) -> SpecCounts {
        (self.accepted, self.proposed)
    }
}

impl GenerationStream {
    /// Turns on speculative decoding with `draft` proposing `k` tokens per round. Returns false
    /// (and leaves the stream on plain decoding, which gives the same output) when the request
    /// uses repetition/presence/frequency penalties.
    pub fn enable_speculation(&mut self, draft: Rc<LoadedModel>, k: usize) -> bool {
        if self.sampler.has_penalties() {
            return false;
        }
        let seed = self.req.sampling.seed.unwrap_or_else(random_seed);
        self.spec = Some(Speculation {
            cache: draft.model.new_cache(),
            draft,
            fed: 0,
            k: k.max(1),
            proposed: 0,
            accepted: 0,
            rng: SplitMix64(seed ^ 0x5DEE_CE66_D1CE_5EED),
        });
        true
    }

    /// The draft model's id while this stream decodes speculatively.
    pub fn draft_id(&self) -> Option<&str> {
        self.spec.as_ref().map(|s| s.draft.id.as_str())
    }

    /// True when the next step is a speculative round (prompt fully fed, a draft attached).
    pub fn is_speculating(&self) -> bool {
        self.spec.is_some() && !self.is_prefilling()
    }

    pub fn spec_counts(&self) -> Option<SpecCounts> {
        self.spec.as_ref().map(Speculation::counts)
    }

    /// One speculative round: draft proposals, one target verification pass, rollback, then the
    /// accepted tokens (plus the correction/bonus token) go through the usual token handling in
    /// order, so stop sequences, stop ids, EOS and maxTokens end the stream exactly where plain
    /// decoding would.
    pub fn speculative_step(&mut self) -> EngineResult<Step> {
        let mut spec = self.spec.take().expect("speculative_step without a draft");
        let result = self.round(&mut spec);
        self.spec = Some(spec);
        let emitted = result?;
        let t = self.kv_tokens.len() - (emitted.len() - 1) - 1; // cached tokens before the round
        for (j, &(tok, lp)) in emitted.iter().enumerate() {
            if let Step::Done = self.accept(tok, lp) {
                // Ended at emitted[j]: the cache keeps only what precedes it (prompt-prefix reuse).
                let keep = t + 1 + j;
                let extra = self.kv_tokens.len() - keep;
                for c in self.cache.iter_mut() {
                    c.trim(extra as i32);
                }
                self.kv_tokens.truncate(keep);
                return Ok(Step::Done);
            }
        }
        Ok(Step::Continue)
    }

    /// Proposes, verifies and rolls back; returns the tokens to emit with their logprobs
    /// (accepted proposals, then one target token). Afterwards `kv_tokens` and the target cache
    /// hold the previous tokens plus the last sampled token and the accepted proposals.
    fn round(&mut self, spec: &mut Speculation) -> EngineResult<Vec<(u32, f32)>> {
        let y = self.last_token.expect("decoding without a sampled token");
        let remaining = self.req.max_tokens.saturating_sub(self.generated) as usize;
        // Never propose past maxTokens: a round emits at most k + 1 tokens.
        let k = spec.k.min(remaining.saturating_sub(1));
        let greedy = self.sampler.params().temperature <= 0.0;
        let t = self.kv_tokens.len();

        // 1. Draft proposals (the draft first catches up with everything it has not seen).
        //    Greedy proposals stay on the device: each draft pass is fed the previous pass's
        //    argmax lazily, and the verification pass below is built on them too, so the host
        //    waits for the device once per round instead of once per proposal.
        let clock = step_trace::enabled().then(Instant::now);
        let mut drafts: Vec<u32> = Vec::with_capacity(k);
        let mut lazy_drafts: Vec<Array> = Vec::with_capacity(k);
        let mut q_rows: Vec<Vec<f64>> = Vec::with_capacity(k);
        if k > 0 {
            let mut input: Vec<u32> = self.kv_tokens[spec.fed..].to_vec();
            input.push(y);
            while input.len() > DRAFT_CATCH_UP_CHUNK {
                let rest = input.split_off(DRAFT_CATCH_UP_CHUNK);
                spec.draft.model.forward_segments(&mut [Segment::ids(&input, &mut spec.cache, true)])?;
                spec.fed += input.len();
                input = rest;
            }
            for i in 0..k {
                let logits = match lazy_drafts.last() {
                    Some(prev) => spec.draft.model.forward_segments(&mut [Segment { tokens: &[0], lazy: Some(prev), cache: &mut spec.cache, logits: true, batch: None }])?,
                    None => spec.draft.model.forward_segments(&mut [Segment::ids(&input, &mut spec.cache, true)])?,
                };
                spec.fed += if i == 0 { input.len() } else { 1 };
                if greedy {
                    let d = argmax_axis(&logits, -1, None)?.as_dtype(Dtype::Int32)?.reshape(&[1])?;
                    // Hand this proposal to the device now: it computes while the host builds
                    // the next draft pass and the verification pass (otherwise the device would
                    // idle until the whole round's graph was built).
                    let every = draft_async_every();
                    if every > 0 && (i + 1) % every == 0 {
                        mlx_rs::transforms::async_eval([&d])?;
                    }
                    lazy_drafts.push(d);
                } else {
                    let f = self.sampler.filtered_logprobs(&logits)?;
                    f.eval()?;
                    let q = probs(f.as_slice::<f32>());
                    let d = sample(&q, spec.rng.next_f64());
                    q_rows.push(q);
                    drafts.push(d);
                    input = vec![d];
                }
            }
        }

        let drafted = clock.map(|c| c.elapsed());

        // 2. Target verification: y and every proposal in one pass, logits for each position.
        let placeholder = vec![0u32; k + 1];
        let verify_ids = if greedy {
            let mut parts = vec![Array::from_slice(&[y as i32], &[1])];
            parts.extend(lazy_drafts.iter().cloned());
            Some(ops::concatenate(&parts, 0)?)
        } else {
            None
        };
        let verify: Vec<u32> = if greedy { placeholder } else { std::iter::once(y).chain(drafts.iter().copied()).collect() };
        let logits = self.model.model.forward_all(&verify, verify_ids.as_ref(), &mut self.cache)?.as_dtype(Dtype::Float32)?;

        // 3. Acceptance.
        let verified;
        let (n, emitted): (usize, Vec<(u32, f32)>) = if greedy {
            let ids = argmax_axis(&logits, -1, None)?.as_dtype(Dtype::Uint32)?;
            let lps = ops::max_axis(&log_softmax(&logits)?, -1, false)?;
            let fed = verify_ids.expect("greedy rounds verify device ids");
            verified = clock.map(|c| c.elapsed());
            mlx_rs::transforms::eval([&ids, &lps, &fed])?;
            drafts = fed.as_slice::<i32>()[1..].iter().map(|&d| d as u32).collect();
            let (ids, lps) = (ids.as_slice::<u32>(), lps.as_slice::<f32>());
            let n = drafts.iter().zip(ids).take_while(|(d, t)| d == t).count();
            (n, (0..=n).map(|i| (ids[i], lps[i])).collect())
        } else {
            let f = self.sampler.filtered_logprobs(&logits)?;
            verified = clock.map(|c| c.elapsed());
            f.eval()?;
            let all = f.as_slice::<f32>();
            let vocab = all.len() / (k + 1);
            let rows: Vec<&[f32]> = all.chunks(vocab).collect();
            let p_rows: Vec<Vec<f64>> = rows.iter().map(|r| probs(r)).collect();
            let (n, ids) = accept_proposals(&p_rows, &q_rows, &drafts, &mut spec.rng);
            (n, ids.iter().enumerate().map(|(i, &id)| (id, rows[i][id as usize])).collect())
        };
        spec.proposed += k as u64;
        spec.accepted += n as u64;
        let waited = clock.map(|c| c.elapsed());

        // 4. Rollback: the target keeps y + the n accepted proposals; the draft keeps what of
        //    y + d1..d(k-1) survived (an accepted last proposal is fed next round).
        for c in self.cache.iter_mut() {
            c.trim((k - n) as i32);
        }
        if k > 0 {
            let keep = t + 1 + n.min(k - 1);
            for c in spec.cache.iter_mut() {
                c.trim((spec.fed - keep) as i32);
            }
            spec.fed = keep;
        }
        self.kv_tokens.push(y);
        self.kv_tokens.extend_from_slice(&drafts[..n]);
        if let (Some(c), Some(d), Some(v), Some(w)) = (clock, drafted, verified, waited) {
            step_trace::record_round(k, n, [d, v - d, w - v, c.elapsed() - w]);
        }
        Ok(emitted)
    }
}

/// The speculative-sampling acceptance rule. `p_rows`: the target's k+1 distributions (after
/// the last accepted token and after each proposal), `q_rows`: the draft's k distributions the
/// proposals were drawn from. Returns the number of accepted proposals n and the n accepted ids
/// followed by one id drawn from the target (residual on rejection, bonus when all accepted).
pub(crate) fn accept_proposals(p_rows: &[Vec<f64>], q_rows: &[Vec<f64>], drafts: &[u32], rng: &mut SplitMix64) -> (usize, Vec<u32>) {
    let mut out = Vec::with_capacity(drafts.len() + 1);
    for (i, &d) in drafts.iter().enumerate() {
        let (p, q) = (&p_rows[i], &q_rows[i]);
        let (pd, qd) = (p[d as usize], q[d as usize]);
        // u < min(1, p/q)  <=>  u·q < p  (q(d) > 0: d was drawn from q)
        if rng.next_f64() * qd < pd {
            out.push(d);
            continue;
        }
        let residual: Vec<f64> = p.iter().zip(q).map(|(a, b)| (a - b).max(0.0)).collect();
        let tok = if residual.iter().sum::<f64>() > 0.0 { sample(&residual, rng.next_f64()) } else { sample(p, rng.next_f64()) };
        out.push(tok);
        return (i, out);
    }
    out.push(sample(&p_rows[drafts.len()], rng.next_f64()));
    (drafts.len(), out)
}

/// Normalized probabilities from (possibly -inf-masked) log-probabilities.
fn probs(logprobs: &[f32]) -> Vec<f64> {
    let m = logprobs.iter().copied().filter(|x| x.is_finite()).fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f64> = logprobs.iter().map(|&x| if x.is_finite() { ((x - m) as f64).exp() } else { 0.0 }).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|x| x / s).collect()
}

/// Inverse-CDF draw from unnormalized weights `w` with a uniform `u` in [0, 1).
fn sample(w: &[f64], u: f64) -> u32 {
    let total: f64 = w.iter().sum();
    let target = u * total;
    let mut acc = 0.0;
    let mut last = 0;
    for (i, &x) in w.iter().enumerate() {
        if x > 0.0 {
            acc += x;
            last = i;
            if acc > target {
                return i as u32;
            }
        }
    }
    last as u32
}

/// SplitMix64: small, fast, good enough for acceptance tests and sampling; seeded per stream.
pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tv(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f64>() / 2.0
    }

    /// The acceptance rule alone, on fixed context-free distributions: the first emitted token
    /// follows p0 and, when a second one is emitted, it follows p1 — whatever q is.
    #[test]
    fn acceptance_rule_preserves_the_target_distribution() {
        let p0 = vec![0.5, 0.2, 0.15, 0.1, 0.05, 0.0];
        let p1 = vec![0.05, 0.05, 0.3, 0.3, 0.2, 0.1];
        let p2 = vec![1.0 / 6.0; 6];
        let q = vec![0.1, 0.4, 0.05, 0.05, 0.2, 0.2]; // disagrees a lot, and q > 0 where p0 = 0
        let q_cum = q.clone();
        let mut rng = SplitMix64(42);
        let n = 200_000;
        let (mut first, mut second, mut seconds) = (vec![0.0; 6], vec![0.0; 6], 0.0);
        let mut accepted = 0usize;
        for _ in 0..n {
            let d: Vec<u32> = (0..2).map(|_| sample(&q_cum, rng.next_f64())).collect();
            let (na, out) = accept_proposals(&[p0.clone(), p1.clone(), p2.clone()], &[q.clone(), q.clone()], &d, &mut rng);
            assert_eq!(out.len(), na + 1);
            accepted += na;
            first[out[0] as usize] += 1.0;
            if out.len() > 1 {
                second[out[1] as usize] += 1.0;
                seconds += 1.0;
            }
        }
        let first: Vec<f64> = first.iter().map(|c| c / n as f64).collect();
        let second: Vec<f64> = second.iter().map(|c| c / seconds).collect();
        assert!(tv(&first, &p0) < 0.006, "first {first:?} vs {p0:?}");
        assert!(tv(&second, &p1) < 0.01, "second {second:?} vs {p1:?}");
        assert_eq!(first[5], 0.0, "a token the target excludes is never emitted");
        // expected acceptance of the first proposal = sum min(p0, q) = 0.1+0.2+0.05+0.05+0.05 = 0.45
        assert!(accepted > 0 && accepted < 2 * n);
    }

    #[test]
    fn identical_distributions_accept_everything() {
        let p = vec![0.25, 0.25, 0.5];
        let mut rng = SplitMix64(7);
        for _ in 0..1000 {
            let d = vec![sample(&p, rng.next_f64()), sample(&p, rng.next_f64())];
            let (n, out) = accept_proposals(&[p.clone(), p.clone(), p.clone()], &[p.clone(), p.clone()], &d, &mut rng);
            assert_eq!(n, 2);
            assert_eq!(&out[..2], &d[..]);
        }
    }

    #[test]
    fn probs_normalize_and_mask() {
        let p = probs(&[0.0, f32::NEG_INFINITY, 0.0]);
        assert_eq!(p, vec![0.5, 0.0, 0.5]);
        assert_eq!(sample(&p, 0.0), 0);
        assert_eq!(sample(&p, 0.99), 2);
    }
}
