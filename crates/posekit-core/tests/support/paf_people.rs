//! Synthetic CMU-18 people for the PAF tests and benchmark (included by both with `#[path]`),
//! so that the benchmark times the same kind of scene the tests prove is decoded correctly.

use ndarray::{Array2, Array3};

/// CMU-18 joints of a person one unit tall (x centred): nose, neck, right shoulder, elbow,
/// wrist, left shoulder, elbow, wrist, right hip, knee, ankle, left hip, knee, ankle, right eye,
/// left eye, right ear, left ear.
const TEMPLATE: [(f32, f32); 18] = [
    (0.0, 0.08),
    (0.0, 0.2),
    (-0.16, 0.2),
    (-0.24, 0.4),
    (-0.28, 0.56),
    (0.16, 0.2),
    (0.24, 0.4),
    (0.28, 0.56),
    (-0.08, 0.56),
    (-0.12, 0.76),
    (-0.12, 0.96),
    (0.08, 0.56),
    (0.12, 0.76),
    (0.12, 0.96),
    (-0.04, 0.04),
    (0.04, 0.04),
    (-0.08, 0.08),
    (0.08, 0.08),
];

/// `n` people on a grid filling a `map x map` image, keypoints `[n, 18, 2]` rounded to pixels
/// and visibility 2 everywhere. `jitter` (0 = none) scales a small deterministic displacement of
/// the limb joints so that limbs are not all parallel.
pub fn grid_people(n: usize, map: usize, jitter: f32) -> (Array3<f32>, Array2<f32>) {
    let cols = (n as f32).sqrt().ceil() as usize;
    let rows = n.div_ceil(cols);
    let (cell_w, cell_h) = (map as f32 / cols as f32, map as f32 / rows as f32);
    let height = cell_h * 0.9;
    let mut seed = 12345u32;
    let mut noise = || {
        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
    };
    let mut kp = Array3::<f32>::zeros((n, 18, 2));
    for p in 0..n {
        let (cx, top) = (
            (p % cols) as f32 * cell_w + cell_w / 2.0,
            (p / cols) as f32 * cell_h,
        );
        for (j, &(tx, ty)) in TEMPLATE.iter().enumerate() {
            let (jx, jy) = if jitter != 0.0 && j >= 2 && j != 14 && j != 15 {
                (noise() * 0.06 * jitter, noise() * 0.04 * jitter)
            } else {
                (0.0, 0.0)
            };
            kp[[p, j, 0]] = (cx + (tx + jx) * height).round();
            kp[[p, j, 1]] = (top + (ty + jy) * height).round();
        }
    }
    (kp, Array2::from_elem((n, 18), 2.0))
}
