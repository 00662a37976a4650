//! `NativeStream`: the pull side of one generation stream. `next()` resolves with every chunk
//! that is ready (at least one), `[]` after the end; `cancel()` is synchronous.

use std::sync::Arc;

use mlx_serving_core::{StreamControl, StreamHandle};
use napi_derive::napi;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::convert::chunk_to_json;

#[napi]
pub struct NativeStream {
    id: String,
    handle: Arc<Mutex<StreamHandle>>,
    control: StreamControl,
}

impl NativeStream {
    pub fn new(handle: StreamHandle) -> Self {
        NativeStream { id: handle.id.clone(), control: handle.control(), handle: Arc::new(Mutex::new(handle)) }
    }
}

#[napi]
impl NativeStream {
    #[napi(getter)]
    pub fn id(&self) -> String {
        self.id.clone()
    }

    #[napi]
    pub async fn next(&self) -> Vec<Value> {
        let handle = self.handle.clone();
        let mut guard = handle.lock().await;
        guard.next_batch().await.into_iter().map(chunk_to_json).collect()
    }

    /// reason: 'return' (default) ends silently; 'abort' ends with a Cancelled error chunk.
    #[napi]
    pub fn cancel(&self, reason: Option<String>) {
        self.control.cancel(reason.as_deref() == Some("abort"));
    }
}
