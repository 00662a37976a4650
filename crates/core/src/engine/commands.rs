//! Messages from the engine handle (any thread) to the engine thread, each with its reply channel.

use std::sync::atomic::AtomicU8;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::{mpsc::UnboundedSender, oneshot};

use crate::error::EngineResult;
use crate::generation::Chunk;
use crate::params::{GeneratorParams, LoadModelOptions, TokenizeRequest};

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
}

pub enum Command {
    Load { opts: LoadModelOptions, reply: oneshot::Sender<EngineResult<LoadReply>> },
    Unload { id: String, reply: oneshot::Sender<EngineResult<()>> },
    Tokenize { req: TokenizeRequest, reply: oneshot::Sender<EngineResult<TokenizeReply>> },
    Start { start: Box<StartStream>, reply: oneshot::Sender<EngineResult<()>> },
    Shutdown { reply: oneshot::Sender<()> },
}
