//! `TextTokenizer`: a model folder's tokenizer plus the special-token facts that live beside it.
//!
//! `tokenizer.json` alone does not say everything the engine needs: the BOS/EOS tokens, whether a
//! BOS must be prepended and the chat template come from `tokenizer_config.json`, and the ids
//! that end generation may also be listed in `generation_config.json` / `config.json`. This
//! module reads all of them once at load time and answers encode/decode/vocabulary questions.

use std::collections::HashSet;
use std::path::Path;

use serde_json::Value;
use tokenizers::Tokenizer;

use super::hf_config::{chat_template_of, read_optional_json, token_ids, token_text};
use crate::error::{EngineError, EngineResult};

pub struct TextTokenizer {
    inner: Tokenizer,
    bos_id: Option<u32>,
    bos_token: Option<String>,
    eos_token: Option<String>,
    eos_ids: Vec<u32>,
    /// `tokenizer_config.json` `add_bos_token`: the slow HF tokenizers prepend BOS themselves
    /// instead of through the post-processor, so `tokenizer.json` alone would lose it.
    add_bos_token: bool,
    chat_template: Option<String>,
    /// Added tokens flagged `special`: exactly the ids `decode(.., skip_special=true)` drops.
    special_ids: HashSet<u32>,
    /// Counted once: `tokenizers`' `get_vocab_size(true)` clones the whole vocabulary into a map
    /// on every call (~150k strings for Qwen/Llama-3), which cost every request ~10–20 ms of
    /// time to first token when it was called per stream.
    vocab_size: usize,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("bos_id", &self.bos_id)
            .field("eos_ids", &self.eos_ids)
            .field("add_bos_token", &self.add_bos_token)
            .field("has_chat_template", &self.chat_template.is_some())
            .finish()
    }
}

impl TextTokenizer {
    /// Loads `tokenizer.json` (required) and the optional `tokenizer_config.json`,
    /// `generation_config.json`, `config.json` and `chat_template.jinja` of a model folder.
    pub fn from_dir(dir: &Path) -> EngineResult<Self> {
        let path = dir.join("tokenizer.json");
        let bytes = std::fs::read(&path).map_err(|e| {
            EngineError::model_load(format!("Failed to read {}: {e}", path.display()))
                .with_detail("file", "tokenizer.json")
        })?;
        let inner = Tokenizer::from_bytes(&bytes).map_err(|e| {
            EngineError::model_load(format!("Failed to parse {}: {e}", path.display()))
                .with_detail("file", "tokenizer.json")
        })?;
        let tok_cfg = read_optional_json(dir, "tokenizer_config.json")?;
        let gen_cfg = read_optional_json(dir, "generation_config.json")?;
        let model_cfg = read_optional_json(dir, "config.json")?;
        // Newer HF exports store the template in its own file instead of tokenizer_config.json.
        let template_file = std::fs::read_to_string(dir.join("chat_template.jinja")).ok();
        Ok(Self::assemble(
            inner,
            tok_cfg.as_ref(),
            gen_cfg.as_ref(),
            model_cfg.as_ref(),
            template_file,
        ))
    }

    /// Wraps a bare tokenizer with no side configuration (BOS/EOS only from the tokenizer itself
    /// are unknown; nothing is prepended beyond what its post-processor adds).
    pub fn from_tokenizer(inner: Tokenizer) -> Self {
        Self::assemble(inner, None, None, None, None)
    }

    /// An in-memory tokenizer plus its tokenizer_config-style facts (`bos_token`, `eos_token`,
    /// `add_bos_token`, `chat_template`) and optional config.json-style ids (`eos_token_id`):
    /// what a GGUF file's metadata provides.
    pub fn from_parts(inner: Tokenizer, tok_cfg: &Value, model_cfg: Option<&Value>) -> Self {
        Self::assemble(inner, Some(tok_cfg), None, model_cfg, None)
    }

    fn assemble(
        inner: Tokenizer,
        tok_cfg: Option<&Value>,
        gen_cfg: Option<&Value>,
        model_cfg: Option<&Value>,
        template_file: Option<String>,
    ) -> Self {
        let get = |cfg: Option<&Value>, key: &str| cfg.and_then(|c| c.get(key)).cloned();

        // BOS: the tokenizer_config text is what HF's tokenizer uses; the numeric ids of
        // generation_config / config.json are fallbacks for folders without it.
        let mut bos_token = token_text(get(tok_cfg, "bos_token").as_ref());
        let mut bos_id = bos_token.as_deref().and_then(|t| inner.token_to_id(t));
        if bos_id.is_none() {
            bos_id = token_ids(get(gen_cfg, "bos_token_id").as_ref())
                .first()
                .or(token_ids(get(model_cfg, "bos_token_id").as_ref()).first())
                .copied();
        }
        if bos_token.is_none() {
            bos_token = bos_id.and_then(|id| inner.id_to_token(id));
        }

        // EOS: every source counts (e.g. Llama-3 instruct lists <|eot_id|> only in
        // generation_config), so take the union, in a stable order, without duplicates.
        let eos_text = token_text(get(tok_cfg, "eos_token").as_ref());
        let mut eos_ids: Vec<u32> = Vec::new();
        let candidates = eos_text
            .as_deref()
            .and_then(|t| inner.token_to_id(t))
            .into_iter()
            .chain(token_ids(get(gen_cfg, "eos_token_id").as_ref()))
            .chain(token_ids(get(model_cfg, "eos_token_id").as_ref()));
        for id in candidates {
            if !eos_ids.contains(&id) {
                eos_ids.push(id);
            }
        }
        let eos_token = eos_text.or_else(|| eos_ids.first().and_then(|&id| inner.id_to_token(id)));

        let add_bos_token =
            get(tok_cfg, "add_bos_token").and_then(|v| v.as_bool()).unwrap_or(false);
        let chat_template =
            chat_template_of(get(tok_cfg, "chat_template").as_ref()).or(template_file);
        let special_ids = inner
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, tok)| tok.special)
            .map(|(id, _)| id)
            .collect();

        let vocab_size = inner.get_vocab_size(true);
        TextTokenizer {
            inner,
            vocab_size,
            bos_id,
            bos_token,
            eos_token,
            eos_ids,
            add_bos_token,
            chat_template,
            special_ids,
        }
    }

    /// Encodes `text`. With `add_special_tokens` it behaves like HF
    /// `encode(text, add_special_tokens=True)`, plus: a BOS is prepended when the config asks for
    /// one (`add_bos_token`) and the post-processor did not add it, and no special tokens are
    /// added at all when the text already starts with the BOS text (it carries its own BOS; this
    /// is mlx-lm's rule for string prompts, spec §7.5).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> EngineResult<Vec<u32>> {
        let starts_with_bos =
            self.bos_token.as_deref().is_some_and(|b| !b.is_empty() && text.starts_with(b));
        let add = add_special_tokens && !starts_with_bos;
        let encoding = self
            .inner
            .encode_fast(text, add)
            .map_err(|e| EngineError::tokenizer(format!("Tokenization failed: {e}")))?;
        let mut ids = encoding.get_ids().to_vec();
        if add && self.add_bos_token {
            if let Some(bos) = self.bos_id {
                if ids.first() != Some(&bos) {
                    ids.insert(0, bos);
                }
            }
        }
        Ok(ids)
    }

    /// Decodes ids to text; with `skip_special` the special added tokens (EOS, chat markers, ...)
    /// are left out. Ids outside the vocabulary are ignored (as the tokenizers crate does).
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> EngineResult<String> {
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| EngineError::tokenizer(format!("Detokenization failed: {e}")))
    }

    /// The vocabulary string of an id (`'Ġworld'`, `'▁Hello'`, `'<|im_end|>'`).
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Number of ids, added tokens included (ids `>= vocab_size()` are out of vocabulary).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    /// Every id that ends generation as EOS (tokenizer_config ∪ generation_config ∪ config.json).
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    pub fn bos_token(&self) -> Option<&str> {
        self.bos_token.as_deref()
    }

    pub fn eos_token(&self) -> Option<&str> {
        self.eos_token.as_deref()
    }

    /// True for the added tokens flagged special, i.e. those `decode(.., true)` skips.
    pub fn is_special(&self, id: u32) -> bool {
        self.special_ids.contains(&id)
    }

    /// The wrapped `tokenizers::Tokenizer`, for anything not covered here.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::text::test_fixtures::{byte_level_json, model_dir, sentencepiece_json, smollm2_dir};
    use serde_json::json;

    fn byte_level(config: Option<Value>) -> TextTokenizer {
        let tok = byte_level_json();
        let mut files = vec![("tokenizer.json", &tok)];
        if let Some(c) = config.as_ref() {
            files.push(("tokenizer_config.json", c));
        }
        TextTokenizer::from_dir(&model_dir(&files)).unwrap()
    }

    #[test]
    fn missing_or_garbled_tokenizer_json_is_model_load_error_naming_the_file() {
        let empty = model_dir(&[]);
        let err = TextTokenizer::from_dir(&empty).unwrap_err();
        assert_eq!(err.code, ErrorCode::ModelLoadError);
        assert!(err.message.contains("tokenizer.json"), "{}", err.message);

        std::fs::write(empty.join("tokenizer.json"), "{not json").unwrap();
        let err = TextTokenizer::from_dir(&empty).unwrap_err();
        assert_eq!(err.code, ErrorCode::ModelLoadError);
        assert!(err.message.contains("tokenizer.json"), "{}", err.message);

        // A garbled optional config is an error too, naming that file.
        let tok = byte_level_json();
        let dir = model_dir(&[("tokenizer.json", &tok)]);
        std::fs::write(dir.join("generation_config.json"), "[1,").unwrap();
        let err = TextTokenizer::from_dir(&dir).unwrap_err();
        assert!(err.message.contains("generation_config.json"), "{}", err.message);
    }

    #[test]
    fn byte_level_roundtrip_and_vocab() {
        let t = byte_level(None);
        let ids = t.encode("Hello world", true).unwrap();
        // ByteLevel post-processor adds nothing; "Hello" and " world" are single merged tokens.
        assert_eq!(ids.len(), 2);
        assert_eq!(t.id_to_token(ids[1]).as_deref(), Some("Ġworld"));
        assert_eq!(t.token_to_id("Ġworld"), Some(ids[1]));
        assert_eq!(t.decode(&ids, true).unwrap(), "Hello world");
        assert_eq!(t.encode("Hello world", false).unwrap(), ids);
        let text = "naïve 你好 😀 <3";
        assert_eq!(t.decode(&t.encode(text, true).unwrap(), true).unwrap(), text);
        // 3 specials + 256 bytes + merges, all counted.
        assert_eq!(t.vocab_size(), t.inner().get_vocab_size(true));
        assert!(t.vocab_size() > 259);
        assert!(t.is_special(2) && !t.is_special(ids[0]));
        // No side config: nothing known.
        assert_eq!((t.bos_id(), t.eos_ids(), t.chat_template()), (None, &[][..], None));
    }

    #[test]
    fn special_tokens_in_text_are_recognized_and_skippable() {
        let t = byte_level(None);
        let ids = t.encode("<|im_start|>Hello<|im_end|>", false).unwrap();
        assert_eq!(ids.first(), Some(&1));
        assert_eq!(ids.last(), Some(&2));
        assert_eq!(t.decode(&ids, true).unwrap(), "Hello");
        assert_eq!(t.decode(&ids, false).unwrap(), "<|im_start|>Hello<|im_end|>");
    }

    #[test]
    fn config_sources_bos_eos_and_template() {
        let tok = byte_level_json();
        let tok_cfg = json!({
            "bos_token": {"content": "<|im_start|>", "special": true},
            "eos_token": "<|im_end|>",
            "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]
        });
        let gen_cfg = json!({"eos_token_id": [2, 0], "bos_token_id": 1});
        let cfg = json!({"eos_token_id": 0, "bos_token_id": 1});
        let dir = model_dir(&[
            ("tokenizer.json", &tok),
            ("tokenizer_config.json", &tok_cfg),
            ("generation_config.json", &gen_cfg),
            ("config.json", &cfg),
        ]);
        let t = TextTokenizer::from_dir(&dir).unwrap();
        assert_eq!(t.bos_id(), Some(1));
        assert_eq!(t.bos_token(), Some("<|im_start|>"));
        assert_eq!(t.eos_token(), Some("<|im_end|>"));
        assert_eq!(t.eos_ids(), &[2, 0]);
        assert_eq!(t.chat_template(), Some("D"));

        // Only numeric sources: ids from generation_config/config.json, texts from the vocab.
        let dir = model_dir(&[
            ("tokenizer.json", &tok),
            ("config.json", &json!({"eos_token_id": 0, "bos_token_id": 1})),
        ]);
        let t = TextTokenizer::from_dir(&dir).unwrap();
        assert_eq!((t.bos_id(), t.eos_ids()), (Some(1), &[0u32][..]));
        assert_eq!((t.bos_token(), t.eos_token()), (Some("<|im_start|>"), Some("<|endoftext|>")));

        // A template list without "default" → the first; chat_template.jinja as fallback.
        let t = byte_level(Some(
            json!({"chat_template": [{"name": "a", "template": "A"}, {"name": "b", "template": "B"}]}),
        ));
        assert_eq!(t.chat_template(), Some("A"));
        let dir = model_dir(&[("tokenizer.json", &tok)]);
        std::fs::write(dir.join("chat_template.jinja"), "J").unwrap();
        assert_eq!(TextTokenizer::from_dir(&dir).unwrap().chat_template(), Some("J"));
    }

    #[test]
    fn bos_from_post_processor_is_not_doubled() {
        let tok = sentencepiece_json(true);
        let cfg = json!({"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": true});
        let t = TextTokenizer::from_dir(&model_dir(&[
            ("tokenizer.json", &tok),
            ("tokenizer_config.json", &cfg),
        ]))
        .unwrap();
        let with = t.encode("Hello world", true).unwrap();
        let without = t.encode("Hello world", false).unwrap();
        assert_eq!(with[0], 1);
        assert_eq!(with[1..], without[..]);
        assert_ne!(without[0], 1);
        assert_eq!(t.id_to_token(without[0]).as_deref(), Some("▁Hello"));
        assert_eq!(t.decode(&with, true).unwrap(), "Hello world");
        // Text that already starts with the BOS text gets no second BOS.
        let own = t.encode("<s>Hello", true).unwrap();
        assert_eq!(own.iter().filter(|&&i| i == 1).count(), 1, "{own:?}");
        assert_eq!(own[0], 1);
    }

    #[test]
    fn add_bos_token_config_prepends_when_post_processor_does_not() {
        let tok = sentencepiece_json(false);
        let cfg = json!({"bos_token": "<s>", "add_bos_token": true});
        let t = TextTokenizer::from_dir(&model_dir(&[
            ("tokenizer.json", &tok),
            ("tokenizer_config.json", &cfg),
        ]))
        .unwrap();
        let with = t.encode("Hello", true).unwrap();
        assert_eq!(with[0], 1);
        assert_eq!(with[1..], t.encode("Hello", false).unwrap()[..]);
        assert_eq!(t.encode("<s>Hello", true).unwrap(), t.encode("<s>Hello", false).unwrap());
        assert_eq!(t.encode("", true).unwrap(), vec![1]);

        // Same tokenizer without add_bos_token: nothing added.
        let cfg = json!({"bos_token": "<s>", "add_bos_token": false});
        let t = TextTokenizer::from_dir(&model_dir(&[
            ("tokenizer.json", &tok),
            ("tokenizer_config.json", &cfg),
        ]))
        .unwrap();
        assert_eq!(t.encode("Hello", true).unwrap(), t.encode("Hello", false).unwrap());
    }

    #[test]
    fn byte_fallback_roundtrip() {
        let t =
            TextTokenizer::from_dir(&model_dir(&[("tokenizer.json", &sentencepiece_json(false))]))
                .unwrap();
        let text = "Hello 世界 😀 café";
        let ids = t.encode(text, false).unwrap();
        assert!(ids.iter().any(|&i| t.id_to_token(i).unwrap().starts_with("<0x")));
        assert_eq!(t.decode(&ids, true).unwrap(), text);
    }

    #[test]
    fn real_smollm2_tokenizer() {
        let Some(dir) = smollm2_dir() else { return };
        let t = TextTokenizer::from_dir(&dir).unwrap();
        let q = "What is the capital of France?";
        let with = t.encode(q, true).unwrap();
        assert_eq!(with, t.encode(q, false).unwrap(), "SmolLM2 adds no BOS");
        assert_eq!(t.decode(&with, true).unwrap(), q);
        let im_end = t.token_to_id("<|im_end|>").unwrap();
        assert!(t.eos_ids().contains(&im_end), "{:?}", t.eos_ids());
        assert!(t.is_special(im_end));
        assert!(t.chat_template().unwrap().contains("<|im_start|>"));
        let ids = t.encode(" world", false).unwrap();
        assert_eq!(t.id_to_token(ids[0]).as_deref(), Some("Ġworld"));
    }
}
