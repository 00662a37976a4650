//! The Qwen2-VL / Qwen2.5-VL image processor, from the model folder's
//! `preprocessor_config.json`: "smart resize" (each side a multiple of patch × merge, total
//! pixels within [min_pixels, max_pixels], aspect ratio kept), Pillow-exact bicubic resampling,
//! rescale + per-channel normalization in f32, and temporal/spatial patching into rows of
//! C × T × P × P values ordered so that each run of merge² consecutive rows is one merged
//! 2×2 block (the layout the vision tower and its patch merger expect).

use std::path::Path;

use image::RgbImage;
use serde_json::Value;

use super::resize::resize_bicubic;
use crate::error::{EngineError, EngineResult};

#[derive(Debug, Clone, PartialEq)]
pub struct ProcessorConfig {
    pub patch_size: usize,
    pub temporal_patch_size: usize,
    pub merge_size: usize,
    pub min_pixels: u64,
    pub max_pixels: u64,
    pub rescale_factor: f32,
    pub do_rescale: bool,
    pub do_normalize: bool,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
}

impl Default for ProcessorConfig {
    /// Qwen2-VL's published defaults (CLIP mean/std, 14-pixel patches, 2×2 merge).
    fn default() -> Self {
        ProcessorConfig {
            patch_size: 14,
            temporal_patch_size: 2,
            merge_size: 2,
            min_pixels: 56 * 56,
            max_pixels: 14 * 14 * 4 * 1280,
            rescale_factor: 1.0 / 255.0,
            do_rescale: true,
            do_normalize: true,
            image_mean: [0.481_454_66, 0.457_827_5, 0.408_210_73],
            image_std: [0.268_629_54, 0.261_302_58, 0.275_777_11],
        }
    }
}

impl ProcessorConfig {
    /// Reads `preprocessor_config.json` (absent file → defaults). `min_pixels`/`max_pixels`
    /// win over `size.shortest_edge`/`size.longest_edge`, as in the reference.
    pub fn from_dir(dir: &Path) -> EngineResult<Self> {
        let path = dir.join("preprocessor_config.json");
        if !path.exists() {
            return Ok(Self::default());
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| EngineError::model_load(format!("cannot read preprocessor_config.json: {e}")))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| EngineError::model_load(format!("preprocessor_config.json is not valid JSON: {e}")))?;
        Self::from_value(&v)
    }

    pub fn from_value(v: &Value) -> EngineResult<Self> {
        let mut c = Self::default();
        let uint = |k: &str| v.get(k).and_then(Value::as_u64);
        let flag = |k: &str, d: bool| v.get(k).and_then(Value::as_bool).unwrap_or(d);
        if let Some(n) = uint("patch_size") {
            c.patch_size = n as usize;
        }
        if let Some(n) = uint("temporal_patch_size") {
            c.temporal_patch_size = n as usize;
        }
        if let Some(n) = uint("merge_size") {
            c.merge_size = n as usize;
        }
        if let Some(size) = v.get("size") {
            if let Some(n) = size.get("shortest_edge").and_then(Value::as_u64) {
                c.min_pixels = n;
            }
            if let Some(n) = size.get("longest_edge").and_then(Value::as_u64) {
                c.max_pixels = n;
            }
        }
        if let Some(n) = uint("min_pixels") {
            c.min_pixels = n;
        }
        if let Some(n) = uint("max_pixels") {
            c.max_pixels = n;
        }
        if let Some(f) = v.get("rescale_factor").and_then(Value::as_f64) {
            c.rescale_factor = f as f32;
        }
        c.do_rescale = flag("do_rescale", true);
        c.do_normalize = flag("do_normalize", true);
        let triple = |k: &str| -> EngineResult<Option<[f32; 3]>> {
            match v.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Array(a)) if a.len() == 3 && a.iter().all(Value::is_number) => {
                    Ok(Some([0, 1, 2].map(|i| a[i].as_f64().unwrap() as f32)))
                }
                Some(_) => Err(EngineError::model_load(format!("preprocessor_config.json: '{k}' must be 3 numbers"))),
            }
        };
        if let Some(m) = triple("image_mean")? {
            c.image_mean = m;
        }
        if let Some(s) = triple("image_std")? {
            c.image_std = s;
        }
        if c.patch_size == 0 || c.merge_size == 0 || c.temporal_patch_size == 0 || c.min_pixels > c.max_pixels {
            return Err(EngineError::model_load("preprocessor_config.json: invalid patch/merge sizes or pixel bounds"));
        }
        Ok(c)
    }

    /// Side multiple of the resized image (one merged token covers factor × factor pixels).
    pub fn factor(&self) -> usize {
        self.patch_size * self.merge_size
    }

    /// Target (height, width): multiples of `factor`, area within [min_pixels, max_pixels].
    /// Python's `round` (ties to even) and the float formulas are reproduced exactly.
    pub fn smart_resize(&self, height: usize, width: usize) -> EngineResult<(usize, usize)> {
        let (h, w) = (height as f64, width as f64);
        if h.max(w) / h.min(w) > 200.0 {
            return Err(EngineError::generation(format!(
                "Image aspect ratio must be at most 200, got {}",
                h.max(w) / h.min(w)
            )));
        }
        let f = self.factor() as f64;
        let mut hb = (h / f).round_ties_even() * f;
        let mut wb = (w / f).round_ties_even() * f;
        if hb * wb > self.max_pixels as f64 {
            let beta = (h * w / self.max_pixels as f64).sqrt();
            hb = f.max((h / beta / f).floor() * f);
            wb = f.max((w / beta / f).floor() * f);
        } else if hb * wb < self.min_pixels as f64 {
            let beta = (self.min_pixels as f64 / (h * w)).sqrt();
            hb = (h * beta / f).ceil() * f;
            wb = (w * beta / f).ceil() * f;
        }
        Ok((hb as usize, wb as usize))
    }

    /// Number of language-model tokens the image will take (no pixels touched).
    pub fn num_image_tokens(&self, height: usize, width: usize) -> EngineResult<usize> {
        let (h, w) = self.smart_resize(height, width)?;
        Ok((h / self.patch_size) * (w / self.patch_size) / (self.merge_size * self.merge_size))
    }
}

/// One preprocessed image: `data` is row-major [rows, cols] f32.
#[derive(Debug, Clone)]
pub struct PixelPatches {
    pub data: Vec<f32>,
    pub rows: usize,
    pub cols: usize,
    /// (t, h, w) in patches.
    pub grid_thw: [usize; 3],
}

impl PixelPatches {
    /// Language-model tokens this image occupies after the merger.
    pub fn num_tokens(&self, merge_size: usize) -> usize {
        self.grid_thw.iter().product::<usize>() / (merge_size * merge_size)
    }
}

/// Resizes, normalizes and patches one RGB image.
pub fn preprocess(img: &RgbImage, cfg: &ProcessorConfig) -> EngineResult<PixelPatches> {
    let (rh, rw) = cfg.smart_resize(img.height() as usize, img.width() as usize)?;
    let resized = resize_bicubic(img, rw as u32, rh as u32);
    // planar, normalized: plane[c][y * rw + x]
    let mut planes = vec![vec![0f32; rh * rw]; 3];
    for (i, px) in resized.pixels().enumerate() {
        for c in 0..3 {
            let mut v = px.0[c] as f32;
            if cfg.do_rescale {
                v *= cfg.rescale_factor;
            }
            if cfg.do_normalize {
                v = (v - cfg.image_mean[c]) / cfg.image_std[c];
            }
            planes[c][i] = v;
        }
    }
    let (p, t, m) = (cfg.patch_size, cfg.temporal_patch_size, cfg.merge_size);
    let (gh, gw) = (rh / p, rw / p);
    let cols = 3 * t * p * p;
    let rows = gh * gw;
    let mut data = Vec::with_capacity(rows * cols);
    // rows ordered (block_y, block_x, inner_y, inner_x); columns (channel, frame, py, px),
    // the still image repeated over the temporal frames
    for by in 0..gh / m {
        for bx in 0..gw / m {
            for iy in 0..m {
                for ix in 0..m {
                    let (y0, x0) = ((by * m + iy) * p, (bx * m + ix) * p);
                    for plane in &planes {
                        for _frame in 0..t {
                            for py in 0..p {
                                let start = (y0 + py) * rw + x0;
                                data.extend_from_slice(&plane[start..start + p]);
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(PixelPatches { data, rows, cols, grid_thw: [1, gh, gw] })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(min: u64, max: u64) -> ProcessorConfig {
        ProcessorConfig { min_pixels: min, max_pixels: max, ..Default::default() }
    }

    #[test]
    fn smart_resize_rounds_half_to_even_and_respects_bounds() {
        let c = cfg(28 * 28 * 4, 28 * 28 * 24);
        // 70 / 28 = 2.5 rounds to 2 (ties to even), 100 / 28 = 3.57 -> 4
        assert_eq!(c.smart_resize(70, 100).unwrap(), (56, 112));
        // too big: scaled down to fit max_pixels
        let (h, w) = c.smart_resize(480, 640).unwrap();
        assert!(h * w <= 28 * 28 * 24 && h % 28 == 0 && w % 28 == 0, "{h}x{w}");
        assert_eq!((h, w), (112, 140));
        // too small: scaled up to reach min_pixels
        assert_eq!(c.smart_resize(30, 20).unwrap(), (84, 56));
        assert!(c.smart_resize(1, 300).is_err());
    }

    #[test]
    fn patch_layout_groups_merge_blocks() {
        // 56x56 image whose pixel value encodes its position: after patching, row r's first
        // column is channel 0, frame 0, top-left pixel of patch r.
        let c = ProcessorConfig { do_normalize: false, do_rescale: false, min_pixels: 0, ..cfg(0, 1 << 30) };
        let img = RgbImage::from_fn(56, 56, |x, y| image::Rgb([(x / 14) as u8, (y / 14) as u8, 0]));
        let p = preprocess(&img, &c).unwrap();
        assert_eq!(p.grid_thw, [1, 4, 4]);
        assert_eq!((p.rows, p.cols), (16, 3 * 2 * 14 * 14));
        let patch_xy = |r: usize| (p.data[r * p.cols], p.data[r * p.cols + 2 * 14 * 14]);
        // first merged block: patches (0,0), (1,0), (0,1), (1,1) as (x, y)
        assert_eq!([patch_xy(0), patch_xy(1), patch_xy(2), patch_xy(3)], [(0., 0.), (1., 0.), (0., 1.), (1., 1.)]);
        // second block starts at x = 2
        assert_eq!(patch_xy(4), (2., 0.));
        // the temporal copy repeats the frame
        assert_eq!(p.data[14 * 14], p.data[0]);
        assert_eq!(p.num_tokens(2), 4);
    }

    #[test]
    fn reads_config_values() {
        let v = serde_json::json!({"min_pixels": 100, "max_pixels": 1000, "patch_size": 16,
            "size": {"shortest_edge": 5, "longest_edge": 50}, "image_mean": [0.5, 0.5, 0.5]});
        let c = ProcessorConfig::from_value(&v).unwrap();
        assert_eq!((c.min_pixels, c.max_pixels, c.patch_size), (100, 1000, 16));
        assert_eq!(c.image_mean, [0.5; 3]);
        assert!(ProcessorConfig::from_value(&serde_json::json!({"image_std": [1, 2]})).is_err());
    }
}
