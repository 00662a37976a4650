//! Vision streams (spec §7.12): a stream whose prompt carries images. Its prefill runs the
//! images through the vision tower and the prompt through the language model with 3-D M-RoPE
//! positions, and each decode step places the token at `offset + delta` — positions the batched
//! text pass does not model. So these rows take their own per-stream step (like speculative
//! rows), before the batched pass of the other streams: the documented fallback for continuous
//! batching. Sampling, stop handling and chunks are the stream's ordinary ones.
//!
//! Their KV state is never offered to the prompt-prefix cache (`kv_tokens` stays empty): image
//! pad ids are the same for every image, so equal ids would not mean equal keys/values.

use std::rc::Rc;

use mlx_rs::Array;

use super::{DeviceSample, GenerationStream, Step};
use crate::error::EngineResult;
use crate::vision::VisionModel;
use crate::vision::PixelPatches;

pub struct VisionState {
    model: Rc<VisionModel>,
    images: Vec<PixelPatches>,
    /// Decode position offset, known after the prefill.
    delta: Option<i64>,
}

impl GenerationStream {
    /// Makes this a vision stream over `images` (the prompt already holds their expanded tokens).
    pub fn enable_vision(&mut self, model: Rc<VisionModel>, images: Vec<PixelPatches>) {
        self.vision = Some(VisionState { model, images, delta: None });
    }

    pub fn is_vision(&self) -> bool {
        self.vision.is_some()
    }

    /// Rows the scheduler steps on their own instead of in the batched pass.
    pub fn steps_alone(&self) -> bool {
        self.is_vision() || self.is_speculating()
    }

    /// One step of a row that [`Self::steps_alone`].
    pub fn solo_step(&mut self) -> EngineResult<Step> {
        if self.is_vision() {
            self.vision_step()
        } else {
            self.speculative_step()
        }
    }

    fn vision_step(&mut self) -> EngineResult<Step> {
        let v = self.vision.as_mut().expect("vision stream");
        let logits = match v.delta {
            None => {
                let images = std::mem::take(&mut v.images);
                let (logits, delta) = v.model.prefill(&self.model.model, &self.req.prompt, &images, &mut self.cache)?;
                v.delta = Some(delta);
                self.prompt_fed = self.req.prompt.len();
                logits
            }
            Some(delta) => {
                // Pipelined like the batched pass: the previous sample may still be on the device;
                // it is fed as it is and read below, once this step's work is queued.
                let id = match self.inflight.take() {
                    Some(sample) => {
                        let id = sample.id();
                        self.fed_inflight = Some(sample);
                        id
                    }
                    None => Array::from_slice(&[self.last_token.expect("decoding without a sampled token") as i32], &[1]),
                };
                v.model.decode(&self.model.model, &id, &mut self.cache, delta)?
            }
        };
        let vocab = *logits.shape().last().unwrap_or(&0);
        let (tok, lp) = self.sample_lazy(&logits.reshape(&[vocab])?)?;
        mlx_rs::transforms::async_eval([&tok, &lp])?;
        if let Some(Step::Done) = self.settle_fed() {
            // Ended on the fed sample: this step's sample (computed one step ahead) is dropped.
            return Ok(Step::Done);
        }
        Ok(self.take_sample(DeviceSample::single(tok, lp)))
    }
}
