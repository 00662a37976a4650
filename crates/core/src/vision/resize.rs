//! Bicubic resampling of 8-bit RGB with the arithmetic of Pillow's `Image.resize(…, BICUBIC)`,
//! which the reference image processors use: a separable convolution (two passes, in the order
//! Pillow picks; each pass only when that side changes) whose kernel (Keys cubic, a = −0.5, support
//! 2) is widened by the scale factor when shrinking (antialiasing), with weights normalized,
//! converted to 22-bit fixed point and each pass rounded and clamped back to 8 bits.
//! Matching this bit for bit makes our pixel tensors equal the reference's, not merely close.

use image::RgbImage;

const PRECISION_BITS: u32 = 32 - 8 - 2;

fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Per output index: first source index, and fixed-point weights over the following sources.
struct Taps {
    start: Vec<usize>,
    weights: Vec<Vec<i32>>,
}

fn taps(in_size: usize, out_size: usize) -> Taps {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 2.0 * filterscale;
    let mut start = Vec::with_capacity(out_size);
    let mut weights = Vec::with_capacity(out_size);
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        // C's (int) cast truncates toward zero, then negative starts clamp to 0.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let n = xmax.saturating_sub(xmin);
        let raw: Vec<f64> = (0..n).map(|x| bicubic((x as f64 + xmin as f64 - center + 0.5) / filterscale)).collect();
        let total: f64 = raw.iter().sum();
        let fixed = raw
            .iter()
            .map(|&w| {
                let w = if total != 0.0 { w / total } else { w };
                let s = w * (1u64 << PRECISION_BITS) as f64;
                (if w < 0.0 { s - 0.5 } else { s + 0.5 }) as i32
            })
            .collect();
        start.push(xmin);
        weights.push(fixed);
    }
    Taps { start, weights }
}

fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Runs `fill(first_line, out_chunk)` over `out` split into runs of whole lines, on several
/// threads when the image is large (each output line depends only on the source).
fn by_lines(out: &mut [u8], line_len: usize, threads: usize, fill: impl Fn(usize, &mut [u8]) + Sync) {
    let lines = out.len() / line_len.max(1);
    if threads < 2 || lines < 2 {
        fill(0, out);
        return;
    }
    let per = lines.div_ceil(threads);
    std::thread::scope(|scope| {
        for (i, chunk) in out.chunks_mut(per * line_len).enumerate() {
            let fill = &fill;
            scope.spawn(move || fill(i * per, chunk));
        }
    });
}

/// One separable pass over interleaved RGB rows: `line_step` is the (input, output) distance
/// between lines, `tap_step`/`out_step` the distance between the samples combined / written
/// (3 for a horizontal pass).
fn pass(src: &[u8], lines: usize, out_len: usize, t: &Taps, line_step: (usize, usize), tap_step: usize, out_step: usize, threads: usize) -> Vec<u8> {
    let mut out = vec![0u8; lines * line_step.1];
    let half = 1i64 << (PRECISION_BITS - 1);
    by_lines(&mut out, line_step.1, threads, |first, chunk| {
        for (n, line_out) in chunk.chunks_mut(line_step.1).enumerate() {
            let base_in = (first + n) * line_step.0;
            for o in 0..out_len {
                let w = &t.weights[o];
                for c in 0..3 {
                    let mut acc = half;
                    for (k, &wk) in w.iter().enumerate() {
                        acc += src[base_in + (t.start[o] + k) * tap_step + c] as i64 * wk as i64;
                    }
                    line_out[o * out_step + c] = clip8(acc);
                }
            }
        }
    });
    out
}

fn horizontal(data: &[u8], w0: usize, h: usize, w1: usize, threads: usize) -> Vec<u8> {
    // rows stay rows: each of the h lines maps w0 pixels to w1
    pass(data, h, w1, &taps(w0, w1), (w0 * 3, w1 * 3), 3, 3, threads)
}

fn vertical(data: &[u8], w: usize, h0: usize, h1: usize, threads: usize) -> Vec<u8> {
    // columns: each output row y combines source rows start[y].. for every x
    let t = taps(h0, h1);
    let mut out = vec![0u8; w * h1 * 3];
    let half = 1i64 << (PRECISION_BITS - 1);
    by_lines(&mut out, w * 3, threads, |first, chunk| {
        for (n, row_out) in chunk.chunks_mut(w * 3).enumerate() {
            let y = first + n;
            let wts = &t.weights[y];
            for x in 0..w {
                for c in 0..3 {
                    let mut acc = half;
                    for (k, &wk) in wts.iter().enumerate() {
                        acc += data[((t.start[y] + k) * w + x) * 3 + c] as i64 * wk as i64;
                    }
                    row_out[x * 3 + c] = clip8(acc);
                }
            }
        }
    });
    out
}

/// Pillow's pass order (`ImagingResampleInner` in libImaging/Resample.c, Pillow 13): the
/// vertical pass runs first only when the height shrinks by more than twice as many pixels as
/// the width does; otherwise horizontal first. Each pass rounds to 8 bits, so the order changes
/// the result.
fn vertical_first(w0: usize, h0: usize, w1: usize, h1: usize) -> bool {
    let (dh, dw) = (h0 as i64 - h1 as i64, w0 as i64 - w1 as i64);
    dh > 0 && dh > dw * 2
}

/// Resizes `img` to `width` × `height` with Pillow's bicubic arithmetic and pass order, bit
/// for bit.
pub fn resize_bicubic(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    // Threads pay off from a few hundred thousand output bytes (a photo-sized image: ~25 ms on
    // one core here, which is TTFT).
    let big = (width as usize * height as usize * 3).max(img.as_raw().len()) >= 1 << 18;
    let threads = if big { std::thread::available_parallelism().map_or(1, |n| n.get()).min(8) } else { 1 };
    resize_on(img, width, height, threads)
}

fn resize_on(img: &RgbImage, width: u32, height: u32, threads: usize) -> RgbImage {
    let (w0, h0) = (img.width() as usize, img.height() as usize);
    let (w1, h1) = (width as usize, height as usize);
    let mut data = img.as_raw().clone();
    if vertical_first(w0, h0, w1, h1) {
        if h1 != h0 {
            data = vertical(&data, w0, h0, h1, threads);
        }
        if w1 != w0 {
            data = horizontal(&data, w0, h1, w1, threads);
        }
    } else {
        if w1 != w0 {
            data = horizontal(&data, w0, h0, w1, threads);
        }
        if h1 != h0 {
            data = vertical(&data, w1, h0, h1, threads);
        }
    }
    RgbImage::from_raw(width, height, data).expect("resize produced the requested size")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splitting the lines over threads gives the same bytes as one thread (the parity tests'
    /// images are too small to take the threaded path).
    #[test]
    fn threads_do_not_change_the_result() {
        let mut seed = 7u32;
        let img = RgbImage::from_fn(640, 480, |_, _| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            image::Rgb([seed as u8, (seed >> 8) as u8, (seed >> 16) as u8])
        });
        for (w, h) in [(1036, 756), (301, 199), (640, 97), (33, 480)] {
            let one = resize_on(&img, w, h, 1);
            for threads in [2, 3, 8] {
                assert!(resize_on(&img, w, h, threads) == one, "{w}x{h} on {threads} threads");
            }
        }
    }

    #[test]
    fn identity_when_size_unchanged() {
        let img = RgbImage::from_fn(7, 5, |x, y| image::Rgb([x as u8 * 30, y as u8 * 40, 9]));
        assert_eq!(resize_bicubic(&img, 7, 5), img);
    }

    #[test]
    fn constant_image_stays_constant() {
        let img = RgbImage::from_pixel(13, 9, image::Rgb([200, 17, 90]));
        for (w, h) in [(28, 28), (5, 3), (13, 20), (40, 9)] {
            let out = resize_bicubic(&img, w, h);
            assert!(out.pixels().all(|p| p.0 == [200, 17, 90]), "{w}x{h}");
        }
    }

    #[test]
    fn pass_order_follows_pillow() {
        // height shrinks by more than twice the width's shrink: vertical first
        assert!(vertical_first(100, 70, 112, 56));
        assert!(vertical_first(50, 100, 40, 60));
        // ... but not when it shrinks by exactly twice, nor when the height grows
        assert!(!vertical_first(50, 100, 40, 80));
        assert!(!vertical_first(20, 30, 56, 84));
        assert!(!vertical_first(640, 480, 140, 112));
    }

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for (i, o) in [(100, 56), (70, 112), (3, 28), (640, 280)] {
            let t = taps(i, o);
            for w in &t.weights {
                let s: i64 = w.iter().map(|&x| x as i64).sum();
                assert!((s - (1 << PRECISION_BITS)).abs() <= w.len() as i64, "{i}->{o}: {s}");
            }
        }
    }
}
