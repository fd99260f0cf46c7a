//! Distance kernels: one per stored representation, against an f32 query (q8 codes:
//! against the query quantized to i8, in exact integer arithmetic).
//!
//! The SIMD versions (AVX-512F with VNNI, AVX-512F, else AVX2 + FMA, on x86_64) are chosen
//! once at run time by [`kernels()`]; everywhere else, and on CPUs without them, the
//! portable versions run. The float ones are written with eight independent accumulators
//! so that the compiler vectorizes them for the baseline target (SSE2, NEON) without
//! reassociating floating point. Results of the paths differ only by floating-point
//! rounding, and not at all for the integer kernel (tested).

use std::sync::OnceLock;

/// The kernel table in use on this CPU.
#[derive(Clone, Copy)]
pub struct Kernels {
    /// `Σ a[i]·b[i]`.
    pub dot_f32: fn(&[f32], &[f32]) -> f32,
    /// `Σ q[i]·c[i]` over u8 codes against a query quantized to i8, exact in integers:
    /// what q8 codes are scored with during traversal (AVX-512 VNNI does 64 per
    /// instruction, four times the float kernel's width, without the conversions).
    pub dot_i8_u8: fn(&[i8], &[u8]) -> i32,
    /// `Σ even[k]·lo(c[k]) + odd[k]·hi(c[k])`: 4-bit codes, two per byte (low nibble first),
    /// against the query split into its even and odd dimensions.
    pub dot_u4: fn(&[f32], &[f32], &[u8]) -> f32,
    /// Name of the instruction set in use, for `stats()`.
    pub name: &'static str,
}

static KERNELS: OnceLock<Kernels> = OnceLock::new();

/// The fastest kernels this CPU supports (detected once).
#[inline]
pub fn kernels() -> &'static Kernels {
    KERNELS.get_or_init(select)
}

/// The portable kernels, whatever the CPU (the reference for the SIMD ones in tests).
pub const PORTABLE: Kernels = Kernels {
    dot_f32: portable::dot_f32,
    dot_i8_u8: portable::dot_i8_u8,
    dot_u4: portable::dot_u4,
    name: "portable",
};

fn select() -> Kernels {
    available()[0]
}

/// Every kernel table this CPU can run, fastest first (the tests check them all).
pub fn available() -> Vec<Kernels> {
    let mut tables = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            if std::is_x86_feature_detected!("avx512vnni") {
                tables.push(avx512::VNNI_KERNELS);
            }
            tables.push(avx512::KERNELS);
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            tables.push(avx2::KERNELS);
        }
    }
    tables.push(PORTABLE);
    tables
}

/// Sum over bytes of a binary code of a per-query table: `lut[j][bits[j]]` is the sum of
/// the query's dimensions `8j..8j+8` whose bit is set in `bits[j]` (see [`build_bits_lut`]).
/// Eight lookups replace eight multiply-adds, whatever the instruction set.
#[inline]
pub fn dot_bits(lut: &[[f32; 256]], bits: &[u8]) -> f32 {
    let mut acc = [0.0f32; 4];
    let mut chunks = lut.chunks_exact(4).zip(bits.chunks_exact(4));
    for (t, b) in &mut chunks {
        for lane in 0..4 {
            acc[lane] += t[lane][b[lane] as usize];
        }
    }
    let done = (bits.len() / 4) * 4;
    let mut tail = 0.0;
    for (t, &b) in lut[done..].iter().zip(&bits[done..]) {
        tail += t[b as usize];
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// Fill `lut` (one table of 256 per 8 dimensions) for the query `q`.
pub fn build_bits_lut(q: &[f32], lut: &mut Vec<[f32; 256]>) {
    let groups = q.len().div_ceil(8);
    lut.clear();
    lut.resize(groups, [0.0; 256]);
    for (g, table) in lut.iter_mut().enumerate() {
        let dims = &q[g * 8..(g * 8 + 8).min(q.len())];
        // table[b] = table[b without its lowest bit] + q[lowest bit]: 256 adds per group.
        for b in 1..256usize {
            let low = b.trailing_zeros() as usize;
            let value = dims.get(low).copied().unwrap_or(0.0);
            table[b] = table[b & (b - 1)] + value;
        }
    }
}

mod portable {
    const LANES: usize = 8;

    #[inline]
    fn reduce(acc: [f32; LANES]) -> f32 {
        ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
    }

    pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (a, b) = (&a[..n], &b[..n]);
        let mut acc = [0.0f32; LANES];
        let mut ca = a.chunks_exact(LANES);
        let mut cb = b.chunks_exact(LANES);
        for (x, y) in (&mut ca).zip(&mut cb) {
            for l in 0..LANES {
                acc[l] += x[l] * y[l];
            }
        }
        let tail: f32 = ca
            .remainder()
            .iter()
            .zip(cb.remainder())
            .map(|(x, y)| x * y)
            .sum();
        reduce(acc) + tail
    }

    pub fn dot_i8_u8(q: &[i8], c: &[u8]) -> i32 {
        // Integer sums reassociate freely: the compiler vectorizes this as it is.
        q.iter()
            .zip(c)
            .map(|(&x, &y)| i32::from(x) * i32::from(y))
            .sum()
    }

    pub fn dot_u4(even: &[f32], odd: &[f32], c: &[u8]) -> f32 {
        let n = c.len().min(even.len()).min(odd.len());
        let (even, odd, c) = (&even[..n], &odd[..n], &c[..n]);
        let mut acc = [0.0f32; LANES];
        let mut ce = even.chunks_exact(LANES);
        let mut co = odd.chunks_exact(LANES);
        let mut cc = c.chunks_exact(LANES);
        for ((e, o), y) in (&mut ce).zip(&mut co).zip(&mut cc) {
            for l in 0..LANES {
                acc[l] += e[l] * (y[l] & 0x0f) as f32 + o[l] * (y[l] >> 4) as f32;
            }
        }
        let tail: f32 = ce
            .remainder()
            .iter()
            .zip(co.remainder())
            .zip(cc.remainder())
            .map(|((e, o), &y)| e * (y & 0x0f) as f32 + o * (y >> 4) as f32)
            .sum();
        reduce(acc) + tail
    }
}

#[cfg(target_arch = "x86_64")]
#[expect(
    clippy::undocumented_unsafe_blocks,
    reason = "the loads of each loop share one SAFETY comment above it, and the kernel table's \
              calls one above the table"
)]
mod avx2 {
    use std::arch::x86_64::*;

    // The safe wrappers below are private to this module and only reachable through
    // `KERNELS`, which `select()` installs after `is_x86_feature_detected!` has confirmed
    // both AVX2 and FMA: that is what makes calling the `#[target_feature]` functions sound.
    pub(super) const KERNELS: super::Kernels = super::Kernels {
        dot_f32: |a, b| unsafe { dot_f32(a, b) },
        dot_i8_u8: super::portable::dot_i8_u8,
        dot_u4: |e, o, c| unsafe { dot_u4(e, o, c) },
        name: "avx2+fma",
    };

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn hsum(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0x55));
        _mm_cvtss_f32(s)
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        // SAFETY (all loads): i + width <= n, and both slices hold at least n elements.
        while i + 32 <= n {
            for (j, slot) in acc.iter_mut().enumerate() {
                let x = unsafe { _mm256_loadu_ps(pa.add(i + 8 * j)) };
                let y = unsafe { _mm256_loadu_ps(pb.add(i + 8 * j)) };
                *slot = _mm256_fmadd_ps(x, y, *slot);
            }
            i += 32;
        }
        while i + 8 <= n {
            let x = unsafe { _mm256_loadu_ps(pa.add(i)) };
            let y = unsafe { _mm256_loadu_ps(pb.add(i)) };
            acc[0] = _mm256_fmadd_ps(x, y, acc[0]);
            i += 8;
        }
        let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut total = hsum(sum);
        for k in i..n {
            total += a[k] * b[k];
        }
        total
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot_u4(even: &[f32], odd: &[f32], c: &[u8]) -> f32 {
        let n = c.len().min(even.len()).min(odd.len());
        let (pe, po, pc) = (even.as_ptr(), odd.as_ptr(), c.as_ptr());
        let mask = _mm256_set1_epi32(0x0f);
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        // SAFETY (all loads): i + 8 <= n, within the first n elements of each slice.
        while i + 8 <= n {
            let bytes = unsafe { _mm_loadl_epi64(pc.add(i) as *const __m128i) };
            let wide = _mm256_cvtepu8_epi32(bytes);
            let lo = _mm256_cvtepi32_ps(_mm256_and_si256(wide, mask));
            let hi = _mm256_cvtepi32_ps(_mm256_srli_epi32(wide, 4));
            acc0 = _mm256_fmadd_ps(unsafe { _mm256_loadu_ps(pe.add(i)) }, lo, acc0);
            acc1 = _mm256_fmadd_ps(unsafe { _mm256_loadu_ps(po.add(i)) }, hi, acc1);
            i += 8;
        }
        let mut total = hsum(_mm256_add_ps(acc0, acc1));
        for k in i..n {
            total += even[k] * (c[k] & 0x0f) as f32 + odd[k] * (c[k] >> 4) as f32;
        }
        total
    }
}

#[cfg(target_arch = "x86_64")]
#[expect(
    clippy::undocumented_unsafe_blocks,
    reason = "the loads of each loop share one SAFETY comment above it, and the kernel table's \
              calls one above the table"
)]
mod avx512 {
    use std::arch::x86_64::*;

    // As for AVX2: these wrappers are only reachable through `KERNELS`, which `available()`
    // lists only after `is_x86_feature_detected!("avx512f")` — that makes the calls sound.
    pub(super) const KERNELS: super::Kernels = super::Kernels {
        dot_f32: |a, b| unsafe { dot_f32(a, b) },
        dot_i8_u8: super::portable::dot_i8_u8,
        dot_u4: |e, o, c| unsafe { dot_u4(e, o, c) },
        name: "avx512f",
    };

    // Listed by `available()` only after `is_x86_feature_detected!` confirmed avx512f and
    // avx512vnni: that makes the call of `dot_i8_u8_vnni` sound.
    pub(super) const VNNI_KERNELS: super::Kernels = super::Kernels {
        dot_i8_u8: |q, c| unsafe { dot_i8_u8_vnni(q, c) },
        name: "avx512f+vnni",
        ..KERNELS
    };

    #[target_feature(enable = "avx512f,avx512vnni")]
    unsafe fn dot_i8_u8_vnni(q: &[i8], c: &[u8]) -> i32 {
        let n = q.len().min(c.len());
        let (pq, pc) = (q.as_ptr(), c.as_ptr());
        let mut acc0 = _mm512_setzero_si512();
        let mut acc1 = _mm512_setzero_si512();
        let mut i = 0;
        // SAFETY (all loads): each reads 64 bytes of `q` and of `c` below n.
        while i + 128 <= n {
            let c0 = unsafe { _mm512_loadu_si512(pc.add(i) as *const __m512i) };
            let q0 = unsafe { _mm512_loadu_si512(pq.add(i) as *const __m512i) };
            let c1 = unsafe { _mm512_loadu_si512(pc.add(i + 64) as *const __m512i) };
            let q1 = unsafe { _mm512_loadu_si512(pq.add(i + 64) as *const __m512i) };
            // Unsigned bytes (codes) times signed bytes (query), four per i32 lane.
            acc0 = _mm512_dpbusd_epi32(acc0, c0, q0);
            acc1 = _mm512_dpbusd_epi32(acc1, c1, q1);
            i += 128;
        }
        while i + 64 <= n {
            let c0 = unsafe { _mm512_loadu_si512(pc.add(i) as *const __m512i) };
            let q0 = unsafe { _mm512_loadu_si512(pq.add(i) as *const __m512i) };
            acc0 = _mm512_dpbusd_epi32(acc0, c0, q0);
            i += 64;
        }
        let mut total = _mm512_reduce_add_epi32(_mm512_add_epi32(acc0, acc1));
        for k in i..n {
            total += i32::from(q[k]) * i32::from(c[k]);
        }
        total
    }

    /// Lanes `0..n` of 16 (n < 16) set.
    #[inline]
    fn tail_mask(n: usize) -> __mmask16 {
        ((1u32 << n) - 1) as __mmask16
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut i = 0;
        // SAFETY (all loads): full loads stay below n; the masked tail load reads only the
        // lanes below n (masked-off lanes are not accessed and cannot fault).
        while i + 64 <= n {
            for (j, slot) in acc.iter_mut().enumerate() {
                let x = unsafe { _mm512_loadu_ps(pa.add(i + 16 * j)) };
                let y = unsafe { _mm512_loadu_ps(pb.add(i + 16 * j)) };
                *slot = _mm512_fmadd_ps(x, y, *slot);
            }
            i += 64;
        }
        while i + 16 <= n {
            let x = unsafe { _mm512_loadu_ps(pa.add(i)) };
            let y = unsafe { _mm512_loadu_ps(pb.add(i)) };
            acc[0] = _mm512_fmadd_ps(x, y, acc[0]);
            i += 16;
        }
        if i < n {
            let m = tail_mask(n - i);
            let x = unsafe { _mm512_maskz_loadu_ps(m, pa.add(i)) };
            let y = unsafe { _mm512_maskz_loadu_ps(m, pb.add(i)) };
            acc[1] = _mm512_fmadd_ps(x, y, acc[1]);
        }
        let sum = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
        _mm512_reduce_add_ps(sum)
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn dot_u4(even: &[f32], odd: &[f32], c: &[u8]) -> f32 {
        let n = c.len().min(even.len()).min(odd.len());
        let (pe, po, pc) = (even.as_ptr(), odd.as_ptr(), c.as_ptr());
        let mask = _mm512_set1_epi32(0x0f);
        let mut acc0 = _mm512_setzero_ps();
        let mut acc1 = _mm512_setzero_ps();
        let mut i = 0;
        // SAFETY (all loads): i + 16 <= n, within the first n elements of each slice.
        while i + 16 <= n {
            let bytes = unsafe { _mm_loadu_si128(pc.add(i) as *const __m128i) };
            let wide = _mm512_cvtepu8_epi32(bytes);
            let lo = _mm512_cvtepi32_ps(_mm512_and_si512(wide, mask));
            let hi = _mm512_cvtepi32_ps(_mm512_srli_epi32(wide, 4));
            acc0 = _mm512_fmadd_ps(unsafe { _mm512_loadu_ps(pe.add(i)) }, lo, acc0);
            acc1 = _mm512_fmadd_ps(unsafe { _mm512_loadu_ps(po.add(i)) }, hi, acc1);
            i += 16;
        }
        let mut total = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
        for k in i..n {
            total += even[k] * (c[k] & 0x0f) as f32 + odd[k] * (c[k] >> 4) as f32;
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rng(seed: u64) -> impl FnMut() -> u64 {
        let mut s = seed;
        move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        }
    }

    fn close(a: f32, b: f32, scale: f32) -> bool {
        (a - b).abs() <= 1e-4 * scale.max(1.0)
    }

    const DIMS: [usize; 14] = [1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 100, 383, 385];

    #[test]
    fn every_kernel_matches_the_plain_reference_on_odd_dimensions() {
        let seed = 0x5eed_0001;
        println!(
            "kernel test seed {seed:#x}, kernels in use: {}",
            kernels().name
        );
        let mut next = rng(seed);
        for table in [PORTABLE, *kernels()] {
            for &dim in &DIMS {
                let q: Vec<f32> = (0..dim)
                    .map(|_| (next() % 2001) as f32 / 1000.0 - 1.0)
                    .collect();
                let b: Vec<f32> = (0..dim)
                    .map(|_| (next() % 2001) as f32 / 1000.0 - 1.0)
                    .collect();
                let scale: f32 = q.iter().map(|x| x.abs()).sum::<f32>() * 255.0;

                let want: f32 = q.iter().zip(&b).map(|(x, y)| x * y).sum();
                let got = (table.dot_f32)(&q, &b);
                assert!(
                    close(got, want, dim as f32),
                    "{} dot_f32 dim {dim}: {got} vs {want}",
                    table.name
                );

                let packed = dim.div_ceil(2);
                let c4: Vec<u8> = (0..packed).map(|_| next() as u8).collect();
                let even: Vec<f32> = (0..packed).map(|k| q[2 * k]).collect();
                let odd: Vec<f32> = (0..packed)
                    .map(|k| q.get(2 * k + 1).copied().unwrap_or(0.0))
                    .collect();
                let want: f32 = (0..dim)
                    .map(|i| {
                        let nib = if i % 2 == 0 {
                            c4[i / 2] & 15
                        } else {
                            c4[i / 2] >> 4
                        };
                        q[i] * nib as f32
                    })
                    .sum();
                let got = (table.dot_u4)(&even, &odd, &c4);
                assert!(
                    close(got, want, scale),
                    "{} dot_u4 dim {dim}: {got} vs {want}",
                    table.name
                );
            }
        }
    }

    #[test]
    fn every_integer_kernel_is_exact() {
        let mut next = rng(0x5eed_0002);
        for table in available() {
            for dim in DIMS.into_iter().chain([64, 127, 128, 129, 768]) {
                let q: Vec<i8> = (0..dim).map(|_| next() as i8).collect();
                let c: Vec<u8> = (0..dim).map(|_| next() as u8).collect();
                let want: i32 = q.iter().zip(&c).map(|(&x, &y)| x as i32 * y as i32).sum();
                assert_eq!(
                    (table.dot_i8_u8)(&q, &c),
                    want,
                    "{} dot_i8_u8 dim {dim}",
                    table.name
                );
            }
        }
    }

    #[test]
    fn bit_table_sums_the_dimensions_whose_bit_is_set() {
        let mut next = rng(7);
        for &dim in &DIMS {
            let q: Vec<f32> = (0..dim)
                .map(|_| (next() % 2001) as f32 / 1000.0 - 1.0)
                .collect();
            let bits: Vec<u8> = (0..dim.div_ceil(8))
                .map(|g| {
                    let valid = (dim - 8 * g).min(8);
                    (next() as u8) & ((1u16 << valid) - 1) as u8
                })
                .collect();
            let mut lut = Vec::new();
            build_bits_lut(&q, &mut lut);
            let want: f32 = (0..dim)
                .filter(|&i| bits[i / 8] >> (i % 8) & 1 == 1)
                .map(|i| q[i])
                .sum();
            let got = dot_bits(&lut, &bits);
            assert!(
                close(got, want, dim as f32),
                "dot_bits dim {dim}: {got} vs {want}"
            );
        }
    }
}
