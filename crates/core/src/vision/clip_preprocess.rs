//! The CLIP image processor LLaVA checkpoints ship (`preprocessor_config.json`, as
//! transformers' PIL backend applies it): resize so the shorter side is `size.shortest_edge`
//! (the longer one `int(edge · long / short)`), Pillow-exact bicubic; center crop to
//! `crop_size` (zero padding where the image is smaller, as the reference does); rescale in
//! f64 then round to f32; per-channel normalization in f32. SigLIP's processor (`size` as
//! `{height, width}`, no center crop) resizes straight to that size instead. Output is
//! channels-first [3, H, W] (the tower cuts its own patches). Images more elongated than 200:1
//! are refused (a GenerationError, as with the Qwen-VL processors). Only bicubic resampling
//! (`resample` 3, what these checkpoints set) is implemented; other values are refused at load.

use std::path::Path;

use image::RgbImage;
use serde_json::Value;

use super::preprocess::PixelPatches;
use super::resize::resize_bicubic;
use crate::error::{EngineError, EngineResult};

#[derive(Debug, Clone, PartialEq)]
pub struct ClipProcessor {
    pub shortest_edge: usize,
    /// SigLIP: resize to exactly (height, width), no crop (`crop` is then that size).
    pub fixed_size: Option<(usize, usize)>,
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
        let size = v.get("size");
        let fixed_size = size.and_then(|s| uint(s.get("height")).zip(uint(s.get("width"))));
        let shortest_edge = match size {
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
        .or(fixed_size)
        .unwrap_or((336, 336));
        match v.get("resample") {
            None | Some(Value::Null) => {}
            Some(r) if r.as_u64() == Some(3) => {}
            Some(r) => return Err(EngineError::model_load(format!("preprocessor_config.json: resample {r} is not supported (3, bicubic)"))),
        }
        let triple = |k: &str, d: [f32; 3]| -> EngineResult<[f32; 3]> {
            match v.get(k) {
                None | Some(Value::Null) => Ok(d),
                Some(Value::Array(a)) if a.len() == 3 && a.iter().all(Value::is_number) => Ok([0, 1, 2].map(|i| a[i].as_f64().unwrap() as f32)),
                Some(_) => Err(EngineError::model_load(format!("preprocessor_config.json: '{k}' must be 3 numbers"))),
            }
        };
        let c = ClipProcessor {
            shortest_edge,
            fixed_size,
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
        match c.fixed_size {
            Some((h, w)) => {
                if h == 0 || w == 0 || !c.do_resize || (c.do_center_crop && c.crop != (h, w)) {
                    return Err(EngineError::model_load("preprocessor_config.json: a {height, width} size needs resizing to a non-empty size (and no other crop)"));
                }
            }
            None if c.shortest_edge == 0 || c.crop.0 == 0 || c.crop.1 == 0 || !c.do_center_crop || !c.do_resize => {
                return Err(EngineError::model_load("preprocessor_config.json: the CLIP processor needs resizing and a non-empty center crop"));
            }
            None => {}
        }
        Ok(c)
    }

    /// (height, width) after the resize (shortest edge, or SigLIP's fixed size).
    pub fn resized_size(&self, height: usize, width: usize) -> (usize, usize) {
        if let Some(size) = self.fixed_size {
            return size;
        }
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

    /// SigLIP's processor: `size` as {height, width}, no crop — the whole image, squeezed.
    #[test]
    fn a_fixed_size_resizes_the_whole_image_without_a_crop() {
        let v = json!({"image_processor_type": "SiglipImageProcessor", "size": {"height": 4, "width": 4},
                       "do_center_crop": false, "do_rescale": false, "do_normalize": false, "resample": 3});
        let p = ClipProcessor::from_value(&v, 2).unwrap();
        assert_eq!((p.fixed_size, p.crop), (Some((4, 4)), (4, 4)));
        assert_eq!(p.resized_size(70, 100), (4, 4));
        // an 8-wide image keeps its left and right edges (squeezed, not cropped)
        let wide = RgbImage::from_fn(8, 4, |x, _| image::Rgb([if x < 4 { 0 } else { 200 }, 0, 0]));
        let out = p.preprocess(&wide).unwrap();
        assert_eq!((out.rows, out.cols, out.grid_thw), (3, 16, [1, 2, 2]));
        assert!(out.data[0] < 20.0 && out.data[3] > 180.0, "{:?}", &out.data[..4]);
        let mut bilinear = v.clone();
        bilinear["resample"] = json!(2);
        assert!(ClipProcessor::from_value(&bilinear, 2).unwrap_err().message.contains("resample 2"));
        let mut no_resize = v;
        no_resize["do_resize"] = json!(false);
        assert!(ClipProcessor::from_value(&no_resize, 2).is_err());
    }
}
