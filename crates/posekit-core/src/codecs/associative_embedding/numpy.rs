//! NumPy's `float32` reductions in NumPy's own summation order. HigherHRNet takes means of
//! tags and scores with `np.mean` on `float32` arrays; the rounding of those sums decides ties
//! in matching, so they are reproduced bit for bit rather than summed left to right.

/// `np.mean(rows, axis=0)` for a list of `float32` vectors of length `dims`, stored flat.
/// NumPy sums a single column as one contiguous run (pairwise summation) and several columns
/// row by row; the mean is the `f32` sum divided by the count.
pub(super) fn numpy_mean_rows(flat: &[f32], dims: usize) -> Vec<f32> {
    let n = flat.len() / dims;
    if dims == 1 {
        return vec![numpy_sum_f32(flat) / n as f32];
    }
    let mut sums = vec![0.0f32; dims];
    for row in flat.chunks(dims) {
        for (s, &v) in sums.iter_mut().zip(row) {
            *s += v;
        }
    }
    sums.into_iter().map(|s| s / n as f32).collect()
}

/// NumPy's `add.reduce` of a contiguous `float32` run: 0 plus the pairwise sum, which for
/// runs of at most 128 values is eight interleaved partial sums combined in a fixed tree.
pub(super) fn numpy_sum_f32(values: &[f32]) -> f32 {
    0.0f32 + pairwise_sum_f32(values)
}

fn pairwise_sum_f32(a: &[f32]) -> f32 {
    let n = a.len();
    if n < 8 {
        let mut res = 0.0f32;
        for &v in a {
            res += v;
        }
        res
    } else if n <= 128 {
        let mut r = [0.0f32; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - n % 8 {
            for j in 0..8 {
                r[j] += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        while i < n {
            res += a[i];
            i += 1;
        }
        res
    } else {
        let mut half = n / 2;
        half -= half % 8;
        pairwise_sum_f32(&a[..half]) + pairwise_sum_f32(&a[half..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairwise_sum_matches_numpy_tree() {
        // 17 values: eight partial sums over 16, then the 17th added last.
        let v: Vec<f32> = (0..17).map(|i| 0.1 * i as f32).collect();
        let mut r = [0.0f32; 8];
        for j in 0..8 {
            r[j] = v[j] + v[8 + j];
        }
        let expected = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7])) + v[16];
        assert_eq!(numpy_sum_f32(&v), expected);
    }
}
