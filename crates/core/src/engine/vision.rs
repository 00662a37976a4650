//! The engine's vision entry points (spec §7.12): `loadVisionModel` and vision streams. Image
//! reading, downloading, decoding and preprocessing run on a blocking worker thread of the
//! caller's runtime — never on the engine thread — between two short engine commands: one that
//! looks up the model's image processor, one that starts the stream with the pixel tensors.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::mpsc as tmpsc;

use super::commands::{Command, LoadReply, StartStream, VisionStart};
use super::{ActiveSlot, Engine, StreamControl, StreamHandle};
use crate::error::{EngineError, EngineResult};
use crate::params::{normalize_generator_params, normalize_load_options, normalize_stream_options, StreamOptions};
use crate::vision::image_input::{load_rgb, ImageLimits, ImageSource};
use crate::vision::{ImageProcessor, PixelPatches};
use crate::vision::request::{load_options_of, parse_vision_request};

impl Engine {
    pub async fn load_vision_model(&self, raw: &Value) -> EngineResult<LoadReply> {
        let opts = normalize_load_options(&load_options_of(raw)?)?;
        let epoch = self.shutdown_epoch();
        self.request_in_epoch(epoch, |reply| Command::LoadVision { opts, reply }).await
    }

    /// Validates the request, prepares its images off the engine thread and starts the stream.
    pub async fn create_vision_stream(&self, raw: &Value, options: &Value) -> EngineResult<StreamHandle> {
        let req = parse_vision_request(raw)?;
        let params = normalize_generator_params(&req.generator_params)?;
        let StreamOptions { stream_id, timeout_ms } = normalize_stream_options(options)?;
        let model = req.model.clone();
        let processor: ImageProcessor = self.request(|reply| Command::VisionProcessor { model, reply }).await?;
        let sources = req.images.clone();
        let images = tokio::task::spawn_blocking(move || prepare_images(&sources, &processor))
            .await
            .map_err(|_| EngineError::generation("image preprocessing was interrupted"))??;
        let id = stream_id.unwrap_or_else(|| format!("vision-{}-{}", std::process::id(), self.next_stream.fetch_add(1, Ordering::Relaxed)));
        let (tx, rx) = tmpsc::unbounded_channel();
        let cancel = Arc::new(AtomicU8::new(0));
        let vision = Some(VisionStart { prompt: req.prompt, images });
        let start = StartStream { params, id: id.clone(), timeout_ms, tx, cancel: cancel.clone(), vision };
        self.request(|reply| Command::Start { start: Box::new(start), reply }).await?;
        self.active.fetch_add(1, Ordering::AcqRel);
        let slot = Arc::new(ActiveSlot { counter: self.active.clone(), released: Default::default() });
        Ok(StreamHandle { id, rx, control: StreamControl { cancel, slot } })
    }
}

/// Reads, decodes and preprocesses every image (plain CPU and I/O work).
pub fn prepare_images(sources: &[String], processor: &ImageProcessor) -> EngineResult<Vec<PixelPatches>> {
    let limits = ImageLimits::default();
    sources
        .iter()
        .map(|s| {
            let img = load_rgb(&ImageSource::parse(s)?, &limits)?;
            processor.preprocess(&img)
        })
        .collect()
}
