//! Messages from the engine handle (any thread) to the engine thread, each with its reply channel.

use std::sync::atomic::AtomicU8;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::{mpsc::UnboundedSender, oneshot};

use crate::error::EngineResult;
use crate::generation::Chunk;
use crate::hub::ResolvedModel;
use crate::params::{GeneratorParams, LoadModelOptions, TokenizeRequest};
use crate::vision::{ImageProcessor, PixelPatches};

#[derive(Debug)]
pub struct LoadReply {
    pub handle: Value,
    /// true when the same model and options were already loaded (no reload happened)
    pub cached: bool,
    /// models evicted (least recently used) to make room
    pub evicted: Vec<String>,
}

#[derive(Debug)]
pub struct TokenizeReply {
    pub tokens: Vec<u32>,
    pub token_strings: Vec<String>,
}

pub struct StartStream {
    pub params: GeneratorParams,
    pub id: String,
    pub timeout_ms: Option<u64>,
    pub tx: UnboundedSender<Chunk>,
    pub cancel: Arc<AtomicU8>,
    /// A vision request: the user's prompt and the preprocessed images.
    pub vision: Option<VisionStart>,
}

pub struct VisionStart {
    pub prompt: String,
    pub images: Vec<PixelPatches>,
}

pub enum Command {
    /// `source`: the local snapshot of a hub model (resolved before the command is sent).
    Load { opts: LoadModelOptions, source: Option<ResolvedModel>, reply: oneshot::Sender<EngineResult<LoadReply>> },
    Unload { id: String, reply: oneshot::Sender<EngineResult<()>> },
    Tokenize { req: TokenizeRequest, reply: oneshot::Sender<EngineResult<TokenizeReply>> },
    Start { start: Box<StartStream>, reply: oneshot::Sender<EngineResult<()>> },
    LoadVision { opts: LoadModelOptions, reply: oneshot::Sender<EngineResult<LoadReply>> },
    /// The image processor of a loaded vision model (ModelNotLoaded otherwise).
    VisionProcessor { model: String, reply: oneshot::Sender<EngineResult<ImageProcessor>> },
    Shutdown { reply: oneshot::Sender<()> },
    CheckDraft(CheckDraft),
    TokenizeBatch(TokenizeBatch),
}

/// One entry of a batched reply: each request succeeds or fails on its own (error isolation,
/// as the original `batch_tokenize` / `batch_check_draft` runtime methods did).
pub type BatchReply<T> = Vec<EngineResult<T>>;

/// Spec §7.8 draft compatibility for several (primary, draft) pairs in one engine round trip.
pub struct CheckDraft {
    pub pairs: Vec<(String, String)>,
    pub reply: oneshot::Sender<EngineResult<BatchReply<Value>>>,
}

/// Several tokenize requests in one engine round trip; requests that failed validation on the
/// caller's thread travel as their error and come back unchanged in their place.
pub struct TokenizeBatch {
    pub reqs: Vec<EngineResult<TokenizeRequest>>,
    pub reply: oneshot::Sender<EngineResult<BatchReply<TokenizeReply>>>,
}
