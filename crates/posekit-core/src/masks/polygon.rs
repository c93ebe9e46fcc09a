//! Polygon (and box) to RLE, exactly as pycocotools' `rleFrPoly` rasterises it.
//!
//! The C code (cocoapi `common/maskApi.c`):
//!
//! 1. scales the vertices by 5 and rounds them with `(int)(5 * v + .5)` (truncation toward
//!    zero, so negative values round up),
//! 2. walks every edge pixel by pixel on that 5x grid (a DDA along the longer axis, rounding the
//!    other coordinate with the same `(int)(... + .5)`, walking a flipped copy of edges that go
//!    "backwards" but storing the points in the original direction),
//! 3. keeps, for each pair of consecutive walk points whose x differs, the crossing if its x
//!    falls on a pixel centre of the original grid (`x = 5 c + 2`), with the y of the lower
//!    point mapped back, clamped to `[0, h]` and rounded up,
//! 4. turns each crossing `(x, y)` into the column-major position `x * h + y`, sorts them, and
//!    makes runs of the gaps: every crossing toggles the value, two at the same place cancel.
//!
//! Step 2 is done here without visiting every point of the walk: along an edge the walk's x is
//! monotone, so for each pixel-centre column the edge spans only the one step where x passes
//! it is looked at (found directly or by galloping search). The crossings, their
//! order-independent sort and the runs are the C code's, so the counts are identical; a
//! polygon costs one step per column its edges cross in the image, where the C walk visits 5
//! points per pixel of boundary, millions for vertices far outside the image.

use super::rle::{pixel_count, Rle};
use super::MaskError;

/// pycocotools' upsampling factor: the boundary is walked on a grid 5 times finer than pixels.
const SCALE: f64 = 5.0;

/// The largest absolute coordinate accepted in a polygon or box.
///
/// pycocotools converts `5 * v + 0.5` to a C `int` and subtracts such values; beyond
/// `±(2^30 - 1) / 5` that can overflow, which is undefined behaviour, so there is no
/// pycocotools answer to reproduce. Real annotations are within a few pixels of their image.
pub const MAX_POLYGON_COORDINATE: f64 = ((1u32 << 30) - 1) as f64 / SCALE;

/// Why a polygon cannot be rasterised.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolygonError {
    /// `x, y` pairs need an even count. pycocotools silently drops the last number.
    #[error("has {len} coordinates, an odd number (x, y pairs expected; pycocotools would drop the last one)")]
    OddLength { len: usize },
    /// Fewer than 3 points enclose no area. pycocotools refuses them in a segmentation's first
    /// polygon (reading 4 numbers as a box `[x, y, w, h]` and then failing) and rasterises
    /// them in later ones to (almost always) nothing; here they are refused wherever they are.
    #[error("has {points} point(s); a polygon needs at least 3 (pycocotools refuses fewer than 3 in a first polygon)")]
    TooFewPoints { points: usize },
    /// A coordinate that is not finite or is too far away to rasterise exactly.
    #[error(
        "coordinate {index} is {value}, outside the range ±{} that can be rasterised exactly",
        MAX_POLYGON_COORDINATE
    )]
    Coordinate { index: usize, value: f64 },
}

impl Rle {
    /// Rasterises one polygon `[x0, y0, x1, y1, ...]` (pixel coordinates, the first point not
    /// repeated at the end) on a `height x width` image, as pycocotools' `frPyObjects` does for
    /// each polygon of a segmentation. Errors call it polygon 0.
    pub fn from_polygon(polygon: &[f64], height: u32, width: u32) -> Result<Rle, MaskError> {
        polygon_rle(0, polygon, height, width)
    }

    /// Rasterises a box `[x, y, w, h]` as pycocotools' `frBbox` does: the polygon of its four
    /// corners, so a box edge on a fractional coordinate is rounded the way polygons are.
    pub fn from_bbox(bbox: [f64; 4], height: u32, width: u32) -> Result<Rle, MaskError> {
        let [x, y, w, h] = bbox;
        let (xe, ye) = (x + w, y + h);
        polygon_rle(0, &[x, y, x, ye, xe, ye, xe, y], height, width)
    }
}

/// Polygon `index` of a segmentation, checked and rasterised.
pub(super) fn polygon_rle(
    index: usize,
    polygon: &[f64],
    height: u32,
    width: u32,
) -> Result<Rle, MaskError> {
    let problem = |problem| MaskError::Polygon { index, problem };
    if polygon.len() % 2 == 1 {
        return Err(problem(PolygonError::OddLength { len: polygon.len() }));
    }
    if polygon.len() < 6 {
        return Err(problem(PolygonError::TooFewPoints {
            points: polygon.len() / 2,
        }));
    }
    if let Some(i) = polygon.iter().position(|v| !in_range(*v)) {
        return Err(problem(PolygonError::Coordinate {
            index: i,
            value: polygon[i],
        }));
    }
    pixel_count(height, width)?;
    Ok(rasterise(polygon, height, width))
}

/// Finite and within [`MAX_POLYGON_COORDINATE`] (NaN is not).
fn in_range(v: f64) -> bool {
    v.abs() <= MAX_POLYGON_COORDINATE
}

/// `rleFrPoly` for a polygon already checked (even length, coordinates in range; any number of
/// points, as the C code takes) on an image whose pixels fit COCO's 32-bit counts.
fn rasterise(polygon: &[f64], height: u32, width: u32) -> Rle {
    let (h, w) = (u64::from(height), u64::from(width));
    if h == 0 || w == 0 {
        // An empty image: the C code, whose boundary test compares with `w - 1` in unsigned
        // arithmetic, would return garbage for w = 0; the empty mask is `[0]`, as `rleEncode`
        // writes it.
        return Rle::from_parts_unchecked(height, width, vec![0]);
    }
    let k = polygon.len() / 2;
    let scaled = |v: f64| c_round(SCALE * v);
    let vertex = |j: usize| (scaled(polygon[2 * j]), scaled(polygon[2 * j + 1]));

    // Steps 2 and 3: the crossings as column-major positions, plus h * w to close the last run.
    let mut positions = Vec::with_capacity(4 * k + 1);
    let grid = Grid { h, w };
    let mut previous_end: Option<Point> = None;
    for j in 0..k {
        let edge = Edge::new(vertex(j), vertex((j + 1) % k));
        // The pair that joins the last point of the previous edge to this edge's first.
        if let Some(end) = previous_end {
            positions.extend(grid.crossing(end, edge.first()));
        }
        edge.crossings(&grid, &mut positions);
        previous_end = Some(edge.last());
    }
    positions.push(h * w);

    // Step 4: sort, take the gaps, and let a gap of 0 (two crossings at one place) merge the
    // runs around it.
    positions.sort_unstable();
    let mut counts: Vec<u32> = Vec::with_capacity(positions.len());
    let mut previous = 0u64;
    let mut gaps = positions.iter().map(|&p| {
        let gap = p - previous;
        previous = p;
        gap as u32
    });
    counts.push(gaps.next().unwrap_or(0));
    while let Some(gap) = gaps.next() {
        if gap > 0 {
            counts.push(gap);
        } else if let Some(next) = gaps.next() {
            *counts.last_mut().expect("counts starts non-empty") += next;
        }
    }
    Rle::from_parts_unchecked(height, width, counts)
}

/// C's `(int)(v + .5)`: round half up for positive values, but truncation toward zero makes
/// negative values round up too (`-2.7` gives `-2`). NaN gives `i32::MIN`, what x86's
/// conversion instruction returns (it only arises for a zero-length edge, whose single point is
/// never half of a crossing).
fn c_round(v: f64) -> i64 {
    let r = v + 0.5;
    if r.is_nan() {
        i64::from(i32::MIN)
    } else {
        r as i64
    }
}

type Point = (i64, i64);

/// The image in pixels, and which walk steps can make a crossing in it.
struct Grid {
    h: u64,
    w: u64,
}

impl Grid {
    /// Step 3 for one pair of consecutive walk points, in walk order: the column-major
    /// position of the crossing, if any.
    fn crossing(&self, prev: Point, cur: Point) -> Option<u64> {
        if prev.0 == cur.0 {
            return None;
        }
        let x = if cur.0 < prev.0 { cur.0 } else { cur.0 - 1 };
        let xd = (x as f64 + 0.5) / SCALE - 0.5;
        if xd.floor() != xd || xd < 0.0 || xd > (self.w - 1) as f64 {
            return None;
        }
        let y = if cur.1 < prev.1 { cur.1 } else { prev.1 };
        let mut yd = (y as f64 + 0.5) / SCALE - 0.5;
        if yd < 0.0 {
            yd = 0.0;
        } else if yd > self.h as f64 {
            yd = self.h as f64;
        }
        Some(xd as u64 * self.h + yd.ceil() as u64)
    }
}

/// One edge of the scaled polygon as the C walk sees it: `(xs, ys)` is the start after the
/// optional flip, `len` the number of steps, and `s` the slope of the minor coordinate.
struct Edge {
    xs: i64,
    ys: i64,
    len: i64,
    s: f64,
    /// The walk steps along x (`dx >= dy`); otherwise along y.
    x_major: bool,
    /// The walk runs from `t = len` down to 0 (the edge was flipped to be walked forward).
    flip: bool,
}

impl Edge {
    fn new((x0, y0): Point, (x1, y1): Point) -> Edge {
        let (mut xs, mut xe, mut ys, mut ye) = (x0, x1, y0, y1);
        let dx = (xe - xs).abs();
        let dy = (ys - ye).abs();
        let x_major = dx >= dy;
        let flip = (x_major && xs > xe) || (!x_major && ys > ye);
        if flip {
            std::mem::swap(&mut xs, &mut xe);
            std::mem::swap(&mut ys, &mut ye);
        }
        // A zero-length edge divides 0 by 0, as in C; its NaN is never used (see `c_round`).
        let s = if x_major {
            (ye - ys) as f64 / dx as f64
        } else {
            (xe - xs) as f64 / dy as f64
        };
        Edge {
            xs,
            ys,
            len: dx.max(dy),
            s,
            x_major,
            flip,
        }
    }

    /// The walk point at parameter `t` in `0..=len`.
    fn point(&self, t: i64) -> Point {
        let minor = |start: i64| c_round(start as f64 + self.s * t as f64);
        if self.x_major {
            (t + self.xs, minor(self.ys))
        } else {
            (minor(self.xs), t + self.ys)
        }
    }

    fn first(&self) -> Point {
        self.point(if self.flip { self.len } else { 0 })
    }

    fn last(&self) -> Point {
        self.point(if self.flip { 0 } else { self.len })
    }

    /// The crossings of the pairs of consecutive points inside the edge's walk.
    ///
    /// A pair `{t - 1, t}` gives a crossing only for a pixel-centre column `c`, walk x
    /// `5 c + 2`, lying between the smaller walk x of the two and the larger minus one. x is
    /// monotone in `t`, so the only candidate pair for column `c` is the one where x passes
    /// `5 c + 2`: the walk is searched column by column (direct for x-major edges, galloping
    /// for y-major ones) instead of being stepped point by point.
    fn crossings(&self, grid: &Grid, out: &mut Vec<u64>) {
        let columns = grid.w as i64;
        let x0 = self.point(0).0;
        // The pair last visited, by its `t` (a large jump of x can be the pair of two columns).
        let mut last = 0;
        let mut visit = |t: i64, last: &mut i64| {
            if t > *last {
                let (a, b) = (self.point(t - 1), self.point(t));
                let (prev, cur) = if self.flip { (b, a) } else { (a, b) };
                out.extend(grid.crossing(prev, cur));
                *last = t;
            }
        };
        if self.x_major || self.s > 0.0 {
            // x grows with t: column c's pair ends at the first t with x(t) >= 5c + 3, for the
            // columns right of x(0).
            for c in ((x0 - 3).div_euclid(5) + 1).max(0)..columns {
                let target = 5 * c + 3;
                let t = if self.x_major {
                    target - self.xs
                } else {
                    first_where(last.max(1), self.len, |t| self.point(t).0 >= target)
                };
                if t > self.len {
                    break;
                }
                visit(t, &mut last);
            }
        } else if self.s < 0.0 {
            // x falls as t grows: column c's pair ends at the first t with x(t) <= 5c + 2, for
            // the columns left of x(0), right to left.
            for c in (0..=(x0 - 3).div_euclid(5).min(columns - 1)).rev() {
                let target = 5 * c + 2;
                let t = first_where(last.max(1), self.len, |t| self.point(t).0 <= target);
                if t > self.len {
                    break;
                }
                visit(t, &mut last);
            }
        }
        // Otherwise x never changes along the edge (this includes zero-length edges).
    }
}

/// The first `t` in `from..=to` where the monotone predicate holds, or `to + 1`, by galloping
/// from `from` (the answer is usually a step or two away) and then bisecting.
fn first_where(from: i64, to: i64, holds: impl Fn(i64) -> bool) -> i64 {
    if from > to {
        return to + 1;
    }
    let mut below = from - 1; // the predicate is false here (or it is before the range)
    let mut step = 1;
    let mut probe = from;
    loop {
        if holds(probe) {
            break;
        }
        below = probe;
        if probe == to {
            return to + 1;
        }
        probe = (probe + step).min(to);
        step *= 2;
    }
    // Now `holds(probe)` and not `holds(below)` (or `below` is before the range).
    let mut above = probe;
    while above - below > 1 {
        let mid = below + (above - below) / 2;
        if holds(mid) {
            above = mid;
        } else {
            below = mid;
        }
    }
    above
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The C `rleFrPoly` transcribed step by step (full walk into arrays), to check the fast
    /// walk against on polygons too large or odd for the committed pycocotools fixtures.
    fn reference(xy: &[f64], h: u64, w: u64) -> Vec<u32> {
        let k = xy.len() / 2;
        let mut x: Vec<i64> = (0..k).map(|j| c_round(SCALE * xy[2 * j])).collect();
        let mut y: Vec<i64> = (0..k).map(|j| c_round(SCALE * xy[2 * j + 1])).collect();
        x.push(x[0]);
        y.push(y[0]);
        let (mut u, mut v) = (Vec::new(), Vec::new());
        for j in 0..k {
            let (mut xs, mut xe, mut ys, mut ye) = (x[j], x[j + 1], y[j], y[j + 1]);
            let dx = (xe - xs).abs();
            let dy = (ys - ye).abs();
            let flip = (dx >= dy && xs > xe) || (dx < dy && ys > ye);
            if flip {
                std::mem::swap(&mut xs, &mut xe);
                std::mem::swap(&mut ys, &mut ye);
            }
            let s = if dx >= dy {
                (ye - ys) as f64 / dx as f64
            } else {
                (xe - xs) as f64 / dy as f64
            };
            if dx >= dy {
                for d in 0..=dx {
                    let t = if flip { dx - d } else { d };
                    u.push(t + xs);
                    v.push(c_round(ys as f64 + s * t as f64));
                }
            } else {
                for d in 0..=dy {
                    let t = if flip { dy - d } else { d };
                    v.push(t + ys);
                    u.push(c_round(xs as f64 + s * t as f64));
                }
            }
        }
        let mut a = Vec::new();
        for j in 1..u.len() {
            if u[j] == u[j - 1] {
                continue;
            }
            let xd = (if u[j] < u[j - 1] { u[j] } else { u[j] - 1 }) as f64;
            let xd = (xd + 0.5) / SCALE - 0.5;
            if xd.floor() != xd || xd < 0.0 || xd > (w - 1) as f64 {
                continue;
            }
            let yd = (if v[j] < v[j - 1] { v[j] } else { v[j - 1] }) as f64;
            let mut yd = (yd + 0.5) / SCALE - 0.5;
            if yd < 0.0 {
                yd = 0.0;
            } else if yd > h as f64 {
                yd = h as f64;
            }
            a.push(xd as u64 * h + yd.ceil() as u64);
        }
        a.push(h * w);
        a.sort_unstable();
        let mut p = 0;
        for value in a.iter_mut() {
            let t = *value;
            *value -= p;
            p = t;
        }
        let mut b = vec![a[0]];
        let mut j = 1;
        while j < a.len() {
            if a[j] > 0 {
                b.push(a[j]);
                j += 1;
            } else {
                j += 1;
                if j < a.len() {
                    *b.last_mut().unwrap() += a[j];
                    j += 1;
                }
            }
        }
        b.into_iter().map(|c| c as u32).collect()
    }

    /// A small deterministic generator (no dependency for one test).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    #[test]
    fn fast_walk_equals_the_full_walk() {
        let mut rng = Lcg(7);
        for case in 0..3000 {
            let h = 1 + (rng.next() * 40.0) as u32;
            let w = 1 + (rng.next() * 40.0) as u32;
            let points = 3 + (rng.next() * 8.0) as usize;
            // Some polygons far outside the image, some on the 0.1 grid where rounding ties.
            let spread = [1.5, 3.0, 30.0][case % 3];
            let xy: Vec<f64> = (0..2 * points)
                .map(|i| {
                    let extent = if i % 2 == 0 { w } else { h } as f64;
                    let v = (rng.next() * spread - (spread - 1.0) / 2.0) * extent;
                    if case % 2 == 0 {
                        (v * 10.0).round() / 10.0
                    } else {
                        v
                    }
                })
                .collect();
            let fast = Rle::from_polygon(&xy, h, w).unwrap();
            assert_eq!(
                fast.counts(),
                reference(&xy, h.into(), w.into()).as_slice(),
                "{h}x{w} {xy:?}"
            );
        }
    }

    #[test]
    fn far_away_vertices_are_cheap_and_exact() {
        // Edges crossing the image from far outside on both axes: the full walk has about
        // 4 * 10^6 points; the fast one looks at the image's columns only.
        let xy = [-2e5, 10.3, 2e5, 12.7, 30.0, 2e5, -1e5, -1.5e5];
        let fast = Rle::from_polygon(&xy, 40, 30).unwrap();
        assert_eq!(fast.counts(), reference(&xy, 40, 30).as_slice());
        let huge = [
            -MAX_POLYGON_COORDINATE,
            -MAX_POLYGON_COORDINATE,
            MAX_POLYGON_COORDINATE,
            3.0,
            7.0,
            MAX_POLYGON_COORDINATE,
        ];
        let rle = Rle::from_polygon(&huge, 480, 640).unwrap();
        assert!(rle.area() > 0);
    }

    #[test]
    fn a_square_covers_its_pixels() {
        // pycocotools: frPyObjects([[10,10,20,10,20,20,10,20]], 50, 60) has area 100.
        let rle =
            Rle::from_polygon(&[10.0, 10.0, 20.0, 10.0, 20.0, 20.0, 10.0, 20.0], 50, 60).unwrap();
        assert_eq!(rle.area(), 100);
        let mask = rle.decode();
        assert_eq!(mask[[10, 10]], 1);
        assert_eq!(mask[[19, 19]], 1);
        assert_eq!(mask[[20, 19]], 0);
        assert_eq!(mask[[9, 10]], 0);
        let boxed = Rle::from_bbox([10.0, 10.0, 10.0, 10.0], 50, 60).unwrap();
        assert_eq!(boxed.counts(), rle.counts());
    }

    #[test]
    fn malformed_polygons_are_errors() {
        let problem = |polygon: &[f64]| match polygon_rle(2, polygon, 10, 10) {
            Err(MaskError::Polygon { index: 2, problem }) => problem,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            problem(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]),
            PolygonError::OddLength { len: 7 }
        );
        assert_eq!(
            problem(&[1.0, 2.0, 3.0, 4.0]),
            PolygonError::TooFewPoints { points: 2 }
        );
        assert_eq!(problem(&[]), PolygonError::TooFewPoints { points: 0 });
        let err = problem(&[1.0, 2.0, 3.0, f64::NAN, 5.0, 6.0]);
        assert!(matches!(err, PolygonError::Coordinate { index: 3, .. }));
        let err = Rle::from_polygon(&[1.0, 2.0, 3e9, 4.0, 5.0, 6.0], 10, 10).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "polygon 0: coordinate 2 is 3000000000, outside the range ±{MAX_POLYGON_COORDINATE} that can be rasterised exactly"
            )
        );
        assert!(matches!(
            Rle::from_polygon(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 70_000, 70_000),
            Err(MaskError::TooLarge { .. })
        ));
    }

    #[test]
    fn empty_image_gives_the_empty_mask() {
        let rle = Rle::from_polygon(&[0.0, 0.0, 5.0, 0.0, 5.0, 5.0], 0, 7).unwrap();
        assert_eq!(rle.counts(), &[0]);
        assert_eq!(rle.area(), 0);
    }
}
