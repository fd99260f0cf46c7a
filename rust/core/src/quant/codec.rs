//! Encoding f32 vectors into codes, decoding them back, and the arenas that hold rows.
//!
//! Every code reconstructs as `x̂[i] = offset + scale · level[i]`, so an inner product with
//! an f32 query `q` is `offset · Σq + scale · Σ q[i]·level[i]`: one kernel call per code.
//! - q8: `level ∈ 0..=255`, offset = min(x), scale = (max − min) / 255;
//! - q4: `level ∈ 0..=15`, offset = min(x), scale = (max − min) / 15; two levels a byte,
//!   the even dimension in the low nibble;
//! - binary: `level ∈ {−1, +1}` from the sign of `x[i] − mean(x)`, offset = mean(x),
//!   scale = mean |x[i] − mean(x)| (the scale that minimizes the squared error for those
//!   signs); bit `i % 8` of byte `i / 8` is set for +1.

use std::io;
use std::path::Path;

use super::mapped::MappedBuffer;
use super::Precision;

/// What a row needs besides its data to turn a kernel sum into an inner product and a
/// squared norm (for the l2 metric).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RowParams {
    pub offset: f32,
    pub scale: f32,
    /// `‖x̂‖²` of the reconstruction (of `x` itself for full rows).
    pub sq_norm: f32,
}

/// Encode `x` at `precision` into `out` (`precision.code_bytes(dim)` bytes; unused for
/// `Full`, whose rows live in an f32 arena).
pub fn encode(precision: Precision, x: &[f32], out: &mut [u8]) -> RowParams {
    match precision {
        Precision::Full => RowParams {
            offset: 0.0,
            scale: 1.0,
            sq_norm: x.iter().map(|v| v * v).sum(),
        },
        Precision::Q8 => encode_scalar(x, 255, out, |out, i, level| out[i] = level),
        Precision::Q4 => {
            out.fill(0);
            encode_scalar(x, 15, out, |out, i, level| {
                out[i / 2] |= level << ((i % 2) * 4)
            })
        }
        Precision::Binary => encode_binary(x, out),
    }
}

fn encode_scalar(
    x: &[f32],
    top: u8,
    out: &mut [u8],
    put: impl Fn(&mut [u8], usize, u8),
) -> RowParams {
    let (min, max) = x
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let (min, max) = if x.is_empty() { (0.0, 0.0) } else { (min, max) };
    let scale = (max - min) / top as f32;
    let mut sq_norm = 0.0;
    for (i, &v) in x.iter().enumerate() {
        let level = if scale > 0.0 {
            ((v - min) / scale).round().clamp(0.0, top as f32) as u8
        } else {
            0
        };
        put(out, i, level);
        let r = min + scale * level as f32;
        sq_norm += r * r;
    }
    RowParams {
        offset: min,
        scale,
        sq_norm,
    }
}

fn encode_binary(x: &[f32], out: &mut [u8]) -> RowParams {
    out.fill(0);
    let n = x.len().max(1) as f32;
    let mean = x.iter().sum::<f32>() / n;
    let scale = x.iter().map(|v| (v - mean).abs()).sum::<f32>() / n;
    let mut sq_norm = 0.0;
    for (i, &v) in x.iter().enumerate() {
        let r = if v > mean {
            out[i / 8] |= 1 << (i % 8);
            mean + scale
        } else {
            mean - scale
        };
        sq_norm += r * r;
    }
    RowParams {
        offset: mean,
        scale,
        sq_norm,
    }
}

/// Reconstruct a code into `out` (`dim` values). Whole code bytes are decoded a byte at a
/// time (two q4 levels, eight binary signs) so that the loops vectorize; a per-dimension
/// index into the byte did not, and decoding was a fifth of the cost of an insert.
pub fn decode_into(precision: Precision, code: &[u8], p: RowParams, out: &mut [f32]) {
    let level = |l: u8| p.offset + p.scale * l as f32;
    match precision {
        Precision::Full => unreachable!("full rows are f32 and need no decoding"),
        Precision::Q8 => {
            for (o, &c) in out.iter_mut().zip(code) {
                *o = level(c);
            }
        }
        Precision::Q4 => {
            let whole = out.len() / 2;
            let (pairs, rest) = out.split_at_mut(whole * 2);
            for (pair, &c) in pairs.chunks_exact_mut(2).zip(code) {
                pair[0] = level(c & 0x0f);
                pair[1] = level(c >> 4);
            }
            if let Some(o) = rest.first_mut() {
                *o = level(code[whole] & 0x0f);
            }
        }
        Precision::Binary => {
            let (minus, plus) = (p.offset - p.scale, p.offset + p.scale);
            let whole = out.len() / 8;
            let (bytes, rest) = out.split_at_mut(whole * 8);
            for (eight, &c) in bytes.chunks_exact_mut(8).zip(code) {
                for (bit, o) in eight.iter_mut().enumerate() {
                    *o = if c >> bit & 1 == 1 { plus } else { minus };
                }
            }
            for (bit, o) in rest.iter_mut().enumerate() {
                *o = if code[whole] >> bit & 1 == 1 {
                    plus
                } else {
                    minus
                };
            }
        }
    }
}

/// Fixed-width rows of `T` with their parameters; freed rows are reused first, so memory
/// stays flat under insert/delete churn.
///
/// The rows start on a 64-byte boundary (`base` elements into the buffer): with a row
/// width that is a multiple of 64 bytes (384 f32 dimensions, say) no SIMD load of a row
/// straddles two cache lines. They live on the heap, or in a mapped file
/// ([`CodeArena::map_to_file`]: page-aligned, so aligned too).
#[derive(Clone, Debug, Default)]
pub struct CodeArena<T> {
    width: usize,
    /// `base` padding elements, then `rows() * width` row elements.
    data: Vec<T>,
    base: usize,
    /// When set, the rows are here instead of in `data` (which is then empty): `rows() *
    /// width` elements from the start of the mapping.
    mapped: Mapped,
    params: Vec<RowParams>,
    free: Vec<u32>,
}

/// An arena's mapped buffer, if it has one.
#[derive(Default)]
struct Mapped(Option<MappedBuffer>);

impl Clone for Mapped {
    /// Never called on a mapped arena (the index never clones its arenas; a clone would
    /// share nothing with the file): an empty mapping.
    fn clone(&self) -> Self {
        Mapped(None)
    }
}

impl std::fmt::Debug for Mapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(m) => write!(f, "Mapped({}, {} bytes)", m.path().display(), m.len()),
            None => write!(f, "Mapped(none)"),
        }
    }
}

const ALIGN: usize = 64;

impl<T: bytemuck::Pod + Default> CodeArena<T> {
    pub fn new(width: usize) -> Self {
        CodeArena {
            width,
            data: Vec::new(),
            base: 0,
            mapped: Mapped(None),
            params: Vec::new(),
            free: Vec::new(),
        }
    }

    pub fn from_parts(width: usize, data: Vec<T>, params: Vec<RowParams>, free: Vec<u32>) -> Self {
        let mut arena = CodeArena::new(width);
        arena.params = params;
        arena.free = free;
        arena.regrow(arena.params.len(), &data);
        arena
    }

    /// Move the rows into a file mapped at `path` (created or truncated), off the heap.
    pub fn map_to_file(&mut self, path: &Path) -> io::Result<()> {
        let size = std::mem::size_of::<T>();
        let rows = self.rows_slice().to_vec();
        let capacity = self.rows().max(16);
        let mut buffer = MappedBuffer::create(path, capacity * self.width * size)?;
        buffer.bytes_mut()[..rows.len() * size].copy_from_slice(bytemuck::cast_slice(&rows));
        self.mapped = Mapped(Some(buffer));
        self.data = Vec::new();
        self.base = 0;
        Ok(())
    }

    /// The file the rows are mapped from, if they are.
    pub fn mapped_path(&self) -> Option<&Path> {
        self.mapping().map(|m| m.path())
    }

    fn mapping(&self) -> Option<&MappedBuffer> {
        self.mapped.0.as_ref()
    }

    /// Move the rows `rows` into a new buffer with room for `capacity` rows.
    fn regrow(&mut self, capacity: usize, rows: &[T]) {
        let size = std::mem::size_of::<T>().max(1);
        let slack = ALIGN / size;
        let mut data: Vec<T> = Vec::with_capacity(capacity * self.width + slack);
        let misalign = data.as_ptr() as usize % ALIGN;
        // An allocation is aligned to `T`, so the distance to the boundary is whole elements.
        let base = if misalign == 0 {
            0
        } else {
            (ALIGN - misalign) / size
        };
        data.resize(base, T::default());
        data.extend_from_slice(rows);
        self.data = data;
        self.base = base;
    }

    fn capacity_rows(&self) -> usize {
        match self.mapping() {
            Some(m) => m.len() / (std::mem::size_of::<T>() * self.width).max(1),
            None => (self.data.capacity() - self.base) / self.width.max(1),
        }
    }

    fn rows_slice(&self) -> &[T] {
        match self.mapping() {
            Some(m) => &bytemuck::cast_slice(m.bytes())[..self.rows() * self.width],
            None => &self.data[self.base..],
        }
    }

    pub fn width(&self) -> usize {
        self.width
    }

    /// Rows allocated (live and free).
    pub fn rows(&self) -> usize {
        self.params.len()
    }

    pub fn free_rows(&self) -> &[u32] {
        &self.free
    }

    pub fn raw(&self) -> (&[T], &[RowParams]) {
        (self.rows_slice(), &self.params)
    }

    /// Room for `extra` more rows. An error only when the rows are mapped and the file
    /// cannot grow (a full disk).
    pub fn reserve(&mut self, extra: usize) -> io::Result<()> {
        let need = self.rows() + extra.saturating_sub(self.free.len());
        self.grow_to(need)?;
        self.params.reserve(need - self.rows());
        Ok(())
    }

    /// Room for `rows` rows. Grows by at least half the capacity, so that a stream of
    /// one-row additions copies the arena O(log n) times, not once per row.
    fn grow_to(&mut self, rows: usize) -> io::Result<()> {
        let capacity = self.capacity_rows();
        if rows <= capacity {
            return Ok(());
        }
        let target = rows.max(capacity + capacity / 2).max(16);
        let row_bytes = std::mem::size_of::<T>() * self.width;
        if let Some(m) = self.mapped.0.as_mut() {
            return m.grow(target * row_bytes);
        }
        let kept = self.rows_slice().to_vec();
        self.regrow(target, &kept);
        Ok(())
    }

    /// A row for a new entry: a freed one, else a new one. Mapped rows must have been
    /// reserved first (`reserve`, which can fail); the index always does.
    pub fn alloc(&mut self) -> u32 {
        if let Some(row) = self.free.pop() {
            return row;
        }
        if let Err(e) = self.grow_to(self.rows() + 1) {
            // Only a mapped arena can fail here, and only if it was not reserved.
            panic!(
                "the vector file cannot grow (rows are reserved before they are allocated): {e}"
            );
        }
        if self.mapping().is_none() {
            // Within capacity: never reallocates, so the alignment holds.
            self.data.resize(self.data.len() + self.width, T::default());
        }
        self.params.push(RowParams::default());
        (self.params.len() - 1) as u32
    }

    pub fn release(&mut self, row: u32) {
        self.free.push(row);
    }

    #[inline]
    pub fn row(&self, row: u32) -> &[T] {
        let start = row as usize * self.width;
        match self.mapping() {
            Some(m) => &bytemuck::cast_slice(m.bytes())[start..start + self.width],
            None => &self.data[self.base + start..self.base + start + self.width],
        }
    }

    #[inline]
    pub fn row_mut(&mut self, row: u32) -> &mut [T] {
        let start = row as usize * self.width;
        let width = self.width;
        match self.mapped.0.as_mut() {
            Some(m) => &mut bytemuck::cast_slice_mut(m.bytes_mut())[start..start + width],
            None => &mut self.data[self.base + start..self.base + start + width],
        }
    }

    #[inline]
    pub fn params(&self, row: u32) -> RowParams {
        self.params[row as usize]
    }

    pub fn set_params(&mut self, row: u32, p: RowParams) {
        self.params[row as usize] = p;
    }

    /// When at least a quarter of the rows are free, move the others to the front and
    /// give the memory back. Returns the new row of each old row (`u32::MAX` for freed).
    /// Mapped rows move within their file (its size stays: the file is scratch space).
    pub fn repack(&mut self) -> Option<Vec<u32>> {
        if self.free.is_empty() || self.free.len() * 4 < self.rows() {
            return None;
        }
        let mut is_free = vec![false; self.rows()];
        for &r in &self.free {
            is_free[r as usize] = true;
        }
        let live = self.rows() - self.free.len();
        let mut data = Vec::with_capacity(live * self.width);
        let mut params = Vec::with_capacity(live);
        let mut map = vec![u32::MAX; self.rows()];
        for (row, free) in is_free.iter().enumerate() {
            if !free {
                map[row] = params.len() as u32;
                data.extend_from_slice(self.row(row as u32));
                params.push(self.params[row]);
            }
        }
        match self.mapped.0.as_mut() {
            Some(m) => {
                let bytes: &[u8] = bytemuck::cast_slice(&data);
                m.bytes_mut()[..bytes.len()].copy_from_slice(bytes);
            }
            None => self.regrow(live, &data),
        }
        self.params = params;
        self.free = Vec::new();
        Some(map)
    }

    /// Heap bytes (mapped rows are the page cache's, not counted).
    pub fn memory_bytes(&self) -> usize {
        self.data.capacity() * std::mem::size_of::<T>()
            + self.params.capacity() * std::mem::size_of::<RowParams>()
            + self.free.capacity() * 4
    }

    /// Bytes of the mapped file (0 when the rows are on the heap).
    pub fn mapped_bytes(&self) -> usize {
        self.mapping().map_or(0, |m| m.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(dim: usize, seed: u32) -> Vec<f32> {
        (0..dim)
            .map(|i| {
                ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 1000) as f32 / 500.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn reconstruction_error_shrinks_with_precision() {
        for dim in [1, 5, 64, 383] {
            let x = sample(dim, 11);
            let mut errors = Vec::new();
            for p in [Precision::Q8, Precision::Q4, Precision::Binary] {
                let mut code = vec![0u8; p.code_bytes(dim)];
                let params = encode(p, &x, &mut code);
                let mut back = vec![0.0; dim];
                decode_into(p, &code, params, &mut back);
                let err: f32 = x.iter().zip(&back).map(|(a, b)| (a - b) * (a - b)).sum();
                let norm: f32 = back.iter().map(|v| v * v).sum();
                assert!(
                    (norm - params.sq_norm).abs() <= 1e-3 * norm.max(1.0),
                    "{p:?} sq_norm"
                );
                errors.push(err / dim as f32);
            }
            assert!(errors[0] <= 1e-4, "q8 error {} at dim {dim}", errors[0]);
            assert!(
                errors[0] <= errors[1] && errors[1] <= errors[2] + 1e-6,
                "{errors:?} at dim {dim}"
            );
        }
    }

    #[test]
    fn decoding_gives_each_dimension_its_own_level() {
        // Against the per-dimension definition, across the partial last byte of q4 and
        // binary codes.
        for dim in [1, 2, 5, 8, 9, 17, 383, 384] {
            let x = sample(dim, 3);
            for p in [Precision::Q8, Precision::Q4, Precision::Binary] {
                let mut code = vec![0u8; p.code_bytes(dim)];
                let params = encode(p, &x, &mut code);
                let mut back = vec![f32::NAN; dim];
                decode_into(p, &code, params, &mut back);
                for (i, &got) in back.iter().enumerate() {
                    let level = match p {
                        Precision::Q8 => code[i] as f32,
                        Precision::Q4 => ((code[i / 2] >> ((i % 2) * 4)) & 0x0f) as f32,
                        _ => [-1.0, 1.0][(code[i / 8] >> (i % 8) & 1) as usize],
                    };
                    let want = params.offset + params.scale * level;
                    assert_eq!(got, want, "{p:?}, dim {dim}, dimension {i}");
                }
            }
        }
    }

    #[test]
    fn a_constant_vector_survives_every_codec() {
        let x = vec![0.25f32; 17];
        for p in [Precision::Q8, Precision::Q4, Precision::Binary] {
            let mut code = vec![0u8; p.code_bytes(17)];
            let params = encode(p, &x, &mut code);
            let mut back = vec![0.0; 17];
            decode_into(p, &code, params, &mut back);
            assert!(
                back.iter().all(|v| (v - 0.25).abs() < 1e-6),
                "{p:?}: {back:?}"
            );
        }
    }

    #[test]
    fn arena_reuses_released_rows() {
        let mut a = CodeArena::<u8>::new(3);
        let r0 = a.alloc();
        let r1 = a.alloc();
        a.row_mut(r1).copy_from_slice(&[1, 2, 3]);
        a.release(r0);
        assert_eq!(a.alloc(), r0);
        assert_eq!(a.rows(), 2);
        assert_eq!(a.row(r1), &[1, 2, 3]);
        a.release(r0);
        let map = a.repack().unwrap();
        assert_eq!(map, vec![u32::MAX, 0]);
        assert_eq!((a.rows(), a.row(0)), (1, &[1u8, 2, 3][..]));
    }

    #[test]
    fn rows_start_on_a_cache_line() {
        let mut a = CodeArena::<f32>::new(16);
        for i in 0..100u32 {
            let r = a.alloc();
            a.row_mut(r).fill(i as f32);
            assert_eq!(a.row(0).as_ptr() as usize % 64, 0, "after {} rows", i + 1);
        }
        a.reserve(1000).unwrap();
        assert_eq!(a.row(0).as_ptr() as usize % 64, 0);
        assert!((0..100u32).all(|i| a.row(i).iter().all(|&v| v == i as f32)));
        let (data, params) = a.raw();
        let copy = CodeArena::from_parts(16, data.to_vec(), params.to_vec(), vec![]);
        assert_eq!(copy.row(99), a.row(99));
        assert_eq!(copy.row(0).as_ptr() as usize % 64, 0);
    }
}
