//! ggml's tensor encodings, decoded from the raw GGUF bytes: F32/F16/BF16, the 32-element
//! blocks Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 and the 256-element K-quant super-blocks Q2_K…Q6_K (layouts
//! from the GGUF format's block definitions). `dequantize` gives f32 exactly as ggml computes
//! it (f16 block scales widened to f32, products in f32); `to_affine` re-expresses
//! Q4_0/Q4_1/Q8_0 as MLX's affine quantization (group 32) without loss, as MLX's loader does.

use half::f16;

pub const F32: u32 = 0;
pub const F16: u32 = 1;
pub const Q4_0: u32 = 2;
pub const Q4_1: u32 = 3;
pub const Q5_0: u32 = 6;
pub const Q5_1: u32 = 7;
pub const Q8_0: u32 = 8;
pub const Q2_K: u32 = 10;
pub const Q3_K: u32 = 11;
pub const Q4_K: u32 = 12;
pub const Q5_K: u32 = 13;
pub const Q6_K: u32 = 14;
pub const BF16: u32 = 30;

/// (elements per block, bytes per block) of a supported type.
fn block(ty: u32) -> Option<(u64, usize)> {
    Some(match ty {
        F32 => (1, 4),
        F16 | BF16 => (1, 2),
        Q4_0 => (32, 18),
        Q4_1 => (32, 20),
        Q5_0 => (32, 22),
        Q5_1 => (32, 24),
        Q8_0 => (32, 34),
        Q2_K => (256, 84),
        Q3_K => (256, 110),
        Q4_K => (256, 144),
        Q5_K => (256, 176),
        Q6_K => (256, 210),
        _ => return None,
    })
}

pub fn type_name(ty: u32) -> String {
    let known = [
        (F32, "F32"), (F16, "F16"), (Q4_0, "Q4_0"), (Q4_1, "Q4_1"), (Q5_0, "Q5_0"), (Q5_1, "Q5_1"), (Q8_0, "Q8_0"),
        (Q2_K, "Q2_K"), (Q3_K, "Q3_K"), (Q4_K, "Q4_K"), (Q5_K, "Q5_K"), (Q6_K, "Q6_K"), (BF16, "BF16"),
    ];
    known.iter().find(|(t, _)| *t == ty).map_or(format!("type {ty}"), |(_, n)| n.to_string())
}

/// Bytes a tensor of `elements` values of type `ty` occupies.
pub fn byte_size(ty: u32, elements: u64) -> Result<usize, String> {
    let (per, bytes) = block(ty).ok_or_else(|| format!("has unsupported tensor type {} (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)", type_name(ty)))?;
    if elements % per != 0 {
        return Err(format!("has {elements} elements, not a multiple of the {} block size {per}", type_name(ty)));
    }
    usize::try_from(elements / per).ok().and_then(|b| b.checked_mul(bytes)).ok_or_else(|| "is too large".to_string())
}

fn h(b: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

/// Decodes `data` (exactly `byte_size(ty, n)` bytes) into f32 values.
pub fn dequantize(ty: u32, data: &[u8]) -> Vec<f32> {
    let Some((per, bytes)) = block(ty) else { return vec![] };
    let mut out = Vec::with_capacity(data.len() / bytes * per as usize);
    for b in data.chunks_exact(bytes) {
        match ty {
            F32 => out.push(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            F16 => out.push(h(b, 0)),
            BF16 => out.push(f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16)),
            Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 => small_block(ty, b, &mut out),
            Q2_K => q2_k(b, &mut out),
            Q3_K => q3_k(b, &mut out),
            Q4_K | Q5_K => q45_k(ty == Q5_K, b, &mut out),
            Q6_K => q6_k(b, &mut out),
            _ => unreachable!(),
        }
    }
    out
}

/// The 32-element blocks: `d·q` (Q4_0 q−8, Q5_0 q−16, Q8_0 signed) or `d·q + m` (Q4_1, Q5_1).
fn small_block(ty: u32, b: &[u8], out: &mut Vec<f32>) {
    let d = h(b, 0);
    if ty == Q8_0 {
        out.extend(b[2..34].iter().map(|&q| d * f32::from(q as i8)));
        return;
    }
    let (m, qs, qh) = match ty {
        Q4_0 => (0.0, &b[2..18], 0u32),
        Q4_1 => (h(b, 2), &b[4..20], 0),
        Q5_0 => (0.0, &b[6..22], u32::from_le_bytes([b[2], b[3], b[4], b[5]])),
        _ => (h(b, 2), &b[8..24], u32::from_le_bytes([b[4], b[5], b[6], b[7]])),
    };
    let offset = match ty {
        Q4_0 => 8,
        Q5_0 => 16,
        _ => 0,
    };
    let five = ty == Q5_0 || ty == Q5_1;
    let mut vals = [0f32; 32];
    for j in 0..16 {
        let (mut lo, mut hi) = (u32::from(qs[j] & 0x0f), u32::from(qs[j] >> 4));
        if five {
            lo |= ((qh >> j) << 4) & 0x10;
            hi |= (qh >> (j + 12)) & 0x10;
        }
        let v = |q: u32| (q as i32 - offset) as f32;
        if ty == Q4_1 || ty == Q5_1 {
            vals[j] = v(lo) * d + m;
            vals[j + 16] = v(hi) * d + m;
        } else {
            vals[j] = v(lo) * d;
            vals[j + 16] = v(hi) * d;
        }
    }
    out.extend_from_slice(&vals);
}

fn q2_k(b: &[u8], out: &mut Vec<f32>) {
    let (scales, qs) = (&b[0..16], &b[16..80]);
    let (d, min) = (h(b, 80), h(b, 82));
    let mut is = 0;
    for n in 0..2 {
        let q = &qs[n * 32..n * 32 + 32];
        for shift in [0, 2, 4, 6] {
            for half in 0..2 {
                let sc = scales[is];
                is += 1;
                let (dl, ml) = (d * f32::from(sc & 0x0f), min * f32::from(sc >> 4));
                for l in 0..16 {
                    out.push(dl * f32::from((q[l + 16 * half] >> shift) & 3) - ml);
                }
            }
        }
    }
}

fn q3_k(b: &[u8], out: &mut Vec<f32>) {
    let (hmask, qs, raw, d_all) = (&b[0..32], &b[32..96], &b[96..108], h(b, 108));
    // 16 six-bit scales packed into 12 bytes: low 4 bits in bytes 0..8, high 2 bits in 8..12.
    let mut scales = [0i8; 16];
    for (i, s) in scales.iter_mut().enumerate() {
        let low = if i < 8 { raw[i] & 0x0f } else { raw[i - 8] >> 4 };
        let high = (raw[8 + i % 4] >> (2 * (i / 4))) & 3;
        *s = (low | (high << 4)) as i8 - 32;
    }
    let (mut is, mut m) = (0, 1u8);
    for n in 0..2 {
        let q = &qs[n * 32..n * 32 + 32];
        for shift in [0, 2, 4, 6] {
            for half in 0..2 {
                let dl = d_all * f32::from(scales[is]);
                is += 1;
                for l in 0..16 {
                    let k = l + 16 * half;
                    let low = ((q[k] >> shift) & 3) as i8;
                    let v = low - if hmask[k] & m != 0 { 0 } else { 4 };
                    out.push(dl * f32::from(v));
                }
            }
            m <<= 1;
        }
    }
}

/// Q4_K/Q5_K's 8 six-bit (scale, min) pairs packed into 12 bytes.
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

fn q45_k(five: bool, b: &[u8], out: &mut Vec<f32>) {
    let (d, min, scales) = (h(b, 0), h(b, 2), &b[4..16]);
    let (qh, ql) = if five { (&b[16..48], &b[48..176]) } else { (&b[0..0], &b[16..144]) };
    for j in 0..4 {
        let q = &ql[j * 32..j * 32 + 32];
        for (half, is) in [(0usize, 2 * j), (1, 2 * j + 1)] {
            let (sc, m) = scale_min_k4(is, scales);
            let (d1, m1) = (d * f32::from(sc), min * f32::from(m));
            let bit = 1u8 << (2 * j + half);
            for l in 0..32 {
                let mut v = if half == 0 { q[l] & 0x0f } else { q[l] >> 4 };
                if five && qh[l] & bit != 0 {
                    v += 16;
                }
                out.push(d1 * f32::from(v) - m1);
            }
        }
    }
}

fn q6_k(b: &[u8], out: &mut Vec<f32>) {
    let (ql, qh, sc, d) = (&b[0..128], &b[128..192], &b[192..208], h(b, 208));
    for n in 0..2 {
        let (ql, qh, sc) = (&ql[n * 64..], &qh[n * 32..], &sc[n * 8..]);
        let mut y = [0f32; 128];
        for l in 0..32 {
            let is = l / 16;
            let q = [
                ((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) as i8 - 32,
                ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32,
                ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32,
                ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32,
            ];
            for (k, &qk) in q.iter().enumerate() {
                y[l + 32 * k] = d * f32::from(sc[is + 2 * k] as i8) * f32::from(qk);
            }
        }
        out.extend_from_slice(&y);
    }
}

/// MLX affine form of Q4_0/Q4_1/Q8_0 (group 32): (packed uint32 words, f16 scales, f16
/// biases), value = scale·q + bias with unsigned q: Q4_0 bias −8d, Q4_1 bias m, Q8_0 q+128 and
/// bias −128d. 4-bit values pack 8 per word, element i at bits 4·(i mod 8); 8-bit 4 per word.
pub fn to_affine(ty: u32, data: &[u8]) -> Option<(Vec<u32>, Vec<f16>, Vec<f16>, i32)> {
    let (bits, bytes) = match ty {
        Q4_0 => (4, 18),
        Q4_1 => (4, 20),
        Q8_0 => (8, 34),
        _ => return None,
    };
    let blocks = data.len() / bytes;
    let (mut words, mut scales, mut biases) = (Vec::with_capacity(blocks * bits as usize), Vec::with_capacity(blocks), Vec::with_capacity(blocks));
    for b in data.chunks_exact(bytes) {
        let d = f16::from_bits(u16::from_le_bytes([b[0], b[1]]));
        let mut q = [0u8; 32];
        match ty {
            Q8_0 => q.iter_mut().zip(&b[2..34]).for_each(|(o, &v)| *o = (v as i8 as i16 + 128) as u8),
            _ => {
                let qs = if ty == Q4_0 { &b[2..18] } else { &b[4..20] };
                for j in 0..16 {
                    q[j] = qs[j] & 0x0f;
                    q[j + 16] = qs[j] >> 4;
                }
            }
        }
        scales.push(d);
        biases.push(match ty {
            Q4_0 => f16::from_f32(-8.0 * d.to_f32()),
            Q4_1 => f16::from_bits(u16::from_le_bytes([b[2], b[3]])),
            _ => f16::from_f32(-128.0 * d.to_f32()),
        });
        let per_word = 32 / bits as usize;
        for chunk in q.chunks(per_word) {
            words.push(chunk.iter().enumerate().fold(0u32, |w, (i, &v)| w | (u32::from(v) << (bits as usize * i))));
        }
    }
    Some((words, scales, biases, bits))
}
