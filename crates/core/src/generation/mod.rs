//! Token generation: KV cache, sampler, structured-output constraints, per-stream state machine
//! and the chunks it emits.

pub mod batch_kv;
pub mod chunk;
pub mod constraint;
pub mod kv_cache;
pub mod prefix_cache;
pub mod rotating_cache;
pub mod mask_worker;
pub mod sampler;
pub mod stream;

pub use chunk::{Chunk, FinishReason, GenerationStats};
