//! Multimodal rotary positions (M-RoPE) of the Qwen2-VL language model. Every token has three
//! position components (temporal, height, width). Text tokens use the same running position in
//! all three; the merged tokens of an image get (t, row, column) of their place in the merged
//! grid, offset by the position where the image starts, and the text after the image continues
//! from the largest position used + 1. The rotary frequencies are split in three consecutive
//! sections, each driven by one component. After the prompt, generated tokens sit at
//! `cache offset + delta`, where `delta` = (largest prompt position + 1) − prompt length.

use mlx_rs::{ops, Array, Dtype};

use crate::models::llama::RotaryTables;

type MlxResult<T> = Result<T, mlx_rs::error::Exception>;

/// Positions [3][L] of a prompt and the decode offset `delta`.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptPositions {
    pub pos: [Vec<i64>; 3],
    pub delta: i64,
}

/// `grids`: (t, h, w) in patches of each image, in prompt order; an image is a run of
/// `image_token` ids right after a `vision_start` token. Image runs whose grid is missing
/// are treated as text (the caller checks token/feature counts separately).
pub fn prompt_positions(tokens: &[u32], grids: &[[usize; 3]], image_token: u32, vision_start: u32, merge: usize) -> PromptPositions {
    let mut pos: [Vec<i64>; 3] = [Vec::with_capacity(tokens.len()), Vec::with_capacity(tokens.len()), Vec::with_capacity(tokens.len())];
    let mut next = 0i64; // the next text position
    let mut i = 0usize;
    let mut image = 0usize;
    while i < tokens.len() {
        let starts_image = tokens[i] == image_token && i > 0 && tokens[i - 1] == vision_start && image < grids.len();
        if !starts_image {
            for p in pos.iter_mut() {
                p.push(next);
            }
            next += 1;
            i += 1;
            continue;
        }
        let [t, h, w] = grids[image];
        let (gh, gw) = (h / merge, w / merge);
        let mut max = next;
        for ti in 0..t {
            for yi in 0..gh {
                for xi in 0..gw {
                    let c = [ti as i64, yi as i64, xi as i64].map(|v| v + next);
                    for (p, v) in pos.iter_mut().zip(c) {
                        p.push(v);
                        max = max.max(v);
                    }
                }
            }
        }
        i += t * gh * gw;
        image += 1;
        next = max + 1;
    }
    // a run cut short by the prompt's end leaves extra entries: keep exactly one per token
    for p in pos.iter_mut() {
        p.truncate(tokens.len());
    }
    let delta = next - tokens.len() as i64;
    PromptPositions { pos, delta }
}

/// The language model's rotary frequencies 1 / base^(2i / head_dim), as the reference computes
/// them (f32).
pub fn inv_freq(head_dim: i32, base: f32) -> MlxResult<Array> {
    let exps = ops::divide(&ops::arange::<_, f32>(0, head_dim, 2)?, &Array::from_f32(head_dim as f32))?;
    ops::divide(&Array::from_f32(1.0), &ops::power(&Array::from_f32(base), &exps)?)
}

/// cos/sin tables [1, 1, L, head_dim] for positions `pos` ([3][L]): frequency i uses the
/// component its section names (chunked layout), and the halves repeat (rotate-half rope).
/// Computed in f32 and cast to `dtype`, the activations' (mlx-vlm casts its cos/sin the same way
/// before rotating; f32 tables would promote bf16 queries and keys).
pub fn tables(pos: &[Vec<i64>; 3], inv_freq: &Array, section: [usize; 3], dtype: Dtype) -> MlxResult<RotaryTables> {
    let half = section.iter().sum::<usize>();
    let len = pos[0].len();
    let axis_of = |f: usize| if f < section[0] { 0 } else if f < section[0] + section[1] { 1 } else { 2 };
    let mut sel = Vec::with_capacity(len * half);
    for l in 0..len {
        for f in 0..half {
            sel.push(pos[axis_of(f)][l] as f32);
        }
    }
    let freqs = ops::multiply(&Array::from_slice(&sel, &[len as i32, half as i32]), inv_freq)?;
    let emb = ops::concatenate(&[freqs.clone(), freqs], 1)?.reshape(&[1, 1, len as i32, 2 * half as i32])?;
    Ok(RotaryTables { cos: ops::cos(&emb)?.as_dtype(dtype)?, sin: ops::sin(&emb)?.as_dtype(dtype)? })
}

/// Tables for `len` text-only positions starting at `start` (all three components equal).
pub fn text_tables(start: i64, len: usize, inv_freq: &Array, section: [usize; 3], dtype: Dtype) -> MlxResult<RotaryTables> {
    let p: Vec<i64> = (start..start + len as i64).collect();
    tables(&[p.clone(), p.clone(), p], inv_freq, section, dtype)
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMG: u32 = 9;
    const VS: u32 = 8;

    #[test]
    fn text_only_positions_are_sequential() {
        let p = prompt_positions(&[1, 2, 3], &[], IMG, VS, 2);
        assert_eq!(p.pos[0], vec![0, 1, 2]);
        assert_eq!(p.pos[2], vec![0, 1, 2]);
        assert_eq!(p.delta, 0);
    }

    #[test]
    fn image_tokens_get_grid_positions() {
        // text(2) vision_start, image 4x6 patches -> 2x3 merged tokens, then vision_end + text(1)
        let mut toks = vec![1, 2, VS];
        toks.extend([IMG; 6]);
        toks.extend([7, 3]);
        let p = prompt_positions(&toks, &[[1, 4, 6]], IMG, VS, 2);
        // image starts at position 3
        assert_eq!(p.pos[0][3..9], [3, 3, 3, 3, 3, 3]);
        assert_eq!(p.pos[1][3..9], [3, 3, 3, 4, 4, 4]);
        assert_eq!(p.pos[2][3..9], [3, 4, 5, 3, 4, 5]);
        // text resumes after the largest position (5) + 1
        assert_eq!(p.pos[0][9..], [6, 7]);
        assert_eq!(p.delta, 8 - toks.len() as i64);
    }

    #[test]
    fn tables_match_plain_rope_for_text() {
        let inv = inv_freq(16, 10000.0).unwrap();
        let t = text_tables(5, 3, &inv, [4, 2, 2], Dtype::Float32).unwrap();
        assert_eq!(text_tables(5, 3, &inv, [4, 2, 2], Dtype::Bfloat16).unwrap().sin.dtype(), Dtype::Bfloat16);
        assert_eq!(t.cos.shape(), &[1, 1, 3, 16]);
        let c: Vec<f32> = t.cos.as_slice::<f32>().to_vec();
        // position 5, frequency 0 (= 1.0) and its repeat in the second half
        assert!((c[0] - 5f32.cos()).abs() < 1e-6 && (c[8] - 5f32.cos()).abs() < 1e-6);
    }
}
