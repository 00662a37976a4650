//! Structured output (spec §7.7, DESIGN decision 7): JSON-schema constrained decoding with
//! llguidance. This module owns the grammar side only and never touches MLX: it compiles a
//! schema against the model's tokenizer, says which token ids may come next (a mask over the
//! model's vocabulary) and advances the grammar by the token actually sampled. The sampler
//! applies the mask to the logits on the device; `mask_worker` runs this off the decode thread.
//!
//! The tokenizer side (llguidance's `TokEnv`: the token trie with byte-fallback / byte-level
//! decoding and special tokens, via `toktrie_hf_tokenizers`, plus the parser factory's token
//! slices) is expensive to build, so it is built once per loaded model, on the first structured
//! request, and shared by that model's streams (`GuidanceCache`).

use std::cell::OnceCell;
use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::{Matcher, ParserFactory};
use serde_json::Value;
use toktrie_hf_tokenizers::ByteTokenizer;

use crate::error::{EngineError, EngineResult, ErrorCode};
use crate::params::StructuredOutput;
use crate::text::TextTokenizer;

/// `outlines.max_schema_size_bytes` (spec §11): larger schemas are refused before compiling,
/// which also bounds compile time.
pub const MAX_SCHEMA_BYTES: usize = 32768;

fn guidance_error(message: impl Into<String>) -> EngineError {
    EngineError::new(ErrorCode::GuidanceError, message)
}

/// llguidance's tokenizer-dependent state for one model: built once, shared by its streams.
pub struct Guidance {
    factory: ParserFactory,
    /// Mask length: the model's logits width (≥ the tokenizer's vocabulary; the extra ids are
    /// padding tokens the grammar never allows).
    vocab: usize,
    eos: Vec<u32>,
}

impl Guidance {
    /// Builds the token trie from `tokenizer` for a model whose logits have `model_vocab` entries.
    pub fn new(tokenizer: &TextTokenizer, model_vocab: usize) -> EngineResult<Self> {
        let setup = |e: String| guidance_error(format!("Failed to prepare the tokenizer for structured output: {e}"));
        let mut bt = ByteTokenizer::from_tokenizer(tokenizer.inner().clone()).map_err(|e| setup(e.to_string()))?;
        let tok_vocab = tokenizer.vocab_size();
        // Our EOS ids (tokenizer_config ∪ generation_config ∪ config.json) are the grammar's
        // EOS set, so "EOS allowed" means exactly the ids that end a stream as `eos`.
        let eos: Vec<u32> = tokenizer.eos_ids().iter().copied().filter(|&id| (id as usize) < tok_vocab).collect();
        if !eos.is_empty() {
            bt.set_eos_tokens(&eos);
        }
        let eos = bt.eos_tokens();
        let vocab = model_vocab.max(tok_vocab);
        let env = bt.into_tok_env(Some(vocab)).map_err(|e| setup(e.to_string()))?;
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| setup(e.to_string()))?;
        // Grammar warnings are not for stderr of the host process.
        factory.quiet();
        Ok(Guidance { factory, vocab, eos })
    }

    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// The ids that end generation when the grammar allows EOS.
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos
    }
}

/// A lazily built, per-model `Guidance` (the engine thread is its only user).
#[derive(Default)]
pub struct GuidanceCache(OnceCell<Result<Arc<Guidance>, EngineError>>);

impl GuidanceCache {
    pub fn get(&self, tokenizer: &TextTokenizer, model_vocab: usize) -> EngineResult<Arc<Guidance>> {
        self.0.get_or_init(|| Guidance::new(tokenizer, model_vocab).map(Arc::new)).clone()
    }
}

/// Which ids may be sampled next, one entry per logits column.
pub struct TokenMask {
    pub allowed: Vec<bool>,
    /// Only EOS ids are allowed: the grammar is complete and nothing may follow.
    pub only_eos: bool,
}

/// One request's grammar state.
pub struct JsonConstraint {
    matcher: Matcher,
    guidance: Arc<Guidance>,
}

impl JsonConstraint {
    /// Compiles `schema` for a model using `tokenizer` (builds the tokenizer state afresh; the
    /// engine shares it per model through `GuidanceCache` and `with_guidance`).
    pub fn new(schema: &Value, tokenizer: &TextTokenizer) -> EngineResult<Self> {
        Self::with_guidance(schema, Arc::new(Guidance::new(tokenizer, tokenizer.vocab_size())?))
    }

    /// The request's `structured` field: JSON only (`yaml` is refused, spec §7.7). `guidance`
    /// supplies the model's (cached) tokenizer state; it is not built for a refused request.
    pub fn from_structured(s: &StructuredOutput, guidance: impl FnOnce() -> EngineResult<Arc<Guidance>>) -> EngineResult<Self> {
        if s.format != "json" {
            return Err(guidance_error(format!("Structured output format '{}' is not supported; use 'json'", s.format)));
        }
        Self::with_guidance(&s.schema, guidance()?)
    }

    pub fn with_guidance(schema: &Value, guidance: Arc<Guidance>) -> EngineResult<Self> {
        let size = serde_json::to_string(schema).map(|s| s.len()).unwrap_or(usize::MAX);
        if size > MAX_SCHEMA_BYTES {
            return Err(guidance_error(format!("Schema size {size} bytes exceeds the maximum of {MAX_SCHEMA_BYTES} bytes")));
        }
        let grammar = TopLevelGrammar::from_json_schema(with_compact_whitespace(schema));
        let parser = guidance.factory.create_parser(grammar).map_err(|e| guidance_error(format!("Invalid JSON schema: {e}")))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(guidance_error(format!("Invalid JSON schema: {e}")));
        }
        Ok(JsonConstraint { matcher, guidance })
    }

    /// The mask for the next token. An error means the grammar cannot continue (an internal
    /// inconsistency, or limits llguidance enforces per step).
    pub fn compute_mask(&mut self) -> EngineResult<TokenMask> {
        let vob = self.matcher.compute_mask().map_err(|e| self.step_error(e))?;
        let vocab = self.guidance.vocab;
        let mut allowed = vec![false; vocab];
        let mut only_eos = true;
        vob.iter_set_entries(|id| {
            if id < vocab {
                allowed[id] = true;
                only_eos &= self.guidance.eos.contains(&(id as u32));
            }
        });
        Ok(TokenMask { allowed, only_eos })
    }

    /// Advances the grammar by the sampled token.
    pub fn commit(&mut self, token: u32) -> EngineResult<()> {
        self.matcher.consume_token(token).map_err(|e| self.step_error(e))
    }

    /// The grammar is complete and admits nothing more.
    pub fn is_finished(&self) -> bool {
        self.matcher.is_stopped()
    }

    /// The text so far is a complete document (EOS would be allowed now).
    pub fn eos_allowed(&mut self) -> bool {
        self.matcher.is_accepting().unwrap_or(false)
    }

    pub fn guidance(&self) -> &Arc<Guidance> {
        &self.guidance
    }

    fn step_error(&self, e: impl std::fmt::Display) -> EngineError {
        let detail = self.matcher.get_error().unwrap_or_else(|| e.to_string());
        guidance_error(format!("Structured output failed: {detail}"))
    }
}

/// Compact JSON (no whitespace between tokens) unless the schema sets llguidance's own
/// `x-guidance` options: free whitespace lets a model pad forever instead of closing the document.
fn with_compact_whitespace(schema: &Value) -> Value {
    let mut s = schema.clone();
    if let Some(obj) = s.as_object_mut() {
        obj.entry("x-guidance").or_insert_with(|| serde_json::json!({"whitespace_flexible": false}));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::test_fixtures::{byte_level_json, model_dir, sentencepiece_json};
    use serde_json::json;

    fn tokenizer(tok: Value, eos: &str) -> TextTokenizer {
        let cfg = json!({"eos_token": eos});
        TextTokenizer::from_dir(&model_dir(&[("tokenizer.json", &tok), ("tokenizer_config.json", &cfg)])).unwrap()
    }

    /// Feeds the tokenization of a valid document token by token: each id must be in the mask,
    /// specials never are, EOS only once the document is complete.
    fn walk(tok: &TextTokenizer, schema: Value, doc: &str) {
        let mut c = JsonConstraint::new(&schema, tok).unwrap();
        let mut ids = tok.encode(doc, false).unwrap();
        // SentencePiece prepends '▁' to the text; the trie's tokenizer does not (see ByteTokenizer).
        if tok.id_to_token(ids[0]).as_deref() == Some("▁") {
            ids.remove(0);
        }
        let eos = tok.eos_ids()[0];
        assert!(ids.iter().any(|&i| tok.id_to_token(i).is_some_and(|t| t.starts_with("<0x") || t.len() < 3)), "doc exercises byte tokens: {ids:?}");
        for (step, &id) in ids.iter().enumerate() {
            assert!(!c.is_finished());
            let mask = c.compute_mask().unwrap();
            assert!(mask.allowed[id as usize], "step {step}: {:?} not allowed", tok.id_to_token(id));
            assert!(!mask.allowed[eos as usize] && !mask.only_eos, "step {step}: EOS allowed too early");
            assert!((0..3).all(|s| s == eos || !mask.allowed[s as usize]), "special tokens are never text");
            c.commit(id).unwrap();
        }
        assert!(c.eos_allowed());
        assert!(c.is_finished() || c.compute_mask().unwrap().only_eos, "the document is complete");
    }

    const SCHEMA: &str = r#"{"type": "object", "properties": {"city": {"type": "string"}, "n": {"type": "integer"}},
                             "required": ["city", "n"], "additionalProperties": false}"#;

    #[test]
    fn byte_level_vocab_with_partial_utf8_tokens() {
        let tok = tokenizer(byte_level_json(), "<|im_end|>");
        walk(&tok, serde_json::from_str(SCHEMA).unwrap(), r#"{"city":"Hello world café 你好 😀","n":42}"#);
    }

    #[test]
    fn sentencepiece_vocab_with_byte_fallback() {
        let tok = tokenizer(sentencepiece_json(false), "</s>");
        walk(&tok, serde_json::from_str(SCHEMA).unwrap(), r#"{"city":"Hello café 你好","n":7}"#);
    }

    #[test]
    fn mask_is_padded_to_the_model_vocabulary_and_first_step_is_an_opening_brace() {
        let tok = tokenizer(byte_level_json(), "<|im_end|>");
        let g = Arc::new(Guidance::new(&tok, tok.vocab_size() + 64).unwrap());
        let mut c = JsonConstraint::with_guidance(&serde_json::from_str(SCHEMA).unwrap(), g).unwrap();
        let mask = c.compute_mask().unwrap();
        assert_eq!(mask.allowed.len(), tok.vocab_size() + 64);
        assert!(!mask.allowed[tok.vocab_size()..].iter().any(|&a| a), "padding ids are never allowed");
        let allowed: Vec<String> = (0..tok.vocab_size() as u32).filter(|&i| mask.allowed[i as usize]).map(|i| tok.decode(&[i], false).unwrap()).collect();
        assert!(allowed.iter().all(|t| "{\"city\"".starts_with(t.as_str())), "{allowed:?}");
    }

    #[test]
    fn refused_requests_are_guidance_errors() {
        let tok = tokenizer(byte_level_json(), "<|im_end|>");
        let err = JsonConstraint::new(&json!({"type": "nope"}), &tok).err().unwrap();
        assert_eq!(err.code, ErrorCode::GuidanceError);
        let yaml = StructuredOutput { schema: json!({"type": "object"}), format: "yaml".into() };
        let err = JsonConstraint::from_structured(&yaml, || panic!("not built for a refused format")).err().unwrap();
        assert_eq!(err.code, ErrorCode::GuidanceError);
        let big = json!({"enum": [("x".repeat(MAX_SCHEMA_BYTES))]});
        let err = JsonConstraint::new(&big, &tok).err().unwrap();
        assert!(err.message.contains("32768"), "{}", err.message);
    }
}
