//! The CLIP image processor LLaVA checkpoints ship (`preprocessor_config.json`, as
//! transformers' PIL backend applies it): resize so the shorter side is `size.shortest_edge`
//! (the longer one `int(edge · long / short)`), Pillow-exact bicubic; center crop to
//! `crop_size` (zero padding where the image is smaller, as the reference does); rescale in
//! f64 then round to f32; per-channel normalization in f32. Output is channels-first
//! [3, H, W] (the tower cuts its own patches). Images more elongated than 200:1 are refused
//! (a GenerationError, as with the Qwen-VL processors).

use std::path::Path;

use image::RgbImage;
use serde_json::Value;

use super::preprocess::PixelPatches;
use super::resize::resize_bicubic;
use crate::error::{EngineError, EngineResult};

#[derive(Debug, Clone, PartialEq)]
pub struct ClipProcessor {
    pub shortest_edge: usize,
    pub crop: (usize, usize),
    pub do_resize: bool,
    pub do_center_crop: bool,
    pub do_rescale: bool,
    pub rescale_factor: f64,
    pub do_normalize: bool,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
    pub patch_size: usize,
}

impl ClipProcessor {
    /// OpenAI CLIP defaults (336-pixel LLaVA-1.5 sizes) overridden by the folder's
    /// `preprocessor_config.json`.
    pub fn from_dir(dir: &Path, patch_size: usize) -> EngineResult<Self> {
        let path = dir.join("preprocessor_config.json");
        let v: Value = match std::fs::read_to_string(&path) {
            Ok(t) => serde_json::from_str(&t).map_err(|e| EngineError::model_load(format!("preprocessor_config.json is not valid JSON: {e}")))?,
            Err(_) => Value::Null,
        };
        Self::from_value(&v, patch_size)
    }

    pub fn from_value(v: &Value, patch_size: usize) -> EngineResult<Self> {
        let flag = |k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(true);
        let uint = |x: Option<&Value>| x.and_then(Value::as_u64).map(|n| n as usize);
        let shortest_edge = match v.get("size") {
            Some(Value::Number(n)) => n.as_u64().map(|n| n as usize),
            Some(s) => uint(s.get("shortest_edge")),
            None => None,
        }
        .unwrap_or(336);
        let crop = match v.get("crop_size") {
            Some(Value::Number(n)) => n.as_u64().map(|n| (n as usize, n as usize)),
            Some(c) => uint(c.get("height")).zip(uint(c.get("width"))),
            None => None,
        }
        .unwrap_or((336, 336));
        let triple = |k: &str, d: [f32; 3]| -> EngineResult<[f32; 3]> {
            match v.get(k) {
                None | Some(Value::Null) => Ok(d),
                Some(Value::Array(a)) if a.len() == 3 && a.iter().all(Value::is_number) => Ok([0, 1, 2].map(|i| a[i].as_f64().unwrap() as f32)),
                Some(_) => Err(EngineError::model_load(format!("preprocessor_config.json: '{k}' must be 3 numbers"))),
            }
        };
        let c = ClipProcessor {
            shortest_edge,
            crop,
            do_resize: flag("do_resize"),
            do_center_crop: flag("do_center_crop"),
            do_rescale: flag("do_rescale"),
            rescale_factor: v.get("rescale_factor").and_then(Value::as_f64).unwrap_or(1.0 / 255.0),
            do_normalize: flag("do_normalize"),
            image_mean: triple("image_mean", [0.481_454_66, 0.457_827_5, 0.408_210_73])?,
            image_std: triple("image_std", [0.268_629_54, 0.261_302_58, 0.275_777_11])?,
            patch_size,
        };
        if c.shortest_edge == 0 || c.crop.0 == 0 || c.crop.1 == 0 || !c.do_center_crop || !c.do_resize {
            return Err(EngineError::model_load("preprocessor_config.json: the CLIP processor needs resizing and a non-empty center crop"));
        }
        Ok(c)
    }

    /// (height, width) after the shortest-edge resize.
    pub fn resized_size(&self, height: usize, width: usize) -> (usize, usize) {
        let (short, long) = if width <= height { (width, height) } else { (height, width) };
        let new_long = (self.shortest_edge as f64 * long as f64 / short as f64) as usize;
        if width <= height {
            (new_long, self.shortest_edge)
        } else {
            (self.shortest_edge, new_long)
        }
    }

    /// Resized, cropped, normalized pixels [3, crop_h, crop_w] of one image.
    pub fn preprocess(&self, img: &RgbImage) -> EngineResult<PixelPatches> {
        let (h, w) = (img.height() as f64, img.width() as f64);
        // As the Qwen-VL processors do: a sliver would be resized to a huge intermediate image
        // only to have its center cropped.
        if h.max(w) / h.min(w) > 200.0 {
            return Err(EngineError::generation(format!("Image aspect ratio must be at most 200, got {}", h.max(w) / h.min(w))));
        }
        let (rh, rw) = self.resized_size(img.height() as usize, img.width() as usize);
        let resized = resize_bicubic(img, rw as u32, rh as u32);
        let (ch, cw) = self.crop;
        // the reference floors (h - ch) / 2; where the image is smaller it pads with zeros so
        // that the image sits ceil((ch - h) / 2) rows down
        let offset = |size: usize, crop: usize| -> i64 {
            if size >= crop {
                ((size - crop) / 2) as i64
            } else {
                -(((crop - size) as i64 + 1) / 2)
            }
        };
        let (top, left) = (offset(rh, ch), offset(rw, cw));
        let mut data = vec![0f32; 3 * ch * cw];
        for y in 0..ch {
            for x in 0..cw {
                let (sy, sx) = (y as i64 + top, x as i64 + left);
                let px = if (0..rh as i64).contains(&sy) && (0..rw as i64).contains(&sx) {
                    resized.get_pixel(sx as u32, sy as u32).0
                } else {
                    [0, 0, 0]
                };
                for c in 0..3 {
                    let mut v = px[c] as f32;
                    if self.do_rescale {
                        v = (px[c] as f64 * self.rescale_factor) as f32;
                    }
                    if self.do_normalize {
                        v = (v - self.image_mean[c]) / self.image_std[c];
                    }
                    data[(c * ch + y) * cw + x] = v;
                }
            }
        }
        let p = self.patch_size;
        Ok(PixelPatches { data, rows: 3, cols: ch * cw, grid_thw: [1, ch / p, cw / p] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn proc(edge: usize, crop: usize) -> ClipProcessor {
        ClipProcessor::from_value(&json!({"size": {"shortest_edge": edge}, "crop_size": {"height": crop, "width": crop}}), 14).unwrap()
    }

    #[test]
    fn shortest_edge_resize_truncates_the_long_side() {
        let p = proc(56, 56);
        assert_eq!(p.resized_size(70, 100), (56, 80));
        assert_eq!(p.resized_size(30, 20), (84, 56));
        assert_eq!(p.resized_size(97, 33), (164, 56));
        let sliver = RgbImage::new(300, 1);
        assert!(p.preprocess(&sliver).unwrap_err().message.contains("aspect ratio"));
    }

    #[test]
    fn crops_the_center_and_pads_small_images() {
        // crop larger than the resized image: zero padding (before normalization) around it
        let p = ClipProcessor { do_normalize: false, do_rescale: false, ..proc(4, 6) };
        let img = RgbImage::from_pixel(4, 4, image::Rgb([9, 9, 9]));
        let out = p.preprocess(&img).unwrap();
        assert_eq!((out.rows, out.cols), (3, 36));
        let row = |y: usize| out.data[y * 6..y * 6 + 6].to_vec();
        assert_eq!(row(0), vec![0.0; 6]);
        assert_eq!(row(1), vec![0.0, 9.0, 9.0, 9.0, 9.0, 0.0]);
        assert_eq!(row(5), vec![0.0; 6]);
        // a wide image keeps its middle columns
        let wide = RgbImage::from_fn(8, 4, |x, _| image::Rgb([x as u8, 0, 0]));
        let out = ClipProcessor { do_normalize: false, do_rescale: false, ..proc(4, 4) }.preprocess(&wide).unwrap();
        assert_eq!(out.data[..4].to_vec(), vec![2.0, 3.0, 4.0, 5.0]);
    }
}
