//! Generation defaults: the engine-wide ones (spec §7.6, §11) and the per-model ones a caller
//! gives at load time (`LoadModelOptions.parameters`, §5.2 [fix]), and how they fill a request.

use serde_json::{Map, Value};

use super::fields::SAMPLING_RULES;
use super::generator::GeneratorParams;
use super::rules::{lookup, to_f32, to_ids, to_strings, to_u32, to_u64, Issues, Stage};

/// `model.default_max_tokens` (§11).
pub const DEFAULT_MAX_TOKENS: u32 = 512;
/// The original runtime's temperature when the request omits it (§7.6, §14.7).
pub const DEFAULT_TEMPERATURE: f32 = 0.7;
/// 1.0 disables nucleus sampling (§7.6).
pub const DEFAULT_TOP_P: f32 = 1.0;
/// `model.max_generation_tokens`: the runtime cap on `maxTokens` (§6.1 second stage, §11).
pub const MAX_GENERATION_TOKENS: u32 = 4096;
/// Runtime cap on prompt length, in characters (§6.1 second stage: 1 MiB chars).
pub const MAX_PROMPT_CHARS: usize = 1 << 20;

/// Per-model default sampling parameters (§5.2). `None` = the model has no default for it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelDefaults {
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<u32>,
    pub min_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub stop_sequences: Option<Vec<String>>,
    pub stop_token_ids: Option<Vec<u32>>,
    pub seed: Option<u64>,
}

impl ModelDefaults {
    /// Stores a value that [`SAMPLING_RULES`] accepted under the rule's canonical name.
    fn set(&mut self, name: &str, v: &Value) {
        match name {
            "maxTokens" => self.max_tokens = Some(to_u32(v)),
            "temperature" => self.temperature = Some(to_f32(v)),
            "topP" => self.top_p = Some(to_f32(v)),
            "topK" => self.top_k = Some(to_u32(v)),
            "minP" => self.min_p = Some(to_f32(v)),
            "repetitionPenalty" => self.repetition_penalty = Some(to_f32(v)),
            "presencePenalty" => self.presence_penalty = Some(to_f32(v)),
            "frequencyPenalty" => self.frequency_penalty = Some(to_f32(v)),
            "stopSequences" => self.stop_sequences = Some(to_strings(v)),
            "stopTokenIds" => self.stop_token_ids = Some(to_ids(v)),
            "seed" => self.seed = Some(to_u64(v)),
            other => unreachable!("no ModelDefaults field for sampling rule {other}"),
        }
    }
}

/// Reads the sampling fields from `sources`, most important first: for each field the first
/// source that has it (any spelling) supplies it, and only that value is checked — so inline
/// load options win over nested `parameters`, as in the original's merge (§5.2). Each source
/// comes with the path prefix its issues get.
pub(crate) fn parse_sampling(
    sources: &[(&Map<String, Value>, Vec<Value>)],
    stage: Stage,
    issues: &mut Issues,
) -> ModelDefaults {
    let mut out = ModelDefaults::default();
    for rule in &SAMPLING_RULES {
        let spellings = rule.spellings();
        if let Some((obj, prefix)) = sources
            .iter()
            .find(|(obj, _)| lookup(obj, &spellings).is_some())
        {
            if let Some(v) = rule.take(obj, prefix, stage, issues) {
                out.set(rule.name, v);
            }
        }
    }
    out
}

/// Fills the fields the request left out with the model's defaults (§5.2 [fix]: the original
/// stored them but never applied them). An empty `stop_sequences`/`stop_token_ids` counts as
/// left out, since the request type cannot tell `[]` from absent.
pub fn apply_model_defaults(params: &mut GeneratorParams, defaults: &ModelDefaults) {
    fn fill<T: Clone>(slot: &mut Option<T>, default: &Option<T>) {
        if slot.is_none() {
            slot.clone_from(default);
        }
    }
    fill(&mut params.max_tokens, &defaults.max_tokens);
    fill(&mut params.temperature, &defaults.temperature);
    fill(&mut params.top_p, &defaults.top_p);
    fill(&mut params.top_k, &defaults.top_k);
    fill(&mut params.min_p, &defaults.min_p);
    fill(&mut params.repetition_penalty, &defaults.repetition_penalty);
    fill(&mut params.presence_penalty, &defaults.presence_penalty);
    fill(&mut params.frequency_penalty, &defaults.frequency_penalty);
    fill(&mut params.seed, &defaults.seed);
    if params.stop_sequences.is_empty() {
        if let Some(d) = &defaults.stop_sequences {
            params.stop_sequences = d.clone();
        }
    }
    if params.stop_token_ids.is_empty() {
        if let Some(d) = &defaults.stop_token_ids {
            params.stop_token_ids = d.clone();
        }
    }
}

impl GeneratorParams {
    /// `maxTokens`, else `model.default_max_tokens` = 512 (§7.6).
    pub fn effective_max_tokens(&self) -> u32 {
        self.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)
    }
    /// `temperature`, else 0.7 (§7.6); 0 means greedy.
    pub fn effective_temperature(&self) -> f32 {
        self.temperature.unwrap_or(DEFAULT_TEMPERATURE)
    }
    /// `topP`, else 1.0 (disabled) (§7.6).
    pub fn effective_top_p(&self) -> f32 {
        self.top_p.unwrap_or(DEFAULT_TOP_P)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::generator::normalize_generator_params;
    use serde_json::json;

    fn base() -> GeneratorParams {
        normalize_generator_params(&json!({"model": "m", "prompt": "p"})).unwrap()
    }

    #[test]
    fn effective_defaults() {
        let p = base();
        assert_eq!(p.effective_max_tokens(), 512);
        assert_eq!(p.effective_temperature(), 0.7);
        assert_eq!(p.effective_top_p(), 1.0);
        let p = normalize_generator_params(
            &json!({"model": "m", "prompt": "p", "maxTokens": 7, "temperature": 0, "topP": 0.5}),
        )
        .unwrap();
        assert_eq!(
            (
                p.effective_max_tokens(),
                p.effective_temperature(),
                p.effective_top_p()
            ),
            (7, 0.0, 0.5)
        );
    }

    #[test]
    fn apply_fills_only_absent_fields() {
        let defaults = ModelDefaults {
            max_tokens: Some(100),
            temperature: Some(0.1),
            top_p: Some(0.9),
            top_k: Some(40),
            min_p: Some(0.05),
            repetition_penalty: Some(1.1),
            presence_penalty: Some(0.5),
            frequency_penalty: Some(0.25),
            stop_sequences: Some(vec!["END".into()]),
            stop_token_ids: Some(vec![2]),
            seed: Some(42),
        };
        let mut p = base();
        apply_model_defaults(&mut p, &defaults);
        assert_eq!(p.max_tokens, Some(100));
        assert_eq!(p.temperature, Some(0.1));
        assert_eq!(p.top_p, Some(0.9));
        assert_eq!(p.top_k, Some(40));
        assert_eq!(p.min_p, Some(0.05));
        assert_eq!(p.repetition_penalty, Some(1.1));
        assert_eq!(p.presence_penalty, Some(0.5));
        assert_eq!(p.frequency_penalty, Some(0.25));
        assert_eq!(p.stop_sequences, vec!["END".to_string()]);
        assert_eq!(p.stop_token_ids, vec![2]);
        assert_eq!(p.seed, Some(42));

        let mut p = normalize_generator_params(&json!({
            "model": "m", "prompt": "p", "maxTokens": 5, "temperature": 0, "stopSequences": ["x"], "stopTokenIds": [9], "seed": 1
        }))
        .unwrap();
        apply_model_defaults(&mut p, &defaults);
        assert_eq!(p.max_tokens, Some(5));
        assert_eq!(p.temperature, Some(0.0));
        assert_eq!(p.stop_sequences, vec!["x".to_string()]);
        assert_eq!(p.stop_token_ids, vec![9]);
        assert_eq!(p.seed, Some(1));
        assert_eq!(p.top_p, Some(0.9));
    }

    #[test]
    fn empty_defaults_change_nothing() {
        let mut p = base();
        let before = p.clone();
        apply_model_defaults(&mut p, &ModelDefaults::default());
        assert_eq!(p, before);
    }
}
