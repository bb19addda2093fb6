//! The built-in image sets, always available, no download:
//!
//! - `shapes`: a procedural labelled set generated from the seed: 10 classes of coloured shapes
//!   (disk, ring, triangle, square, pentagon, hexagon, star, cross, crescent, ellipse) at a
//!   random position, size, rotation and colour, on a textured background (noise, gradient,
//!   stripes or checks), 32x32 RGB. Each image is drawn from its own random stream, so a set
//!   is the same whatever its size and however many threads draw it.
//! - `digits`: the UCI handwritten digits (1,797 images 8x8, 10 classes, CC BY 4.0, see
//!   `assets/digits/README.md`), embedded in the binary. Every fifth image is the test split.

use std::f32::consts::{PI, TAU};
use std::path::Path;

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::images::{DataError, ImageSet, ImageShape, Splits};

pub const SHAPE_CLASSES: [&str; 10] = [
    "disk", "ring", "triangle", "square", "pentagon", "hexagon", "star", "cross", "crescent",
    "ellipse",
];

/// Side of a `shapes` image.
pub const SHAPES_SIDE: usize = 32;

/// Supersamples per pixel side when drawing shapes (antialiasing).
const SUPERSAMPLE: usize = 3;

/// Whether the shape-local point `(x, y)` (unit size) is inside shape `class`.
fn inside(class: usize, x: f32, y: f32) -> bool {
    let r = x.hypot(y);
    let polygon = |sides: f32| {
        let sector = TAU / sides;
        let theta = y.atan2(x).rem_euclid(sector) - sector / 2.0;
        r * theta.cos() < (PI / sides).cos()
    };
    match class {
        0 => r < 1.0,
        1 => (0.55..1.0).contains(&r),
        2 => polygon(3.0),
        3 => polygon(4.0),
        4 => polygon(5.0),
        5 => polygon(6.0),
        6 => {
            // Five points: the radius swings linearly between 1 and 0.42 with the angle.
            let sector = TAU / 5.0;
            let t = (y.atan2(x).rem_euclid(sector) / sector - 0.5).abs() * 2.0;
            r < 0.42 + 0.58 * t
        }
        7 => (x.abs() < 0.3 && y.abs() < 1.0) || (y.abs() < 0.3 && x.abs() < 1.0),
        8 => r < 1.0 && (x - 0.5).hypot(y) > 0.8,
        _ => x * x + (y / 0.5) * (y / 0.5) < 1.0,
    }
}

fn random_colour(rng: &mut ChaCha8Rng) -> [f32; 3] {
    [
        rng.random_range(0.0..1.0),
        rng.random_range(0.0..1.0),
        rng.random_range(0.0..1.0),
    ]
}

/// A colour far enough from `other` (Euclidean distance in RGB at least 0.6).
fn contrasting_colour(rng: &mut ChaCha8Rng, other: [f32; 3]) -> [f32; 3] {
    loop {
        let colour = random_colour(rng);
        let distance: f32 = colour
            .iter()
            .zip(other)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f32>()
            .sqrt();
        if distance >= 0.6 {
            return colour;
        }
    }
}

/// One `shapes` image of `class`, HWC RGB, drawn from `rng`.
fn draw_shape(class: usize, rng: &mut ChaCha8Rng) -> Vec<u8> {
    let side = SHAPES_SIDE as f32;
    let background = random_colour(rng);
    let texture_colour = random_colour(rng);
    let texture = rng.random_range(0..4u32);
    let frequency = rng.random_range(2.0f32..6.0);
    let texture_angle = rng.random_range(0.0..TAU);
    let foreground = contrasting_colour(rng, background);
    let radius = rng.random_range(0.2f32..0.36) * side;
    let centre_x = rng.random_range(0.3f32..0.7) * side;
    let centre_y = rng.random_range(0.3f32..0.7) * side;
    let rotation = rng.random_range(0.0..TAU);
    let (sin, cos) = rotation.sin_cos();
    let (tsin, tcos) = texture_angle.sin_cos();

    let mut pixels = Vec::with_capacity(SHAPES_SIDE * SHAPES_SIDE * 3);
    for row in 0..SHAPES_SIDE {
        for col in 0..SHAPES_SIDE {
            let u = col as f32 / side;
            let v = row as f32 / side;
            let along = u * tcos + v * tsin;
            let mix = match texture {
                0 => rng.random_range(0.0f32..0.35),
                1 => along.clamp(0.0, 1.0),
                2 => 0.5 + 0.5 * (along * frequency * TAU).sin(),
                _ => {
                    let checks = ((u * frequency).floor() + (v * frequency).floor()) as i32;
                    if checks % 2 == 0 { 0.0 } else { 0.6 }
                }
            };
            let mut coverage = 0.0f32;
            for sy in 0..SUPERSAMPLE {
                for sx in 0..SUPERSAMPLE {
                    let px = col as f32 + (sx as f32 + 0.5) / SUPERSAMPLE as f32 - centre_x;
                    let py = row as f32 + (sy as f32 + 0.5) / SUPERSAMPLE as f32 - centre_y;
                    let x = (px * cos + py * sin) / radius;
                    let y = (-px * sin + py * cos) / radius;
                    if inside(class, x, y) {
                        coverage += 1.0;
                    }
                }
            }
            coverage /= (SUPERSAMPLE * SUPERSAMPLE) as f32;
            for c in 0..3 {
                let back = background[c] * (1.0 - mix) + texture_colour[c] * mix;
                let value = back * (1.0 - coverage) + foreground[c] * coverage;
                pixels.push((value * 255.0).round().clamp(0.0, 255.0) as u8);
            }
        }
    }
    pixels
}

/// `count` `shapes` images, classes in turn, image `i` drawn from stream `first + i` of `seed`.
fn shapes_set(seed: u64, first: u64, count: usize) -> ImageSet {
    let images: Vec<Vec<u8>> = (0..count)
        .into_par_iter()
        .map(|i| {
            let mut rng = crate::seed::shape_rng(seed, first + i as u64);
            draw_shape(i % SHAPE_CLASSES.len(), &mut rng)
        })
        .collect();
    ImageSet {
        shape: ImageShape::new(SHAPES_SIDE, SHAPES_SIDE, 3),
        pixels: images.concat(),
        labels: Some(
            (0..count)
                .map(|i| (i % SHAPE_CLASSES.len()) as u32)
                .collect(),
        ),
        class_names: SHAPE_CLASSES.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// The procedural shapes set: `train` training and `test` test images from `seed`.
pub fn shapes(seed: u64, train: usize, test: usize) -> Splits {
    // Test images use streams far past any training set's.
    Splits {
        name: "shapes".to_owned(),
        train: shapes_set(seed, 0, train),
        test: Some(shapes_set(seed, 1 << 40, test)),
        unlabeled: None,
    }
}

const DIGITS_CSV_GZ: &[u8] = include_bytes!("../../assets/digits/digits.csv.gz");

/// Parses the digits CSV: 64 pixel values 0..=16 and a label per line.
fn parse_digits(text: &str, source: &Path) -> Result<(Vec<u8>, Vec<u32>), DataError> {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for (line_number, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let values: Vec<&str> = line.split(',').collect();
        let err = |problem: String| {
            DataError::format(source, format!("line {}: {problem}", line_number + 1))
        };
        if values.len() != 65 {
            return Err(err(format!(
                "{} values, expected 64 pixels and a label",
                values.len()
            )));
        }
        for value in &values[..64] {
            let v: f32 = value
                .trim()
                .parse()
                .map_err(|_| err(format!("`{value}` is not a number")))?;
            if !(0.0..=16.0).contains(&v) {
                return Err(err(format!("pixel {v} outside 0..16")));
            }
            pixels.push((v * 255.0 / 16.0).round() as u8);
        }
        let label: f32 = values[64]
            .trim()
            .parse()
            .map_err(|_| err(format!("label `{}` is not a number", values[64])))?;
        if !(0.0..=9.0).contains(&label) {
            return Err(err(format!("label {label} outside 0..9")));
        }
        labels.push(label as u32);
    }
    Ok((pixels, labels))
}

/// The UCI digits: every fifth image (index % 5 == 4) is the test split.
pub fn digits() -> Result<Splits, DataError> {
    use std::io::Read as _;
    // Named in errors; the bytes are embedded in the binary.
    let source = Path::new("assets/digits/digits.csv.gz");
    let mut text = String::new();
    flate2::read::GzDecoder::new(DIGITS_CSV_GZ)
        .read_to_string(&mut text)
        .map_err(|err| DataError::format(source, format!("embedded copy unreadable ({err})")))?;
    let (pixels, labels) = parse_digits(&text, source)?;
    let names: Vec<String> = (0..10).map(|d| d.to_string()).collect();
    let all = ImageSet::new(
        ImageShape::new(8, 8, 1),
        pixels,
        Some(labels),
        names,
        source,
    )?;
    let count = all.labels.as_ref().map_or(0, Vec::len);
    let train: Vec<usize> = (0..count).filter(|i| i % 5 != 4).collect();
    let test: Vec<usize> = (0..count).filter(|i| i % 5 == 4).collect();
    Ok(Splits {
        name: "digits".to_owned(),
        train: all.subset(&train),
        test: Some(all.subset(&test)),
        unlabeled: None,
    })
}
