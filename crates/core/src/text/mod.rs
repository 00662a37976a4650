//! Text processing around the model: tokenization (with the model folder's special-token
//! configuration), chat-template rendering, streaming detokenization that never splits a UTF-8
//! character, and stop-sequence matching over the streamed text.
//!
//! Everything here is pure CPU work; only `gguf_tokenizer` reads GGUF metadata through MLX's
//! reader (the rest has no MLX dependency and is tested on its own).

pub mod chat_template;
pub mod detokenizer;
pub mod gguf_tokenizer;
mod hf_config;
pub mod stop_matcher;
mod pyrepr;
mod template_fns;
#[cfg(test)]
pub(crate) mod test_fixtures;
pub mod tokenizer;

pub use chat_template::{render_chat, render_chat_request, ChatMessage, ChatRequest};
pub use detokenizer::StreamingDetokenizer;
pub use stop_matcher::{StopMatcher, StopOutcome};
pub use tokenizer::TextTokenizer;
