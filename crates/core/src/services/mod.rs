//! The engine's services (the seed's ADR-011 split, natively): runtime lifecycle (the engine
//! thread, in `crate::engine`), model lifecycle, model source (local or Hugging Face hub), generation, runtime info, draft-model compatibility.

pub mod blas;
pub mod blas_rows;
pub mod cpu_attention;
pub mod draft_compat;
pub mod generation;
pub mod mlx_env;
pub mod model_lifecycle;
pub mod model_source;
pub mod runtime_info;
pub mod small_gemm;
