//! Exact scores of a query against a few full-precision rows: how a search ranks the
//! candidates that a quantized index proposed, once their full vectors are fetched; and
//! each row of a batch against the rows before it, for a batch placed as if its rows
//! came one after the other.

use super::Metric;
use crate::quant::kernels::kernels;

/// The score of `query` against each `dim`-long row of `rows` (row-major), higher is
/// closer: cosine similarity, inner product, or negative squared Euclidean distance. A
/// zero vector has cosine 0 with everything. `rows.len()` must be a multiple of
/// `query.len()`.
pub fn score_rows(metric: Metric, query: &[f32], rows: &[f32]) -> Vec<f32> {
    let dim = query.len();
    if dim == 0 {
        return Vec::new();
    }
    debug_assert_eq!(rows.len() % dim, 0);
    let q_sq = (kernels().dot_f32)(query, query);
    rows.chunks_exact(dim)
        .map(|row| score_row(metric, query, q_sq, row))
        .collect()
}

/// For each `dim`-long row `i` of `rows`, the `k` best of the rows before it: their
/// positions (best first; ties go to the earlier row) and scores, as [`score_rows`]
/// scores them. Row `i` has `min(i, k)` of them; the rest of its `k` places hold
/// position `-1` and score `-inf`. Returned row-major, `rows × k` each.
pub fn nearest_earlier(metric: Metric, rows: &[f32], dim: usize, k: usize) -> (Vec<i64>, Vec<f32>) {
    if dim == 0 || k == 0 {
        return (Vec::new(), Vec::new());
    }
    let dot = kernels().dot_f32;
    // Each row's squared norm once, not once per later row it is scored against.
    let sq: Vec<f32> = rows.chunks_exact(dim).map(|r| dot(r, r)).collect();
    let n = sq.len();
    let mut positions = vec![-1i64; n * k];
    let mut scores = vec![f32::NEG_INFINITY; n * k];
    // Higher first, then the earlier row; equal scores (0.0 and -0.0 too) keep their
    // order, as a stable sort would.
    let order = |a: &(f32, usize), b: &(f32, usize)| {
        b.0.partial_cmp(&a.0)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.1.cmp(&b.1))
    };
    let mut best: Vec<(f32, usize)> = Vec::with_capacity(n);
    for (i, query) in rows.chunks_exact(dim).enumerate() {
        best.clear();
        best.extend(
            rows[..i * dim]
                .chunks_exact(dim)
                .enumerate()
                .map(|(j, row)| (score_of(metric, dot(query, row), sq[i], sq[j]), j)),
        );
        if best.len() > k {
            best.select_nth_unstable_by(k - 1, order);
            best.truncate(k);
        }
        best.sort_unstable_by(order);
        for (slot, &(score, j)) in best.iter().enumerate() {
            positions[i * k + slot] = j as i64;
            scores[i * k + slot] = score;
        }
    }
    (positions, scores)
}

/// The score of `query` (whose squared norm is `q_sq`) against one row of its length.
#[inline]
fn score_row(metric: Metric, query: &[f32], q_sq: f32, row: &[f32]) -> f32 {
    let dot = kernels().dot_f32;
    let r_sq = if metric == Metric::Ip {
        0.0
    } else {
        dot(row, row)
    };
    score_of(metric, dot(query, row), q_sq, r_sq)
}

/// The score of a query and a row from their dot product and squared norms (`r_sq` is
/// not read for `Ip`).
#[inline]
fn score_of(metric: Metric, dot: f32, q_sq: f32, r_sq: f32) -> f32 {
    match metric {
        Metric::Ip => dot,
        Metric::Cosine => {
            let norms = (r_sq * q_sq).sqrt();
            if norms > 0.0 {
                dot / norms
            } else {
                0.0
            }
        }
        Metric::L2 => 2.0 * dot - r_sq - q_sq,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_match_the_definitions() {
        let q = [1.0f32, 2.0, 2.0];
        let rows = [2.0f32, 4.0, 4.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0];
        let ip = score_rows(Metric::Ip, &q, &rows);
        assert_eq!(ip, vec![18.0, 0.0, 1.0]);
        let cos = score_rows(Metric::Cosine, &q, &rows);
        assert!((cos[0] - 1.0).abs() < 1e-6 && cos[1] == 0.0 && (cos[2] - 1.0 / 3.0).abs() < 1e-6);
        let l2 = score_rows(Metric::L2, &q, &rows);
        assert!(
            (l2[0] + 9.0).abs() < 1e-5 && (l2[1] + 9.0).abs() < 1e-5,
            "{l2:?}"
        );
        assert!((l2[2] + 8.0).abs() < 1e-5, "{l2:?}");
        assert!(score_rows(Metric::Ip, &[], &[]).is_empty());
    }

    #[test]
    fn nearest_earlier_ranks_the_rows_before_each_row() {
        // Rows 1 and 2 tie against row 3; row 0 is the worst of its earlier rows.
        let rows = [0.0f32, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.1];
        let (pos, scores) = nearest_earlier(Metric::Ip, &rows, 2, 2);
        assert_eq!(pos, vec![-1, -1, 0, -1, 1, 0, 1, 2]);
        let expected = [f32::NEG_INFINITY, f32::NEG_INFINITY, 0.0, f32::NEG_INFINITY];
        assert_eq!(&scores[..4], &expected);
        assert_eq!(&scores[4..], &[1.0, 0.0, 1.0, 1.0]);
        for (i, query) in rows.chunks_exact(2).enumerate() {
            let all = score_rows(Metric::Cosine, query, &rows[..i * 2]);
            let (pos, scores) = nearest_earlier(Metric::Cosine, &rows, 2, 4);
            for (slot, &j) in pos[i * 4..i * 4 + i].iter().enumerate() {
                assert_eq!(scores[i * 4 + slot], all[j as usize]);
            }
        }
        assert_eq!(nearest_earlier(Metric::L2, &[], 2, 3), (vec![], vec![]));
    }
}
