//! `StreamingDetokenizer`: turns the stream of generated token ids into text deltas.
//!
//! Decoding token by token is wrong in two ways: a multi-byte UTF-8 character may be spread over
//! several tokens (byte-level BPE bytes, SentencePiece `<0xNN>` fallback tokens), and decoders
//! treat the first token of a sequence specially (SentencePiece strips its leading space). So we
//! decode a small window of ids: `prefix` (ids already emitted, kept as context) followed by the
//! pending ids, and emit the part of the window's text beyond the prefix's text once it does not
//! end in U+FFFD (an incomplete character). The window then slides forward, so each token costs
//! O(window) work, not O(everything generated). Special tokens are skipped, as
//! `decode(ids, skip_special=true)` skips them, so the concatenated deltas equal that decode.

use super::tokenizer::TextTokenizer;
use crate::error::EngineResult;

/// Pending ids after which text ending in U+FFFD is emitted anyway. A UTF-8 character is at most
/// 4 bytes, so a replacement char that survives this many further tokens is final (invalid bytes
/// or a literal U+FFFD in the output), and holding it longer would only grow the window.
const MAX_PENDING: usize = 8;

/// Per-stream state. The tokenizer is passed to each call instead of being stored, so the
/// detokenizer neither borrows nor shares ownership of the model (which the engine holds).
#[derive(Debug, Clone)]
pub struct StreamingDetokenizer {
    /// Window of non-special ids: `ids[..read]` were emitted already (context), `ids[read..]`
    /// are pending.
    ids: Vec<u32>,
    read: usize,
    /// Vocabulary size of the tokenizer given to `new`: catches a different one passed later.
    vocab_size: usize,
}

impl StreamingDetokenizer {
    pub fn new(tokenizer: &TextTokenizer) -> Self {
        StreamingDetokenizer { ids: Vec::new(), read: 0, vocab_size: tokenizer.vocab_size() }
    }

    /// Adds one generated id; returns the text it completes (often empty while a character is
    /// incomplete, always empty for special tokens).
    pub fn push(&mut self, tokenizer: &TextTokenizer, id: u32) -> EngineResult<String> {
        debug_assert_eq!(tokenizer.vocab_size(), self.vocab_size, "same tokenizer on every call");
        if tokenizer.is_special(id) {
            return Ok(String::new());
        }
        self.ids.push(id);
        self.emit(tokenizer, false)
    }

    /// Releases whatever is still pending (at the end of generation) and resets the state.
    pub fn finish(&mut self, tokenizer: &TextTokenizer) -> EngineResult<String> {
        let rest = self.emit(tokenizer, true)?;
        self.ids.clear();
        self.read = 0;
        Ok(rest)
    }

    /// True while some pushed ids have not produced their text yet (an incomplete character).
    pub fn is_holding(&self) -> bool {
        self.read < self.ids.len()
    }

    fn emit(&mut self, tokenizer: &TextTokenizer, force: bool) -> EngineResult<String> {
        if !self.is_holding() {
            return Ok(String::new());
        }
        let prefix = tokenizer.decode(&self.ids[..self.read], true)?;
        let full = tokenizer.decode(&self.ids, true)?;
        let pending = self.ids.len() - self.read;
        if !force && full.ends_with('\u{FFFD}') && pending < MAX_PENDING {
            return Ok(String::new());
        }
        let delta = match full.strip_prefix(prefix.as_str()) {
            Some(rest) => rest.to_owned(),
            // Decoders used by LLM tokenizers extend the prefix's text; should one ever rewrite
            // it (only seen with invalid byte runs under ByteFallback), emit what differs
            // rather than fail or stall.
            None => {
                let common: usize = full
                    .char_indices()
                    .zip(prefix.chars())
                    .take_while(|((_, a), b)| a == b)
                    .last()
                    .map_or(0, |((i, a), _)| i + a.len_utf8());
                full[common..].to_owned()
            }
        };
        // Slide: the ids just emitted become the next prefix; older ones are dropped.
        self.ids.drain(..self.read);
        self.read = self.ids.len();
        Ok(delta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::test_fixtures::{byte_level_json, model_dir, sentencepiece_json, smollm2_dir};

    const SAMPLES: &[&str] = &[
        "Hello world",
        "Hello world, the capital of France?",
        "café naïve résumé Ærø",
        "你好，世界！ 日本語のテキスト",
        "emoji 😀👍🏽 family 👨‍👩‍👧 flags 🇫🇷",
        " leading and  double  spaces ",
        "mixed: 😀你é\u{301}a\u{FFFD}b",
        "\n\ttabs\nand lines\n",
        "",
    ];

    fn tokenizers() -> Vec<(&'static str, TextTokenizer)> {
        let load = |v| TextTokenizer::from_dir(&model_dir(&[("tokenizer.json", &v)])).unwrap();
        vec![
            ("byte-level", load(byte_level_json())),
            ("sentencepiece", load(sentencepiece_json(true))),
        ]
    }

    fn stream(t: &TextTokenizer, ids: &[u32]) -> Vec<String> {
        let mut d = StreamingDetokenizer::new(t);
        let mut deltas: Vec<String> = ids.iter().map(|&id| d.push(t, id).unwrap()).collect();
        deltas.push(d.finish(t).unwrap());
        assert!(!d.is_holding());
        deltas
    }

    #[test]
    fn deltas_concatenate_to_full_decode() {
        for (kind, t) in tokenizers() {
            for text in SAMPLES {
                let ids = t.encode(text, true).unwrap();
                let deltas = stream(&t, &ids);
                let expected = t.decode(&ids, true).unwrap();
                assert_eq!(deltas.concat(), expected, "{kind}: {text:?} ids {ids:?}");
                if !text.contains('\u{FFFD}') {
                    assert!(
                        deltas.iter().all(|d| !d.contains('\u{FFFD}')),
                        "{kind}: split char in {deltas:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn multibyte_chars_wait_for_their_last_byte() {
        for (kind, t) in tokenizers() {
            let ids = t.encode("a😀", false).unwrap();
            assert!(ids.len() >= 3, "{kind}: emoji should span several tokens: {ids:?}");
            let deltas = stream(&t, &ids);
            // Every token but the one completing 😀 yields nothing for it.
            let nonempty: Vec<&String> = deltas.iter().filter(|d| !d.is_empty()).collect();
            assert_eq!(nonempty.last().unwrap().as_str(), "😀", "{kind}: {deltas:?}");
            assert_eq!(deltas[deltas.len() - 2], "😀", "{kind}: emitted as soon as complete");
            let k = t.encode("a", false).unwrap().len();
            let mut d = StreamingDetokenizer::new(&t);
            let head: String = ids[..k].iter().map(|&id| d.push(&t, id).unwrap()).collect();
            assert_eq!(head, "a", "{kind}");
            assert!(!d.is_holding());
            assert_eq!(d.push(&t, ids[k]).unwrap(), "");
            assert!(d.is_holding(), "{kind}: partial emoji is held");
        }
    }

    #[test]
    fn special_tokens_are_skipped() {
        for (kind, t) in tokenizers() {
            let mut ids = t.encode("Hello world", false).unwrap();
            let special = (0..t.vocab_size() as u32).find(|&i| t.is_special(i)).unwrap();
            ids.insert(1, special);
            ids.push(special);
            let deltas = stream(&t, &ids);
            assert_eq!(deltas[1], "", "{kind}");
            assert_eq!(deltas.concat(), "Hello world", "{kind}");
            assert_eq!(deltas.concat(), t.decode(&ids, true).unwrap(), "{kind}");
        }
    }

    #[test]
    fn sentencepiece_spaces_survive_window_boundaries() {
        let (_, t) = tokenizers().remove(1);
        let ids = t.encode("Hello world the capital", false).unwrap();
        let deltas = stream(&t, &ids);
        assert_eq!(deltas[..4], ["Hello", " world", " the", " capital"]);
    }

    #[test]
    fn window_stays_bounded() {
        for (kind, t) in tokenizers() {
            let text = "Hello world 😀 你好 ".repeat(200);
            let ids = t.encode(&text, false).unwrap();
            let mut d = StreamingDetokenizer::new(&t);
            let mut out = String::new();
            for &id in &ids {
                out.push_str(&d.push(&t, id).unwrap());
                assert!(d.ids.len() <= 2 * MAX_PENDING, "{kind}: window grew to {}", d.ids.len());
            }
            out.push_str(&d.finish(&t).unwrap());
            assert_eq!(out, t.decode(&ids, true).unwrap(), "{kind}");
        }
    }

    #[test]
    fn invalid_byte_run_is_flushed_not_held_forever() {
        let (_, t) = tokenizers().remove(0);
        // A lone 0xF0 lead byte (never completed) followed by many ASCII tokens and then
        // repeated lone lead bytes: output must keep flowing and match the full decode.
        let lead =
            t.token_to_id(&crate::text::test_fixtures::byte_to_char(0xF0).to_string()).unwrap();
        let a = t.token_to_id("a").unwrap();
        let mut ids = vec![lead, a, a];
        ids.extend(std::iter::repeat_n(lead, 20));
        let mut d = StreamingDetokenizer::new(&t);
        let mut out = String::new();
        for &id in &ids {
            out.push_str(&d.push(&t, id).unwrap());
        }
        assert!(out.starts_with("\u{FFFD}aa\u{FFFD}"), "{out:?}");
        assert!(d.ids.len() < 2 * MAX_PENDING, "window {}", d.ids.len());
        out.push_str(&d.finish(&t).unwrap());
        assert_eq!(out, t.decode(&ids, true).unwrap());
    }

    #[test]
    fn shareable_across_threads() {
        // Models (with their tokenizer) may be shared with and streamed on other threads.
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<TextTokenizer>();
        assert_send_sync::<StreamingDetokenizer>();
    }

    #[test]
    fn real_smollm2_stream() {
        let Some(dir) = smollm2_dir() else { return };
        let t = TextTokenizer::from_dir(&dir).unwrap();
        for text in SAMPLES {
            let ids = t.encode(text, true).unwrap();
            assert_eq!(stream(&t, &ids).concat(), t.decode(&ids, true).unwrap(), "{text:?}");
        }
    }
}
