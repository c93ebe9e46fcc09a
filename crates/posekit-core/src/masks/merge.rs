//! Union and intersection of masks on their runs (pycocotools' `rleMerge`), without decoding.

use super::rle::Rle;
use super::MaskError;

impl Rle {
    /// The pixels set in any of the masks (pycocotools' `merge(rles)`, what `annToRLE` does
    /// with the polygons of one person).
    pub fn union(rles: &[Rle]) -> Result<Rle, MaskError> {
        merge(rles, false)
    }

    /// The pixels set in every one of the masks (pycocotools' `merge(rles, intersect=1)`).
    pub fn intersection(rles: &[Rle]) -> Result<Rle, MaskError> {
        merge(rles, true)
    }
}

/// `rleMerge`: folds the masks in order, each step walking the two run lists in parallel and
/// closing an output run wherever the combined value changes.
///
/// Each step first runs the C walk step for step, so the counts match pycocotools exactly,
/// including the runs of length 0 that inputs holding some can leave in the output. That walk
/// stops as soon as the current runs of both inputs are empty, which is early when both reach
/// a run of length 0 at the same pixel: pycocotools then returns counts that fall short of
/// `h * w` (and merging those again can loop forever). Only in that case is the step redone by
/// [`merge_two_complete`], which walks to the end of both inputs. pycocotools returns a `0 x 0`
/// mask for an empty list or masks of different sizes; both are errors here.
fn merge(rles: &[Rle], intersect: bool) -> Result<Rle, MaskError> {
    let first = rles.first().ok_or(MaskError::MergeEmpty)?;
    let (height, width) = (first.height(), first.width());
    if let Some(other) = rles
        .iter()
        .find(|r| r.height() != height || r.width() != width)
    {
        return Err(MaskError::MergeSizes {
            height,
            width,
            other_height: other.height(),
            other_width: other.width(),
        });
    }
    let pixels = u64::from(height) * u64::from(width);
    let mut acc = first.counts().to_vec();
    let mut out = Vec::with_capacity(acc.len());
    for b in &rles[1..] {
        merge_two_as_pycocotools(&acc, b.counts(), intersect, &mut out);
        if out.iter().map(|&c| u64::from(c)).sum::<u64>() != pixels {
            merge_two_complete(&acc, b.counts(), intersect, &mut out);
        }
        std::mem::swap(&mut acc, &mut out);
    }
    Ok(Rle::from_parts_unchecked(height, width, acc))
}

/// One step of `rleMerge` as written in C: `a` op `b` into `out`. `ca`/`cb` are what is left
/// of the current runs, `va`/`vb` their values; `cc` grows the output run until the value
/// changes. Inputs of equal sums make it end (every turn consumes pixels or moves to a next
/// run), possibly early (see [`merge`]).
fn merge_two_as_pycocotools(a: &[u32], b: &[u32], intersect: bool, out: &mut Vec<u32>) {
    out.clear();
    let (mut ca, mut cb) = (first_count(a), first_count(b));
    let (mut ia, mut ib) = (1, 1);
    let (mut va, mut vb, mut v) = (false, false, false);
    let mut cc = 0u32;
    // `ct` is what is left of both current runs; it is a 32-bit sum in C, which could wrap to 0
    // only for masks of 2^31 pixels or more.
    let mut ct = 1u64;
    while ct > 0 {
        let c = ca.min(cb);
        cc += c;
        ct = 0;
        ca -= c;
        if ca == 0 && ia < a.len() {
            ca = a[ia];
            ia += 1;
            va = !va;
        }
        ct += u64::from(ca);
        cb -= c;
        if cb == 0 && ib < b.len() {
            cb = b[ib];
            ib += 1;
            vb = !vb;
        }
        ct += u64::from(cb);
        let vp = v;
        v = if intersect { va && vb } else { va || vb };
        if v != vp || ct == 0 {
            out.push(cc);
            cc = 0;
        }
    }
}

/// The same walk, ending only when both inputs are used up, and closing a run only where the
/// value changes (and at the end), so the counts always cover the mask.
fn merge_two_complete(a: &[u32], b: &[u32], intersect: bool, out: &mut Vec<u32>) {
    out.clear();
    let (mut ca, mut cb) = (first_count(a), first_count(b));
    let (mut ia, mut ib) = (1, 1);
    let (mut va, mut vb, mut v) = (false, false, false);
    let mut cc = 0u32;
    loop {
        let c = ca.min(cb);
        cc += c;
        ca -= c;
        if ca == 0 && ia < a.len() {
            ca = a[ia];
            ia += 1;
            va = !va;
        }
        cb -= c;
        if cb == 0 && ib < b.len() {
            cb = b[ib];
            ib += 1;
            vb = !vb;
        }
        let done = ca == 0 && cb == 0 && ia == a.len() && ib == b.len();
        let vp = v;
        v = if intersect { va && vb } else { va || vb };
        if v != vp || done {
            out.push(cc);
            cc = 0;
        }
        if done {
            break;
        }
    }
}

/// C reads `cnts[0]` unconditionally; an empty count list only describes a 0-pixel mask.
fn first_count(counts: &[u32]) -> u32 {
    counts.first().copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn dense(h: usize, w: usize, seed: u64) -> Array2<u8> {
        let mut state = seed;
        Array2::from_shape_fn((h, w), |_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            u8::from((state >> 61) < 3)
        })
    }

    #[test]
    fn union_and_intersection_match_pixelwise_logic() {
        for seed in 0..20 {
            let (a, b, c) = (
                dense(7, 5, seed),
                dense(7, 5, seed + 100),
                dense(7, 5, seed + 200),
            );
            let rles = [a.view(), b.view(), c.view()].map(|m| Rle::encode(m).unwrap());
            let union = Rle::union(&rles).unwrap();
            let inter = Rle::intersection(&rles).unwrap();
            let or = ndarray::Zip::from(&a)
                .and(&b)
                .and(&c)
                .map_collect(|&x, &y, &z| u8::from(x | y | z != 0));
            let and = ndarray::Zip::from(&a)
                .and(&b)
                .and(&c)
                .map_collect(|&x, &y, &z| x & y & z);
            assert_eq!(union.decode(), or);
            assert_eq!(inter.decode(), and);
            // Runs from a merge of canonical inputs are canonical: the same as encoding.
            assert_eq!(union, Rle::encode(or.view()).unwrap());
        }
    }

    #[test]
    fn one_mask_is_returned_as_is_and_sizes_must_agree() {
        let a = Rle::new(2, 2, vec![1, 0, 0, 3]).unwrap();
        assert_eq!(Rle::union(std::slice::from_ref(&a)).unwrap(), a);
        assert_eq!(Rle::union(&[]).unwrap_err(), MaskError::MergeEmpty);
        let b = Rle::new(1, 4, vec![4]).unwrap();
        assert_eq!(
            Rle::union(&[a, b]).unwrap_err().to_string(),
            "cannot merge a 2x2 mask with a 1x4 one"
        );
    }

    #[test]
    fn zero_runs_follow_pycocotools() {
        // Expected counts from pycocotools 2.0.11: `merge` of `frPyObjects({'size': [1, 6],
        // 'counts': ...})`, both orders, union then intersection. Runs of length 0 survive
        // the walk in some cases, and the compressed string depends on them.
        let rle = |counts: &[u32]| Rle::new(1, 6, counts.to_vec()).unwrap();
        type Case<'a> = (&'a [u32], &'a [u32], &'a [u32], &'a [u32]);
        let cases: [Case; 3] = [
            (&[2, 0, 4], &[1, 5], &[1, 5], &[2, 0, 4]),
            (&[2, 0, 0, 4], &[3, 1, 2], &[2, 0, 0, 4], &[3, 1, 2]),
            (&[1, 2, 0, 1, 2], &[6], &[1, 2, 0, 1, 2], &[6]),
        ];
        for (a, b, union, inter) in cases {
            for pair in [[rle(a), rle(b)], [rle(b), rle(a)]] {
                assert_eq!(Rle::union(&pair).unwrap().counts(), union, "{a:?} | {b:?}");
                assert_eq!(
                    Rle::intersection(&pair).unwrap().counts(),
                    inter,
                    "{a:?} & {b:?}"
                );
            }
        }
    }

    #[test]
    fn zero_runs_meeting_at_one_pixel_do_not_cut_the_mask_short() {
        // pycocotools merges these two into counts [0, 2] (2 of 6 pixels) and then loops
        // forever merging that with a third mask; here the union covers the mask.
        let a = Rle::new(1, 6, vec![0, 2, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 1]).unwrap();
        let b = Rle::new(1, 6, vec![0, 2, 0, 0, 2, 0, 2]).unwrap();
        let c = Rle::new(1, 6, vec![0, 1, 0, 0, 0, 2, 2, 1]).unwrap();
        let or = |x: &Rle, y: &Rle| {
            ndarray::Zip::from(&x.decode())
                .and(&y.decode())
                .map_collect(|&p, &q| p | q)
        };
        let ab = Rle::union(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(ab.decode(), or(&a, &b));
        let abc = Rle::union(&[a.clone(), b.clone(), c.clone()]).unwrap();
        assert_eq!(abc.decode(), or(&ab, &c));
        let inter = Rle::intersection(&[a.clone(), b.clone()]).unwrap();
        let and = ndarray::Zip::from(&a.decode())
            .and(&b.decode())
            .map_collect(|&p, &q| p & q);
        assert_eq!(inter.decode(), and);
    }
}
