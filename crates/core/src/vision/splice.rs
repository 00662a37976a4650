//! Image features spliced into a prompt's token embeddings: each image-token position takes the
//! next feature row, in order (both families expand an image's placeholder to exactly as many
//! tokens as its features, checked before this runs).

use mlx_rs::error::Exception;
use mlx_rs::{ops, Array};

/// `text` [1, L, hidden] (the embeddings of `tokens`) with the `image_token` positions replaced
/// by the rows of `features` (each [n, hidden], in prompt order), which take the embeddings'
/// dtype → [1, L, hidden]. No features: `text` as is.
pub(crate) fn splice_features(text: Array, tokens: &[u32], image_token: u32, features: Vec<Array>) -> Result<Array, Exception> {
    if features.is_empty() {
        return Ok(text);
    }
    let len = tokens.len() as i32;
    let mut parts = vec![text.reshape(&[len, -1])?];
    for f in features {
        parts.push(f.as_dtype(text.dtype())?);
    }
    // row l of the result: token l's embedding, or the next image feature
    let mut next = len;
    let idx: Vec<i32> = tokens.iter().enumerate().map(|(l, &t)| if t == image_token { next += 1; next - 1 } else { l as i32 }).collect();
    ops::concatenate(&parts, 0)?.take_axis(&Array::from_slice(&idx, &[len]), 0)?.reshape(&[1, len, -1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_positions_take_the_feature_rows_in_order() {
        let text = Array::from_slice(&[0f32, 0., 1., 1., 2., 2., 3., 3.], &[1, 4, 2]);
        let feats = vec![Array::from_slice(&[10f32, 10.], &[1, 2]), Array::from_slice(&[20f32, 20.], &[1, 2])];
        let out = splice_features(text, &[5, 9, 6, 9], 9, feats).unwrap();
        assert_eq!(out.shape(), &[1, 4, 2]);
        assert_eq!(out.as_slice::<f32>(), &[0., 0., 10., 10., 2., 2., 20., 20.]);
    }
}
