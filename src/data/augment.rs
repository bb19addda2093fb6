//! Multi-view augmentation of `u8` HWC images into normalised `f32` CHW tensors' data.
//!
//! Each view goes through, in order (as BYOL and solo-learn do): random resized crop (area
//! fraction in `crop_scale`, aspect ratio in `crop_ratio`, bilinear), horizontal flip, colour
//! jitter (brightness, contrast, saturation, hue, in a random order), grayscale, Gaussian blur,
//! solarize, then per-channel normalisation. Blur and solarize probabilities are per view,
//! cycled (`[1.0, 0.1]` and `[0.0, 0.2]` is BYOL's asymmetric pair).
//!
//! Randomness: view m of batch slot i at step s draws from its own stream of the run's seed
//! ([`crate::seed::view_rng`]), so a batch is the same whatever thread builds it and a resumed run sees the
//! same views.

// The pipeline's steps are `#[inline(always)]`: compiled inside `augment_view`'s vector
// variants (`crate::simd::vectorized`), not as calls to baseline code.
#![allow(clippy::inline_always)]

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::images::ImageShape;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    /// Fraction of the image area a crop covers, `[min, max]`.
    pub crop_scale: [f32; 2],
    /// Aspect ratio (width / height) of a crop, `[min, max]`.
    pub crop_ratio: [f32; 2],
    pub flip_prob: f32,
    pub jitter_prob: f32,
    pub brightness: f32,
    pub contrast: f32,
    pub saturation: f32,
    pub hue: f32,
    pub grayscale_prob: f32,
    /// Per view, cycled.
    pub blur_prob: Vec<f32>,
    /// Standard deviation of the blur, in output pixels, `[min, max]`.
    pub blur_sigma: [f32; 2],
    /// Per view, cycled.
    pub solarize_prob: Vec<f32>,
}

impl Default for AugmentConfig {
    /// solo-learn's BYOL settings for 32x32 images (no blur at this size, solarize on the
    /// second view).
    fn default() -> Self {
        Self {
            crop_scale: [0.08, 1.0],
            crop_ratio: [0.75, 4.0 / 3.0],
            flip_prob: 0.5,
            jitter_prob: 0.8,
            brightness: 0.4,
            contrast: 0.4,
            saturation: 0.2,
            hue: 0.1,
            grayscale_prob: 0.2,
            blur_prob: vec![0.0, 0.0],
            blur_sigma: [0.1, 2.0],
            solarize_prob: vec![0.0, 0.2],
        }
    }
}

/// Per-channel mean and standard deviation (of values scaled to [0, 1]) over a set's pixels.
pub fn channel_stats(pixels: &[u8], channels: usize) -> (Vec<f32>, Vec<f32>) {
    let mut sum = vec![0.0f64; channels];
    let mut sum_sq = vec![0.0f64; channels];
    for (i, &p) in pixels.iter().enumerate() {
        let v = f64::from(p) / 255.0;
        sum[i % channels] += v;
        sum_sq[i % channels] += v * v;
    }
    let count = (pixels.len() / channels.max(1)).max(1) as f64;
    let mean: Vec<f64> = sum.iter().map(|s| s / count).collect();
    let std = sum_sq
        .iter()
        .zip(&mean)
        .map(|(sq, m)| ((sq / count - m * m).max(0.0).sqrt() as f32).max(1e-3))
        .collect();
    (mean.into_iter().map(|m| m as f32).collect(), std)
}

/// A planar float image, values in [0, 1].
struct Planes {
    channels: usize,
    side: usize,
    data: Vec<f32>,
}

/// Random resized crop of `image` into `side x side` planes, bilinear.
#[inline(always)]
fn crop_resize(
    image: &[u8],
    shape: ImageShape,
    side: usize,
    config: &AugmentConfig,
    rng: &mut ChaCha8Rng,
) -> Planes {
    let (h, w, c) = (shape.height as f32, shape.width as f32, shape.channels);
    // torchvision's RandomResizedCrop: ten tries at a random area and ratio, else the centre.
    let mut crop = (0.0f32, 0.0f32, w, h);
    for _ in 0..10 {
        let area = h * w * rng.random_range(config.crop_scale[0]..=config.crop_scale[1]);
        let log_ratio = rng.random_range(config.crop_ratio[0].ln()..=config.crop_ratio[1].ln());
        let ratio = log_ratio.exp();
        let cw = (area * ratio).sqrt();
        let ch = (area / ratio).sqrt();
        if cw <= w && ch <= h && cw >= 1.0 && ch >= 1.0 {
            let x0 = rng.random_range(0.0..=(w - cw));
            let y0 = rng.random_range(0.0..=(h - ch));
            crop = (x0, y0, cw, ch);
            break;
        }
    }
    let (x0, y0, cw, ch) = crop;
    // Pixel centres of the output map onto the crop: the two source columns (rows) of each
    // output column (row) and the weight of the second, computed once per axis.
    let taps = |start: f32, extent: f32, limit: usize| -> Vec<(usize, usize, f32)> {
        (0..side)
            .map(|o| {
                let s = start + (o as f32 + 0.5) * extent / side as f32 - 0.5;
                let s = s.clamp(0.0, limit as f32 - 1.0);
                // `s >= 0`, so truncation is the floor.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let i = s as usize;
                (i, (i + 1).min(limit - 1), s - i as f32)
            })
            .collect()
    };
    let columns = taps(x0, cw, shape.width);
    let rows = taps(y0, ch, shape.height);
    let row_len = shape.width * c;
    // As floats first, in one vector loop: converting pixel by pixel inside the loop below
    // cost more than the interpolation.
    let image: Vec<f32> = image.iter().map(|&p| f32::from(p)).collect();
    let mut data = vec![0.0f32; c * side * side];
    for (oy, &(yi, y1, dy)) in rows.iter().enumerate() {
        let top_row = &image[yi * row_len..(yi + 1) * row_len];
        let bottom_row = &image[y1 * row_len..(y1 + 1) * row_len];
        for (ox, &(xi, x1, dx)) in columns.iter().enumerate() {
            let corners = [
                &top_row[xi * c..(xi + 1) * c],
                &top_row[x1 * c..(x1 + 1) * c],
                &bottom_row[xi * c..(xi + 1) * c],
                &bottom_row[x1 * c..(x1 + 1) * c],
            ];
            for channel in 0..c {
                let px = |corner: usize| corners[corner][channel];
                let top = px(0) * (1.0 - dx) + px(1) * dx;
                let bottom = px(2) * (1.0 - dx) + px(3) * dx;
                data[(channel * side + oy) * side + ox] = top * (1.0 - dy) + bottom * dy;
            }
        }
    }
    // Apart from the loop above so that it runs on vectors (the same quotients).
    for value in &mut data {
        *value /= 255.0;
    }
    Planes {
        channels: c,
        side,
        data,
    }
}

#[inline(always)]
fn flip(planes: &mut Planes) {
    let side = planes.side;
    for row in planes.data.chunks_mut(side) {
        row.reverse();
    }
}

#[inline(always)]
fn luma(planes: &Planes, i: usize) -> f32 {
    let plane = planes.side * planes.side;
    0.299 * planes.data[i] + 0.587 * planes.data[plane + i] + 0.114 * planes.data[2 * plane + i]
}

#[inline(always)]
fn grayscale(planes: &mut Planes) {
    if planes.channels != 3 {
        return;
    }
    let plane = planes.side * planes.side;
    for i in 0..plane {
        let y = luma(planes, i);
        for c in 0..3 {
            planes.data[c * plane + i] = y;
        }
    }
}

#[inline(always)]
fn brightness(planes: &mut Planes, factor: f32) {
    for v in &mut planes.data {
        *v = (*v * factor).clamp(0.0, 1.0);
    }
}

#[inline(always)]
fn contrast(planes: &mut Planes, factor: f32) {
    let plane = planes.side * planes.side;
    let mean = if planes.channels == 3 {
        (0..plane).map(|i| luma(planes, i)).sum::<f32>() / plane as f32
    } else {
        planes.data.iter().sum::<f32>() / planes.data.len() as f32
    };
    for v in &mut planes.data {
        *v = (mean + (*v - mean) * factor).clamp(0.0, 1.0);
    }
}

#[inline(always)]
fn saturation(planes: &mut Planes, factor: f32) {
    if planes.channels != 3 {
        return;
    }
    let plane = planes.side * planes.side;
    for i in 0..plane {
        let y = luma(planes, i);
        for c in 0..3 {
            let v = &mut planes.data[c * plane + i];
            *v = (y + (*v - y) * factor).clamp(0.0, 1.0);
        }
    }
}

/// `turns.rem_euclid(1.0)`, the same value, without `fmod` for the hues `hue` makes (a hue
/// in [0, 1] shifted by at most half a turn).
#[inline(always)]
fn wrap_turn(turns: f32) -> f32 {
    if (0.0..1.0).contains(&turns) {
        turns
    } else if (1.0..2.0).contains(&turns) {
        turns - 1.0
    } else if -1.0 < turns && turns < 0.0 {
        turns + 1.0
    } else {
        turns.rem_euclid(1.0)
    }
}

/// Rotates hue by `shift` turns (in [-0.5, 0.5]) through HSV.
#[inline(always)]
fn hue(planes: &mut Planes, shift: f32) {
    if planes.channels != 3 {
        return;
    }
    let plane = planes.side * planes.side;
    for i in 0..plane {
        let (r, g, b) = (
            planes.data[i],
            planes.data[plane + i],
            planes.data[2 * plane + i],
        );
        let max = r.max(g).max(b);
        let min = r.min(g).min(b);
        let delta = max - min;
        if delta <= f32::EPSILON {
            continue;
        }
        let h = if max == r {
            // In [-1, 1]: `rem_euclid(6.0)` without `fmod`.
            let h = (g - b) / delta;
            if h < 0.0 { h + 6.0 } else { h }
        } else if max == g {
            (b - r) / delta + 2.0
        } else {
            (r - g) / delta + 4.0
        } / 6.0;
        let h = wrap_turn(h + shift) * 6.0;
        let s = delta / max;
        let v = max;
        // `h` is in [0, 6]: truncation is the floor.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let sector = h as u32;
        let f = h - sector as f32;
        let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
        let (r, g, b) = match sector {
            0 => (v, t, p),
            1 => (q, v, p),
            2 => (p, v, t),
            3 => (p, q, v),
            4 => (t, p, v),
            _ => (v, p, q),
        };
        planes.data[i] = r;
        planes.data[plane + i] = g;
        planes.data[2 * plane + i] = b;
    }
}

#[inline(always)]
fn colour_jitter(planes: &mut Planes, config: &AugmentConfig, rng: &mut ChaCha8Rng) {
    let factor = |rng: &mut ChaCha8Rng, amount: f32| {
        if amount > 0.0 {
            rng.random_range((1.0 - amount).max(0.0)..=1.0 + amount)
        } else {
            1.0
        }
    };
    let mut order = [0usize, 1, 2, 3];
    for i in (1..4).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    for op in order {
        match op {
            0 => brightness(planes, factor(rng, config.brightness)),
            1 => contrast(planes, factor(rng, config.contrast)),
            2 => saturation(planes, factor(rng, config.saturation)),
            _ => {
                if config.hue > 0.0 {
                    hue(planes, rng.random_range(-config.hue..=config.hue));
                }
            }
        }
    }
}

/// Separable Gaussian blur with standard deviation `sigma` pixels (edges clamped).
fn blur(planes: &mut Planes, sigma: f32) {
    let radius = (3.0 * sigma).ceil().max(1.0) as isize;
    let weights: Vec<f32> = (-radius..=radius)
        .map(|k| (-(k * k) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f32 = weights.iter().sum();
    let side = isize::try_from(planes.side).unwrap_or(isize::MAX);
    let mut tmp = planes.data.clone();
    for c in 0..planes.channels {
        let base = c * planes.side * planes.side;
        for pass in 0..2 {
            let (src, dst) = if pass == 0 {
                (&planes.data, &mut tmp)
            } else {
                (&tmp, &mut planes.data)
            };
            for y in 0..side {
                for x in 0..side {
                    let mut acc = 0.0;
                    for (k, w) in (-radius..=radius).zip(&weights) {
                        let (yy, xx) = if pass == 0 {
                            (y, (x + k).clamp(0, side - 1))
                        } else {
                            ((y + k).clamp(0, side - 1), x)
                        };
                        acc += w * src[base + (yy * side + xx) as usize];
                    }
                    dst[base + (y * side + x) as usize] = acc / total;
                }
            }
        }
    }
}

#[inline(always)]
fn solarize(planes: &mut Planes) {
    for v in &mut planes.data {
        if *v >= 0.5 {
            *v = 1.0 - *v;
        }
    }
}

/// View `view` of `image`, normalised with `mean`/`std`, written as CHW into `out`
/// (`channels * side * side` values).
#[allow(clippy::too_many_arguments)] // the pipeline's inputs, each used once
pub fn augment_view(
    image: &[u8],
    shape: ImageShape,
    side: usize,
    view: usize,
    config: &AugmentConfig,
    mean: &[f32],
    std: &[f32],
    rng: &mut ChaCha8Rng,
    out: &mut [f32],
) {
    // The whole pipeline inside the vector variants: its steps are `#[inline(always)]`.
    crate::simd::vectorized(
        #[inline(always)]
        || {
            let mut planes = crop_resize(image, shape, side, config, rng);
            if rng.random_bool(f64::from(config.flip_prob.clamp(0.0, 1.0))) {
                flip(&mut planes);
            }
            if rng.random_bool(f64::from(config.jitter_prob.clamp(0.0, 1.0))) {
                colour_jitter(&mut planes, config, rng);
            }
            if rng.random_bool(f64::from(config.grayscale_prob.clamp(0.0, 1.0))) {
                grayscale(&mut planes);
            }
            let cycled =
                |probs: &[f32]| probs.get(view % probs.len().max(1)).copied().unwrap_or(0.0);
            if rng.random_bool(f64::from(cycled(&config.blur_prob).clamp(0.0, 1.0))) {
                let sigma = rng.random_range(config.blur_sigma[0]..=config.blur_sigma[1]);
                blur(&mut planes, sigma);
            }
            if rng.random_bool(f64::from(cycled(&config.solarize_prob).clamp(0.0, 1.0))) {
                solarize(&mut planes);
            }
            normalise(&planes, mean, std, out);
        },
    );
}

/// The image without augmentation (resized to `side`, normalised), CHW into `out`: what
/// evaluation embeds.
pub fn plain_view(
    image: &[u8],
    shape: ImageShape,
    side: usize,
    mean: &[f32],
    std: &[f32],
    out: &mut [f32],
) {
    let config = AugmentConfig {
        crop_scale: [1.0, 1.0],
        crop_ratio: [shape.width as f32 / shape.height as f32; 2],
        ..AugmentConfig::default()
    };
    // A full-size crop draws nothing that changes the pixels; the generator is only a formality.
    let mut rng = crate::seed::rng(0, crate::seed::Stream::Views);
    let planes = crop_resize(image, shape, side, &config, &mut rng);
    normalise(&planes, mean, std, out);
}

/// `(value - mean) / std` per channel of `planes` into `out`.
#[inline(always)]
fn normalise(planes: &Planes, mean: &[f32], std: &[f32], out: &mut [f32]) {
    let plane = planes.side * planes.side;
    let channels = planes
        .data
        .chunks_exact(plane)
        .zip(out.chunks_exact_mut(plane));
    for ((values, out), (&mean, &std)) in channels.zip(mean.iter().zip(std)) {
        for (o, &v) in out.iter_mut().zip(values) {
            *o = (v - mean) / std;
        }
    }
}
