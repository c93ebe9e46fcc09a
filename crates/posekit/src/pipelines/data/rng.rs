//! Seeded random streams. Each use gets its own ChaCha stream from a seed built out of the run
//! seed, a purpose tag and the coordinates of the draw (epoch, sample index), so that no draw
//! depends on how many draws came before it, on another thread, or on a previous run.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What a stream is for; part of the seed so that the shuffle of epoch 3 and the augmentation
/// of sample 3 are unrelated.
#[derive(Clone, Copy)]
#[repr(u64)]
pub(crate) enum Purpose {
    Augment = 0x6175_676d_656e_7421,
    Shuffle = 0x7368_7566_666c_6521,
}

/// A stream for `(seed, purpose, a, b)`.
pub(crate) fn stream(seed: u64, purpose: Purpose, a: u64, b: u64) -> ChaCha8Rng {
    let mut bytes = [0u8; 32];
    for (chunk, word) in bytes.chunks_exact_mut(8).zip([seed, purpose as u64, a, b]) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    ChaCha8Rng::from_seed(bytes)
}

/// A standard normal draw (Box–Muller), what `np.random.randn()` gives the reference.
pub(crate) fn randn(rng: &mut impl Rng) -> f64 {
    // 1 - U lies in (0, 1], so the logarithm is finite.
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A uniform draw in [0, 1), what Python's `random.random()` gives the reference.
pub(crate) fn uniform(rng: &mut impl Rng) -> f64 {
    rng.random::<f64>()
}

/// The order of an epoch: a Fisher–Yates shuffle of `0..n` from the `(seed, epoch)` stream.
pub(crate) fn permutation(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut rng = stream(seed, Purpose::Shuffle, epoch, 0);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.random_range(0..=i);
        order.swap(i, j);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = (0..4)
            .scan(stream(7, Purpose::Augment, 1, 2), |r, _| Some(r.random()))
            .collect();
        let b: Vec<u64> = (0..4)
            .scan(stream(7, Purpose::Augment, 1, 2), |r, _| Some(r.random()))
            .collect();
        let c: Vec<u64> = (0..4)
            .scan(stream(7, Purpose::Augment, 2, 1), |r, _| Some(r.random()))
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn randn_has_unit_moments() {
        let mut rng = stream(1, Purpose::Augment, 0, 0);
        let n = 200_000;
        let draws: Vec<f64> = (0..n).map(|_| randn(&mut rng)).collect();
        let mean = draws.iter().sum::<f64>() / n as f64;
        let var = draws.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.01, "{mean}");
        assert!((var - 1.0).abs() < 0.02, "{var}");
        assert!(draws.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn permutations_are_permutations_and_change_with_the_epoch() {
        let p0 = permutation(100, 5, 0);
        let mut sorted = p0.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_eq!(p0, permutation(100, 5, 0));
        assert_ne!(p0, permutation(100, 5, 1));
        assert_ne!(p0, permutation(100, 6, 0));
        assert!(permutation(0, 1, 1).is_empty());
    }
}
