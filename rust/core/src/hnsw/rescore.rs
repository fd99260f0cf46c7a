//! Exact scores of a query against a few full-precision rows: how a search ranks the
//! candidates that a quantized index proposed, once their full vectors are fetched.

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

/// The score of `query` (whose squared norm is `q_sq`) against one row of its length.
#[inline]
fn score_row(metric: Metric, query: &[f32], q_sq: f32, row: &[f32]) -> f32 {
    let dot = kernels().dot_f32;
    match metric {
        Metric::Ip => dot(query, row),
        Metric::Cosine => {
            let norms = (dot(row, row) * q_sq).sqrt();
            if norms > 0.0 {
                dot(query, row) / norms
            } else {
                0.0
            }
        }
        Metric::L2 => 2.0 * dot(query, row) - dot(row, row) - q_sq,
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
}
