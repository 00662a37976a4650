//! GenerationService (request side): turns a validated `GeneratorParams` plus the loaded model
//! into a `StreamRequest`: per-model defaults, prompt rendering (string, template, token ids,
//! chat messages through the model's chat template), tokenization and the structured-output
//! constraint (compiled here so that a bad schema fails the request before it starts).

use std::time::{Duration, Instant};

use crate::error::{EngineError, EngineResult};
use crate::generation::constraint::JsonConstraint;
use crate::generation::sampler::SamplingParams;
use crate::generation::stream::StreamRequest;
use crate::params::{apply_model_defaults, render_prompt_template, GeneratorParams, Prompt};
use crate::services::model_lifecycle::LoadedModel;
use crate::text::{render_chat, ChatMessage};

/// Spec §7.6 defaults.
pub const DEFAULT_MAX_TOKENS: u32 = 512;
pub const DEFAULT_TEMPERATURE: f32 = 0.7;

pub fn prepare_stream(mut params: GeneratorParams, model: &LoadedModel, id: String, timeout_ms: Option<u64>) -> EngineResult<StreamRequest> {
    apply_model_defaults(&mut params, &model.defaults);
    let prompt = encode_prompt(&params.prompt, model)?;
    let sampling = SamplingParams {
        temperature: params.temperature.unwrap_or(DEFAULT_TEMPERATURE),
        top_p: params.top_p.unwrap_or(1.0),
        top_k: params.top_k.unwrap_or(0),
        min_p: params.min_p.unwrap_or(0.0),
        repetition_penalty: params.repetition_penalty.unwrap_or(1.0),
        presence_penalty: params.presence_penalty.unwrap_or(0.0),
        frequency_penalty: params.frequency_penalty.unwrap_or(0.0),
        seed: params.seed,
    };
    let constraint = match &params.structured {
        Some(s) => Some(JsonConstraint::from_structured(s, || {
            model.guidance.get(&model.tokenizer, model.model.config().vocab_size.max(0) as usize)
        })?),
        None => None,
    };
    Ok(StreamRequest {
        id,
        prompt,
        sampling,
        max_tokens: params.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        stop_sequences: params.stop_sequences,
        stop_token_ids: params.stop_token_ids,
        deadline: timeout_ms.map(|ms| Instant::now() + Duration::from_millis(ms)),
        ignore_eos: params.ignore_eos,
        constraint,
    })
}

fn encode_prompt(prompt: &Prompt, model: &LoadedModel) -> EngineResult<Vec<u32>> {
    let tok = &model.tokenizer;
    let ids = match prompt {
        Prompt::Text(text) => tok.encode(text, true)?,
        Prompt::Template { template, variables } => tok.encode(&render_prompt_template(template, variables)?, true)?,
        Prompt::Tokens(ids) => {
            let vocab = tok.vocab_size().max(model.model.config().vocab_size as usize);
            if let Some((i, bad)) = ids.iter().enumerate().find(|(_, &t)| t as usize >= vocab) {
                return Err(EngineError::invalid_params(format!(
                    "Validation error on field 'prompt.tokens.{i}': token id {bad} is outside the vocabulary (size {vocab})"
                ))
                .with_detail("field", format!("prompt.tokens.{i}")));
            }
            ids.clone()
        }
        Prompt::Messages { messages, add_generation_prompt } => {
            let template = tok.chat_template().ok_or_else(|| {
                EngineError::invalid_params(format!("Model {} has no chat template; use a string prompt", model.id))
                    .with_detail("field", "prompt.messages")
            })?;
            let msgs: Vec<ChatMessage> =
                messages.iter().map(|m| ChatMessage { role: m.role.clone(), content: m.content.clone() }).collect();
            let text = render_chat(template, &msgs, *add_generation_prompt, tok.bos_token(), tok.eos_token())?;
            // The template already wrote any BOS it wants: do not add a second one.
            tok.encode(&text, false)?
        }
    };
    if ids.is_empty() {
        // An empty prompt still needs one position to predict from.
        let start = tok.bos_id().or_else(|| tok.eos_ids().first().copied());
        return start.map(|t| vec![t]).ok_or_else(|| EngineError::invalid_params("prompt is empty after tokenization").with_detail("field", "prompt"));
    }
    Ok(ids)
}
