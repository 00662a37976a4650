//! What a generation stream sends back to its consumer, in order: token chunks, then exactly one
//! terminal chunk (metadata on success, error otherwise). Shapes follow spec §7.2–7.3.

use serde::Serialize;

use crate::error::EngineError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    Stop,
    Eos,
    Length,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerationStats {
    pub tokens_generated: u32,
    pub tokens_per_second: f64,
    /// seconds (spec quirk: stats are in seconds, every other duration in ms)
    pub time_to_first_token: f64,
    pub total_time: f64,
    pub model_id: String,
    pub finish_reason: FinishReason,
    /// Speculative decoding only (spec §7.3 / §15): proposals the target accepted, proposals
    /// made, and accepted / proposed (0 when nothing was proposed). Omitted without a draft.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub draft_tokens_accepted: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub draft_tokens_proposed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acceptance_rate: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Chunk {
    Token { token: String, token_id: u32, logprob: Option<f32>, is_final: bool },
    Metadata(GenerationStats),
    Error(EngineError),
}
