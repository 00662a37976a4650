//! The one domain error type of the engine. It carries the spec's error `code`, a message for
//! humans, structured `details` (→ `EngineClientError.details`) and a `retryable` hint. It is
//! mapped to a JavaScript `EngineClientError` exactly once, at the napi boundary.

use serde::Serialize;
use serde_json::{Map, Value};

/// The spec's `EngineErrorCode` values that this engine produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ErrorCode {
    InvalidParams,
    ModelLoadError,
    ModelNotLoaded,
    GenerationError,
    TokenizerError,
    GuidanceError,
    RuntimeError,
    Timeout,
    Cancelled,
    ServerError,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidParams => "InvalidParams",
            ErrorCode::ModelLoadError => "ModelLoadError",
            ErrorCode::ModelNotLoaded => "ModelNotLoaded",
            ErrorCode::GenerationError => "GenerationError",
            ErrorCode::TokenizerError => "TokenizerError",
            ErrorCode::GuidanceError => "GuidanceError",
            ErrorCode::RuntimeError => "RuntimeError",
            ErrorCode::Timeout => "Timeout",
            ErrorCode::Cancelled => "Cancelled",
            ErrorCode::ServerError => "ServerError",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct EngineError {
    pub code: ErrorCode,
    pub message: String,
    /// Always a JSON object (possibly empty); becomes `EngineClientError.details` when non-empty.
    pub details: Map<String, Value>,
    pub retryable: bool,
}

pub type EngineResult<T> = Result<T, EngineError>;

impl EngineError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        EngineError { code, message: message.into(), details: Map::new(), retryable: false }
    }

    /// Adds one `details` entry.
    pub fn with_detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    pub fn retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidParams, message)
    }
    pub fn model_load(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ModelLoadError, message)
    }
    pub fn model_not_loaded(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::ModelNotLoaded, message)
    }
    pub fn generation(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::GenerationError, message)
    }
    pub fn tokenizer(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::TokenizerError, message)
    }
    pub fn runtime(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::RuntimeError, message)
    }

    /// The JSON object `{code, message, details?, retryable}` sent across the napi boundary.
    pub fn to_json(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("code".into(), Value::from(self.code.as_str()));
        obj.insert("message".into(), Value::from(self.message.clone()));
        if !self.details.is_empty() {
            obj.insert("details".into(), Value::Object(self.details.clone()));
        }
        obj.insert("retryable".into(), Value::from(self.retryable));
        Value::Object(obj)
    }
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for EngineError {}

impl From<mlx_rs::error::Exception> for EngineError {
    fn from(e: mlx_rs::error::Exception) -> Self {
        EngineError::generation(format!("MLX error: {}", e.what()))
    }
}
