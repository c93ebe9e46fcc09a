//! Minimum-cost assignment (the Hungarian algorithm) for rectangular cost matrices.
//!
//! Two solvers live here because they answer two different needs:
//!
//! * [`min_cost_assignment`] is the general tool: the shortest-augmenting-path form of the
//!   Hungarian algorithm with row/column potentials (Jonker–Volgenant style), O(n² m) for an
//!   n × m matrix with n ≤ m. It always returns an optimal assignment. Among several optimal
//!   assignments it returns the one its deterministic scan order reaches first (rows are added
//!   one by one in index order; when two columns tie for the smallest reduced cost the lower
//!   column index wins); no other promise is made about ties.
//! * [`munkres_assignment`] reproduces, step for step, the `Munkres().compute` method of the
//!   Python `munkres` package (version 1.1.4, the one HigherHRNet's `lib/core/group.py` was
//!   written against). Associative-embedding grouping produces many exactly tied costs
//!   (`round(distance) * 100 - score` is constant along a row when the rounded distances are
//!   equal), so the *choice* among optimal assignments decides which person a joint joins.
//!   Matching HigherHRNet's output therefore needs Munkres' own tie-breaking, not just any
//!   optimum. It is O(n⁴) in the worst case but fast for the n ≤ 30 matrices of grouping.
//!
//! Both reject non-finite costs: an infinite or NaN cost has no meaningful optimum.

use ndarray::ArrayView2;

use crate::error::{Error, Result};

/// An optimal assignment of rows to columns.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    /// For each row, the column it is assigned to. `None` only when there are more rows than
    /// columns (each column takes at most one row).
    pub row_to_col: Vec<Option<usize>>,
    /// Sum of the costs of the assigned pairs.
    pub cost: f64,
}

impl Assignment {
    /// The assigned `(row, column)` pairs in row order.
    pub fn pairs(&self) -> Vec<(usize, usize)> {
        self.row_to_col
            .iter()
            .enumerate()
            .filter_map(|(r, c)| c.map(|c| (r, c)))
            .collect()
    }
}

fn check_finite(cost: &ArrayView2<f64>) -> Result<()> {
    if let Some(((r, c), v)) = cost.indexed_iter().find(|(_, v)| !v.is_finite()) {
        return Err(Error::Shape(format!(
            "assignment cost matrix has a non-finite value {v} at row {r}, column {c}"
        )));
    }
    Ok(())
}

/// Minimum-cost assignment of a rectangular `rows × cols` matrix.
///
/// Every row is assigned when `rows <= cols`; otherwise every column is assigned and
/// `rows - cols` rows stay unassigned. An empty matrix gives an empty assignment.
pub fn min_cost_assignment(cost: ArrayView2<f64>) -> Result<Assignment> {
    check_finite(&cost)?;
    let (rows, cols) = cost.dim();
    if rows == 0 || cols == 0 {
        return Ok(Assignment {
            row_to_col: vec![None; rows],
            cost: 0.0,
        });
    }
    // The augmenting-path form needs at most as many rows as columns: solve the transpose
    // otherwise and read the answer back.
    let transposed = rows > cols;
    let a = if transposed { cost.t() } else { cost.view() };
    let col_of_row = shortest_augmenting_path(&a);
    let mut row_to_col = vec![None; rows];
    if transposed {
        for (c, &r) in col_of_row.iter().enumerate() {
            row_to_col[r] = Some(c);
        }
    } else {
        for (r, &c) in col_of_row.iter().enumerate() {
            row_to_col[r] = Some(c);
        }
    }
    let total = row_to_col
        .iter()
        .enumerate()
        .filter_map(|(r, c)| c.map(|c| cost[[r, c]]))
        .sum();
    Ok(Assignment {
        row_to_col,
        cost: total,
    })
}

/// Shortest augmenting paths with potentials for `n <= m`; returns the column of every row.
///
/// Index 0 of the 1-based arrays is a virtual column that holds the row being inserted, which
/// keeps the augmentation loop free of special cases.
fn shortest_augmenting_path(a: &ArrayView2<f64>) -> Vec<usize> {
    let (n, m) = a.dim();
    let mut u = vec![0.0f64; n + 1];
    let mut v = vec![0.0f64; m + 1];
    let mut row_of_col = vec![0usize; m + 1]; // 0 = free
    let mut way = vec![0usize; m + 1];
    let mut min_v = vec![0.0f64; m + 1];
    let mut used = vec![false; m + 1];
    for i in 1..=n {
        row_of_col[0] = i;
        let mut j0 = 0usize;
        min_v.iter_mut().for_each(|x| *x = f64::INFINITY);
        used.iter_mut().for_each(|x| *x = false);
        loop {
            used[j0] = true;
            let i0 = row_of_col[j0];
            let mut delta = f64::INFINITY;
            let mut j1 = 0usize;
            for j in 1..=m {
                if used[j] {
                    continue;
                }
                let cur = a[[i0 - 1, j - 1]] - u[i0] - v[j];
                if cur < min_v[j] {
                    min_v[j] = cur;
                    way[j] = j0;
                }
                if min_v[j] < delta {
                    delta = min_v[j];
                    j1 = j;
                }
            }
            for j in 0..=m {
                if used[j] {
                    u[row_of_col[j]] += delta;
                    v[j] -= delta;
                } else {
                    min_v[j] -= delta;
                }
            }
            j0 = j1;
            if row_of_col[j0] == 0 {
                break;
            }
        }
        // Flip the augmenting path back to the virtual column.
        loop {
            let j1 = way[j0];
            row_of_col[j0] = row_of_col[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut col_of_row = vec![0usize; n];
    for j in 1..=m {
        if row_of_col[j] != 0 {
            col_of_row[row_of_col[j] - 1] = j - 1;
        }
    }
    col_of_row
}

/// The `(row, column)` pairs chosen by Python `munkres` 1.1.4 for this matrix, in row order.
///
/// Like that package, a rectangular matrix is padded with zero-cost rows or columns to a
/// square one, and only pairs inside the original matrix are returned. The arithmetic
/// (row reduction, then adding/subtracting the smallest uncovered value) is done in the same
/// order on `f64`, so zero tests give the same answers and the same optimum is found.
pub fn munkres_assignment(cost: ArrayView2<f64>) -> Result<Vec<(usize, usize)>> {
    check_finite(&cost)?;
    let (rows, cols) = cost.dim();
    if rows == 0 || cols == 0 {
        return Ok(Vec::new());
    }
    let n = rows.max(cols);
    let mut solver = Munkres::new(n);
    for r in 0..rows {
        for c in 0..cols {
            solver.c[r * n + c] = cost[[r, c]];
        }
    }
    solver.run();
    Ok((0..rows)
        .filter_map(|r| solver.star_in_row[r].filter(|&c| c < cols).map(|c| (r, c)))
        .collect())
}

/// State of the classic Munkres steps. The package keeps a full `marked` matrix; at most one
/// star per row and per column and one prime per row can exist, so index vectors hold the
/// same information and make the "first starred/primed element" look-ups O(1).
struct Munkres {
    n: usize,
    c: Vec<f64>,
    row_covered: Vec<bool>,
    col_covered: Vec<bool>,
    star_in_row: Vec<Option<usize>>,
    star_in_col: Vec<Option<usize>>,
    prime_in_row: Vec<Option<usize>>,
}

enum Step {
    Cover,
    Prime,
    Augment(usize, usize),
    Adjust,
    Done,
}

impl Munkres {
    fn new(n: usize) -> Self {
        Munkres {
            n,
            c: vec![0.0; n * n],
            row_covered: vec![false; n],
            col_covered: vec![false; n],
            star_in_row: vec![None; n],
            star_in_col: vec![None; n],
            prime_in_row: vec![None; n],
        }
    }

    fn run(&mut self) {
        self.reduce_rows();
        self.star_greedily();
        let mut step = Step::Cover;
        loop {
            step = match step {
                Step::Cover => self.cover_starred_columns(),
                Step::Prime => self.prime_zeros(),
                Step::Augment(r, c) => self.augment(r, c),
                Step::Adjust => self.adjust(),
                Step::Done => return,
            };
        }
    }

    /// Step 1: subtract each row's minimum from the row.
    fn reduce_rows(&mut self) {
        let n = self.n;
        for row in self.c.chunks_mut(n) {
            let min = row.iter().copied().fold(f64::INFINITY, f64::min);
            row.iter_mut().for_each(|x| *x -= min);
        }
    }

    /// Step 2: star the first zero of each row whose column has no star yet.
    fn star_greedily(&mut self) {
        let n = self.n;
        for i in 0..n {
            for j in 0..n {
                if self.c[i * n + j] == 0.0 && self.star_in_col[j].is_none() {
                    self.star_in_row[i] = Some(j);
                    self.star_in_col[j] = Some(i);
                    break;
                }
            }
        }
    }

    /// Step 3: cover the starred columns; n covered columns means the stars are the answer.
    fn cover_starred_columns(&mut self) -> Step {
        let mut count = 0;
        for j in 0..self.n {
            if self.star_in_col[j].is_some() {
                self.col_covered[j] = true;
                count += 1;
            }
        }
        if count >= self.n {
            Step::Done
        } else {
            Step::Prime
        }
    }

    /// The package's `__find_a_zero(i0, j0)`: rows are scanned cyclically from `i0`; in the
    /// first uncovered row holding an uncovered zero, the *last* such zero in the cyclic
    /// column order starting at `j0` is returned (the package keeps scanning after a hit).
    fn find_uncovered_zero(&self, i0: usize, j0: usize) -> Option<(usize, usize)> {
        let n = self.n;
        for di in 0..n {
            let i = (i0 + di) % n;
            if self.row_covered[i] {
                continue;
            }
            let mut found = None;
            for dj in 0..n {
                let j = (j0 + dj) % n;
                if !self.col_covered[j] && self.c[i * n + j] == 0.0 {
                    found = Some(j);
                }
            }
            if let Some(j) = found {
                return Some((i, j));
            }
        }
        None
    }

    /// Step 4: prime uncovered zeros until one has no star in its row (augment) or none is
    /// left (adjust the matrix).
    fn prime_zeros(&mut self) -> Step {
        let (mut row, mut col) = (0, 0);
        loop {
            let Some((r, c)) = self.find_uncovered_zero(row, col) else {
                return Step::Adjust;
            };
            self.prime_in_row[r] = Some(c);
            row = r;
            match self.star_in_row[r] {
                Some(sc) => {
                    col = sc;
                    self.row_covered[r] = true;
                    self.col_covered[sc] = false;
                }
                None => return Step::Augment(r, c),
            }
        }
    }

    /// Step 5: flip the alternating prime/star path that starts at the primed zero (r, c).
    fn augment(&mut self, r0: usize, c0: usize) -> Step {
        let mut primes = vec![(r0, c0)];
        let mut stars = Vec::new();
        let mut col = c0;
        while let Some(r) = self.star_in_col[col] {
            stars.push((r, col));
            // A starred row reached here was covered after being primed, so it has a prime.
            let Some(pc) = self.prime_in_row[r] else {
                break;
            };
            primes.push((r, pc));
            col = pc;
        }
        for &(r, c) in &stars {
            if self.star_in_row[r] == Some(c) {
                self.star_in_row[r] = None;
            }
            if self.star_in_col[c] == Some(r) {
                self.star_in_col[c] = None;
            }
        }
        for &(r, c) in &primes {
            self.star_in_row[r] = Some(c);
            self.star_in_col[c] = Some(r);
        }
        self.row_covered.iter_mut().for_each(|x| *x = false);
        self.col_covered.iter_mut().for_each(|x| *x = false);
        self.prime_in_row.iter_mut().for_each(|x| *x = None);
        Step::Cover
    }

    /// Step 6: add the smallest uncovered value to covered rows and subtract it from
    /// uncovered columns (both operations, in that order, exactly as the package does).
    fn adjust(&mut self) -> Step {
        let n = self.n;
        let mut min = f64::MAX;
        for i in 0..n {
            if self.row_covered[i] {
                continue;
            }
            for j in 0..n {
                if !self.col_covered[j] && min > self.c[i * n + j] {
                    min = self.c[i * n + j];
                }
            }
        }
        for i in 0..n {
            for j in 0..n {
                let x = &mut self.c[i * n + j];
                if self.row_covered[i] {
                    *x += min;
                }
                if !self.col_covered[j] {
                    *x -= min;
                }
            }
        }
        Step::Prime
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    /// Small deterministic generator so the tests need no extra dependency.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn brute_force(cost: &Array2<f64>) -> f64 {
        let (rows, cols) = cost.dim();
        let (a, n, m) = if rows <= cols {
            (cost.clone(), rows, cols)
        } else {
            (cost.t().to_owned(), cols, rows)
        };
        fn go(a: &Array2<f64>, r: usize, n: usize, used: &mut Vec<bool>, acc: f64, best: &mut f64) {
            if r == n {
                *best = best.min(acc);
                return;
            }
            for c in 0..used.len() {
                if !used[c] {
                    used[c] = true;
                    go(a, r + 1, n, used, acc + a[[r, c]], best);
                    used[c] = false;
                }
            }
        }
        let mut best = f64::INFINITY;
        go(&a, 0, n, &mut vec![false; m], 0.0, &mut best);
        best
    }

    fn random_matrix(rng: &mut Lcg, rows: usize, cols: usize, levels: u64) -> Array2<f64> {
        Array2::from_shape_fn((rows, cols), |_| rng.below(levels) as f64 - 3.0)
    }

    fn check_valid(pairs: &[(usize, usize)], rows: usize, cols: usize) {
        let mut rs = vec![false; rows];
        let mut cs = vec![false; cols];
        for &(r, c) in pairs {
            assert!(!rs[r] && !cs[c], "row or column used twice: {pairs:?}");
            rs[r] = true;
            cs[c] = true;
        }
        assert_eq!(pairs.len(), rows.min(cols));
    }

    #[test]
    fn both_solvers_are_optimal_on_random_small_matrices() {
        let mut rng = Lcg(7);
        for case in 0..600 {
            let rows = 1 + rng.below(6) as usize;
            let cols = 1 + rng.below(6) as usize;
            // Few levels: many ties, the hard case for tie handling; many levels: generic.
            let levels = if case % 2 == 0 { 3 } else { 1000 };
            let cost = random_matrix(&mut rng, rows, cols, levels);
            let best = brute_force(&cost);

            let jv = min_cost_assignment(cost.view()).unwrap();
            check_valid(&jv.pairs(), rows, cols);
            assert!(
                (jv.cost - best).abs() < 1e-9,
                "JV {} vs {best} for {cost:?}",
                jv.cost
            );

            let mk = munkres_assignment(cost.view()).unwrap();
            check_valid(&mk, rows, cols);
            let mk_cost: f64 = mk.iter().map(|&(r, c)| cost[[r, c]]).sum();
            assert!(
                (mk_cost - best).abs() < 1e-9,
                "munkres {mk_cost} vs {best} for {cost:?}"
            );
        }
    }

    #[test]
    fn fractional_costs_and_large_padding_values() {
        // The shape grouping produces: rounded distances * 100 - score, padded with 1e10.
        let cost = Array2::from_shape_vec(
            (3, 3),
            vec![
                -0.9,
                99.2,
                1e10,
                100.0 - 0.7,
                -0.7,
                1e10,
                199.6,
                299.6,
                1e10,
            ],
        )
        .unwrap();
        let mk = munkres_assignment(cost.view()).unwrap();
        assert_eq!(mk, vec![(0, 0), (1, 1), (2, 2)]);
        let jv = min_cost_assignment(cost.view()).unwrap();
        assert_eq!(jv.pairs(), vec![(0, 0), (1, 1), (2, 2)]);
    }

    #[test]
    fn munkres_tie_breaking_matches_the_python_package() {
        // All-equal costs: munkres 1.1.4 stars the first free zero of each row (diagonal).
        let flat = Array2::<f64>::zeros((3, 3));
        assert_eq!(
            munkres_assignment(flat.view()).unwrap(),
            vec![(0, 0), (1, 1), (2, 2)]
        );
        // More columns than rows: padded rows are dropped from the answer.
        let wide = Array2::from_shape_vec((2, 3), vec![1.0, 1.0, 0.0, 0.0, 0.0, 5.0]).unwrap();
        assert_eq!(
            munkres_assignment(wide.view()).unwrap(),
            vec![(0, 2), (1, 0)]
        );
        // More rows than columns: one row stays unassigned.
        let tall = Array2::from_shape_vec((3, 1), vec![3.0, 1.0, 2.0]).unwrap();
        assert_eq!(munkres_assignment(tall.view()).unwrap(), vec![(1, 0)]);
    }

    #[test]
    fn empty_and_non_finite_inputs() {
        let empty = Array2::<f64>::zeros((0, 4));
        assert!(munkres_assignment(empty.view()).unwrap().is_empty());
        assert!(min_cost_assignment(empty.view())
            .unwrap()
            .pairs()
            .is_empty());
        let mut bad = Array2::<f64>::zeros((2, 2));
        bad[[1, 0]] = f64::NAN;
        assert!(matches!(
            min_cost_assignment(bad.view()),
            Err(Error::Shape(_))
        ));
        bad[[1, 0]] = f64::INFINITY;
        assert!(matches!(
            munkres_assignment(bad.view()),
            Err(Error::Shape(_))
        ));
    }
}
