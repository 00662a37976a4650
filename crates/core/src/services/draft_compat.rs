//! Draft-model compatibility (spec §7.8 / §8.5): the `CompatibilityReport` for a primary/draft
//! pair of loaded models, and the remembered compatible pairings (primary → draft) that
//! speculative decoding can pick up. The report is a pure function of [`DraftFacts`], so the
//! rules are tested without MLX; the engine thread only gathers the facts of two loaded models.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::error::{EngineError, EngineResult};
use crate::services::model_lifecycle::LoadedModel;

/// What the compatibility rules look at, for one model.
#[derive(Debug, Clone, PartialEq)]
pub struct DraftFacts {
    pub id: String,
    /// Tokenizer vocabulary size, added tokens included (the ids either model may produce).
    pub vocab_size: Option<u64>,
    pub parameter_count: u64,
    /// `config.json` `model_type`, `"unknown"` when absent.
    pub architecture: String,
    pub bos_id: Option<u32>,
    /// Every EOS id (tokenizer_config ∪ generation_config ∪ config.json), sorted.
    pub eos_ids: Vec<u32>,
}

impl DraftFacts {
    pub fn of(m: &LoadedModel) -> Self {
        let parameter_count = m.handle["metadata"]["parameterCount"].as_u64().unwrap_or(0);
        let arch = m.model.config().model_type.trim();
        let mut eos_ids = m.tokenizer.eos_ids().to_vec();
        eos_ids.sort_unstable();
        eos_ids.dedup();
        DraftFacts {
            id: m.id.clone(),
            vocab_size: Some(m.tokenizer.vocab_size() as u64),
            parameter_count,
            architecture: if arch.is_empty() { "unknown".into() } else { arch.to_string() },
            bos_id: m.tokenizer.bos_id(),
            eos_ids,
        }
    }
}

/// The §8.5 report. Checks in the §7.8 order: vocabulary (error), architecture (warning),
/// size (warning), BOS/EOS ids (warnings); `compatible` = no errors.
pub fn compatibility_report(primary: &DraftFacts, draft: &DraftFacts) -> Value {
    let mut errors: Vec<String> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    if let (Some(p), Some(d)) = (primary.vocab_size, draft.vocab_size) {
        if p != d {
            errors.push(format!(
                "Vocabulary size mismatch: primary={p}, draft={d}. Speculative decoding requires identical vocabulary."
            ));
        }
    }
    let (pa, da) = (&primary.architecture, &draft.architecture);
    if pa != "unknown" && da != "unknown" && pa != da {
        warnings.push(format!(
            "Architecture mismatch: primary={pa}, draft={da}. Different architectures may have compatibility issues."
        ));
    }
    let (pp, dp) = (primary.parameter_count, draft.parameter_count);
    if dp >= pp {
        warnings.push(format!(
            "Draft model is not smaller than primary: draft={}, primary={}. Expected performance gain may not materialize.",
            thousands(dp),
            thousands(pp)
        ));
    }
    if primary.bos_id != draft.bos_id {
        warnings.push(format!("BOS token mismatch: primary={}, draft={}", id_text(primary.bos_id), id_text(draft.bos_id)));
    }
    if primary.eos_ids != draft.eos_ids {
        warnings.push(format!("EOS token mismatch: primary={}, draft={}", ids_text(&primary.eos_ids), ids_text(&draft.eos_ids)));
    }
    let compatible = errors.is_empty();
    json!({
        "compatible": compatible,
        "errors": errors,
        "warnings": warnings,
        "details": {
            "primaryModel": model_details(primary),
            "draftModel": model_details(draft),
            "performanceEstimate": performance_estimate(pp, dp, compatible),
        },
    })
}

fn model_details(f: &DraftFacts) -> Value {
    json!({"id": f.id, "vocabSize": f.vocab_size, "parameterCount": f.parameter_count, "architecture": f.architecture})
}

/// `expectedSpeedup = 1 + (1 − draft/primary)·0.3` (1.00x when a count is 0), `sizeRatio` in
/// percent or `'N/A'`, `recommendation` by the 50 % rule.
fn performance_estimate(primary: u64, draft: u64, compatible: bool) -> Value {
    let speedup = if primary > 0 && draft > 0 { 1.0 + (1.0 - draft as f64 / primary as f64) * 0.3 } else { 1.0 };
    let size_ratio = if primary > 0 { format!("{:.1}%", draft as f64 / primary as f64 * 100.0) } else { "N/A".into() };
    let good = compatible && (draft as f64) < primary as f64 * 0.5;
    json!({
        "expectedSpeedup": format!("{speedup:.2}x"),
        "sizeRatio": size_ratio,
        "recommendation": if good { "Good pairing" } else { "May not provide significant speedup" },
    })
}

/// `1234567` → `"1,234,567"` (the original formatted counts with Python's `{:,}`).
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The original printed Python values: an int, or `None` when the tokenizer has no such token.
fn id_text(id: Option<u32>) -> String {
    id.map_or_else(|| "None".into(), |i| i.to_string())
}

fn ids_text(ids: &[u32]) -> String {
    match ids {
        [] => "None".into(),
        [one] => one.to_string(),
        many => format!("[{}]", many.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")),
    }
}

/// A model id argument of `isDraftModelCompatible`: a non-empty string, else InvalidParams.
pub fn model_id_arg(raw: &Value, field: &str) -> EngineResult<String> {
    match raw.as_str() {
        Some(s) if !s.trim().is_empty() => Ok(s.to_string()),
        _ => Err(EngineError::invalid_params(format!("Validation error on field '{field}': model id must be a non-empty string"))
            .with_detail("field", field)),
    }
}

/// Remembered compatible pairings, primary id → draft id (the original `ModelManager.pairDraft`).
/// A pairing is forgotten when either model is unloaded.
#[derive(Debug, Default, Clone)]
pub struct DraftPairs {
    pairs: HashMap<String, String>,
}

impl DraftPairs {
    pub fn pair(&mut self, primary: &str, draft: &str) {
        self.pairs.insert(primary.to_string(), draft.to_string());
    }

    pub fn draft_for(&self, primary: &str) -> Option<&str> {
        self.pairs.get(primary).map(String::as_str)
    }

    /// Drops every pairing that involves `id` (as primary or as draft).
    pub fn forget(&mut self, id: &str) {
        self.pairs.retain(|p, d| p != id && d != id);
    }

    pub fn clear(&mut self) {
        self.pairs.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(id: &str, vocab: u64, params: u64, arch: &str) -> DraftFacts {
        DraftFacts { id: id.into(), vocab_size: Some(vocab), parameter_count: params, architecture: arch.into(), bos_id: Some(1), eos_ids: vec![2] }
    }

    #[test]
    fn compatible_small_draft_is_a_good_pairing() {
        let r = compatibility_report(&facts("big", 100, 8_000_000, "llama"), &facts("small", 100, 1_000_000, "llama"));
        assert_eq!(r["compatible"], true);
        assert_eq!(r["errors"], json!([]));
        assert_eq!(r["warnings"], json!([]));
        assert_eq!(r["details"]["primaryModel"], json!({"id": "big", "vocabSize": 100, "parameterCount": 8_000_000, "architecture": "llama"}));
        assert_eq!(r["details"]["draftModel"]["id"], "small");
        let pe = &r["details"]["performanceEstimate"];
        assert_eq!(pe["expectedSpeedup"], "1.26x");
        assert_eq!(pe["sizeRatio"], "12.5%");
        assert_eq!(pe["recommendation"], "Good pairing");
    }

    #[test]
    fn vocab_mismatch_is_the_only_error() {
        let r = compatibility_report(&facts("p", 100, 10, "llama"), &facts("d", 101, 1, "llama"));
        assert_eq!(r["compatible"], false);
        assert_eq!(
            r["errors"],
            json!(["Vocabulary size mismatch: primary=100, draft=101. Speculative decoding requires identical vocabulary."])
        );
        assert_eq!(r["details"]["performanceEstimate"]["recommendation"], "May not provide significant speedup");
    }

    #[test]
    fn architecture_size_and_special_tokens_are_warnings_in_order() {
        let p = facts("p", 100, 1_500_000, "llama");
        let mut d = facts("d", 100, 2_000_000, "qwen2");
        d.bos_id = None;
        d.eos_ids = vec![2, 7];
        let r = compatibility_report(&p, &d);
        assert_eq!(r["compatible"], true);
        assert_eq!(
            r["warnings"],
            json!([
                "Architecture mismatch: primary=llama, draft=qwen2. Different architectures may have compatibility issues.",
                "Draft model is not smaller than primary: draft=2,000,000, primary=1,500,000. Expected performance gain may not materialize.",
                "BOS token mismatch: primary=1, draft=None",
                "EOS token mismatch: primary=2, draft=[2, 7]",
            ])
        );
        let pe = &r["details"]["performanceEstimate"];
        assert_eq!(pe["expectedSpeedup"], "0.90x");
        assert_eq!(pe["sizeRatio"], "133.3%");
        assert_eq!(pe["recommendation"], "May not provide significant speedup");
    }

    #[test]
    fn unknown_architecture_and_zero_counts() {
        let r = compatibility_report(&facts("p", 5, 0, "unknown"), &facts("d", 5, 0, "llama"));
        let pe = &r["details"]["performanceEstimate"];
        assert_eq!(pe["expectedSpeedup"], "1.00x");
        assert_eq!(pe["sizeRatio"], "N/A");
        // 0 >= 0: the size warning still fires (original rule); no architecture warning.
        assert_eq!(r["warnings"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn same_model_checked_against_itself() {
        let f = facts("m", 10, 100, "llama");
        let r = compatibility_report(&f, &f);
        assert_eq!(r["compatible"], true);
        assert_eq!(r["details"]["performanceEstimate"]["expectedSpeedup"], "1.00x");
        assert_eq!(r["details"]["performanceEstimate"]["sizeRatio"], "100.0%");
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(134_515_008), "134,515,008");
    }

    #[test]
    fn model_id_args() {
        assert_eq!(model_id_arg(&json!("a/b"), "primaryId").unwrap(), "a/b");
        for bad in [json!(""), json!("  "), json!(null), json!(3), json!({})] {
            let e = model_id_arg(&bad, "draftId").unwrap_err();
            assert_eq!(e.details["field"], "draftId");
        }
    }

    #[test]
    fn pairs_are_remembered_and_forgotten() {
        let mut p = DraftPairs::default();
        p.pair("big", "small");
        assert_eq!(p.draft_for("big"), Some("small"));
        p.forget("small");
        assert_eq!(p.draft_for("big"), None);
        p.pair("big", "small");
        p.forget("big");
        assert_eq!(p.draft_for("big"), None);
    }
}
