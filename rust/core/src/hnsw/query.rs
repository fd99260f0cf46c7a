//! A query prepared for scoring against any slot of the graph, whatever its precision.

use super::graph::{normalize, Graph, NONE};
use super::Metric;
use crate::quant::kernels::{build_bits_lut, dot_bits, kernels, Kernels, PORTABLE};
use crate::quant::Precision;

/// A query prepared for scoring against any slot: normalized for cosine, with the tables
/// the codes present in the graph need. Owned by the search scratch and reused.
pub(crate) struct QueryCtx {
    /// The kernel table, looked up once per query rather than once per distance.
    kern: &'static Kernels,
    pub q: Vec<f32>,
    sum: f32,
    sq_norm: f32,
    even: Vec<f32>,
    odd: Vec<f32>,
    lut: Vec<[f32; 256]>,
    /// The query quantized to i8 for q8 codes (`q ≈ q_i8 · q_scale`): its error is of
    /// the order of the codes' own, and exact rescoring follows the traversal.
    q_i8: Vec<i8>,
    q_scale: f32,
    /// Score with full rows where kept (construction, rescoring); codes otherwise.
    use_full: bool,
    /// Codes are scored (`!use_full`) and every slot in use has a q8 code in its level-0
    /// block (its own, or a traversal code): a score reads that block and nothing else,
    /// without the slot's metadata.
    pub q8_slots: bool,
}

impl Default for QueryCtx {
    fn default() -> Self {
        QueryCtx {
            kern: &PORTABLE,
            q: Vec::new(),
            sum: 0.0,
            sq_norm: 0.0,
            even: Vec::new(),
            odd: Vec::new(),
            lut: Vec::new(),
            q_i8: Vec::new(),
            q_scale: 0.0,
            use_full: false,
            q8_slots: false,
        }
    }
}

impl QueryCtx {
    pub fn prepare(&mut self, g: &Graph, query: &[f32], use_full: bool) {
        self.kern = kernels();
        self.q.clear();
        self.q.extend_from_slice(query);
        if g.params.metric == Metric::Cosine {
            normalize(&mut self.q);
        }
        self.set_use_full(g, use_full);
        self.sum = self.q.iter().sum();
        self.sq_norm = self.q.iter().map(|v| v * v).sum();
        let codes_in_play = !(use_full && g.params.keep_full);
        self.even.clear();
        self.odd.clear();
        self.lut.clear();
        self.q_i8.clear();
        // Whenever the blocks have codes, which every node in use then has (their
        // traversal codes: `Graph::write_traversal_codes`).
        if g.level0.code_bytes() > 0 {
            let max = self.q.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            self.q_scale = if max > 0.0 { max / 127.0 } else { 1.0 };
            let inv = 1.0 / self.q_scale;
            self.q_i8.extend(
                self.q
                    .iter()
                    .map(|v| (v * inv).round().clamp(-127.0, 127.0) as i8),
            );
        }
        if codes_in_play && g.per_precision[Precision::Q4 as usize] > 0 {
            let half = g.params.dim.div_ceil(2);
            self.even.extend((0..half).map(|k| self.q[2 * k]));
            self.odd
                .extend((0..half).map(|k| self.q.get(2 * k + 1).copied().unwrap_or(0.0)));
        }
        if codes_in_play && g.per_precision[Precision::Binary as usize] > 0 {
            build_bits_lut(&self.q, &mut self.lut);
        }
    }

    /// Score with the full rows where they are kept (`true`: construction, rescoring), or
    /// with the codes.
    pub fn set_use_full(&mut self, g: &Graph, use_full: bool) {
        self.use_full = use_full;
        self.q8_slots = !use_full && g.codes_everywhere();
    }

    pub fn use_full(&self) -> bool {
        self.use_full
    }

    /// Score of `slot` for this query (higher is closer).
    #[inline]
    pub fn score(&self, g: &Graph, slot: u32) -> f32 {
        let k = self.kern;
        if self.q8_slots {
            return self.score_q8(g, slot);
        }
        if g.rows_are_slots {
            let dot = (k.dot_f32)(&self.q, g.full.row(slot));
            return match g.params.metric {
                Metric::Cosine | Metric::Ip => dot,
                Metric::L2 => 2.0 * dot - g.full.params(slot).sq_norm - self.sq_norm,
            };
        }
        let m = g.meta[slot as usize];
        let full = match m.precision {
            Precision::Full => m.code_row,
            _ if self.use_full => m.full_row,
            _ => NONE,
        };
        if full != NONE {
            let dot = (k.dot_f32)(&self.q, g.full.row(full));
            return match g.params.metric {
                Metric::Cosine | Metric::Ip => dot,
                Metric::L2 => 2.0 * dot - g.full.params(full).sq_norm - self.sq_norm,
            };
        }
        let row = m.code_row;
        let (levels, p) = match m.precision {
            Precision::Q8 => return self.score_q8(g, slot),
            Precision::Q4 => (
                (k.dot_u4)(&self.even, &self.odd, g.q4.row(row)),
                g.q4.params(row),
            ),
            Precision::Binary => {
                // Σ q·s over signs s = ±1 is twice the sum over set bits minus Σq.
                let set = dot_bits(&self.lut, g.binary.row(row));
                (2.0 * set - self.sum, g.binary.params(row))
            }
            Precision::Full => unreachable!("full rows are scored above"),
        };
        let dot = p.offset * self.sum + p.scale * levels;
        match g.params.metric {
            Metric::Cosine | Metric::Ip => dot,
            Metric::L2 => 2.0 * dot - p.sq_norm - self.sq_norm,
        }
    }

    /// Score of a q8 slot from its code in its level-0 block.
    #[inline]
    fn score_q8(&self, g: &Graph, slot: u32) -> f32 {
        let levels = (self.kern.dot_i8_u8)(&self.q_i8, g.level0.code(slot)) as f32;
        let p = g.level0.params(slot);
        let dot = p.offset * self.sum + p.scale * (levels * self.q_scale);
        match g.params.metric {
            Metric::Cosine | Metric::Ip => dot,
            Metric::L2 => 2.0 * dot - p.sq_norm - self.sq_norm,
        }
    }
}
