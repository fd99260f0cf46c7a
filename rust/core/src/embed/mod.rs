//! The deterministic fact embedder: feature hashing of words and character n-grams.
//!
//! A text (or each part of a fact) is split into lowercase words — maximal runs of
//! Unicode alphanumeric characters, so `capital_of` gives `capital` and `of` — and each
//! word contributes
//!
//! - a whole-word feature of weight [`WORD_WEIGHT`],
//! - its character 3-grams with boundary markers (`<do`, `dog`, `og>`), sharing a total
//!   weight of [`NGRAM_WEIGHT`], so misspellings and inflections stay close,
//! - for facts only, a role-tagged whole-word feature of weight [`ROLE_WEIGHT`], so that
//!   (a, r, b) and (b, r, a) are close but not identical.
//!
//! Each feature is hashed with xxh3 under a fixed seed: the hash picks a bucket in
//! `0..dim` and a sign (signed feature hashing), and the vector is L2-normalised. The same
//! input therefore gives the same bits on every platform, run and thread count; the
//! golden checksum test pins them. (Tokenising follows the Unicode tables of the Rust
//! standard library; a Rust release with a newer Unicode version could only change texts
//! that contain characters newly assigned in it.)
//!
//! **A text without any word** (empty, or only punctuation and spaces) gives the
//! all-zero vector rather than an error: it is then "unrelated" to everything (cosine 0)
//! and an allocation of a fact with an empty field still succeeds. A fact is all-zero
//! only if all three of its parts have no word. (Signed features can also cancel out
//! exactly, which is only likely at tiny dimensions such as 1 or 2: the vector is then
//! all-zero too. Every other vector has unit norm.)

mod features;

use rayon::prelude::*;

use crate::error::{Error, Result};
use features::{l2_normalize, Featurizer, WordWeights, SEED_ROLE};

/// The dimension used when the caller does not choose one.
pub const DEFAULT_DIM: usize = 768;
/// The largest accepted dimension (the smallest is 1).
pub const MAX_DIM: usize = 65_536;

/// Weight of a whole-word feature.
pub const WORD_WEIGHT: f32 = 1.0;
/// Total weight of the character n-grams of one word: as much as the word itself, so a
/// misspelt or inflected word keeps about half of its similarity.
pub const NGRAM_WEIGHT: f32 = 1.0;
/// Weight of the role-tagged whole-word feature of a fact's word.
pub const ROLE_WEIGHT: f32 = 0.5;
/// Scale of each role's features in a fact, subject / predicate / object. The predicate
/// weighs less: a few predicates ("is_a") are shared by very many facts, and should not
/// by themselves make facts neighbours.
pub const ROLE_SCALE: [f32; 3] = [1.0, 0.6, 1.0];

/// Checks a dimension given as a signed integer (as it comes from Python).
pub fn checked_dim(dim: i64) -> Result<usize> {
    match usize::try_from(dim) {
        Ok(d) if (1..=MAX_DIM).contains(&d) => Ok(d),
        _ => Err(Error::invalid(format!(
            "dim must be between 1 and {MAX_DIM}, got {dim}"
        ))),
    }
}

/// Embeds texts and facts into `dim`-dimensional unit vectors (see the module docs).
///
/// It is cheap to create and holds no state but its dimension; the batch methods run on
/// rayon's global pool and give the same bits as the single ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FactEmbedder {
    dim: usize,
}

impl Default for FactEmbedder {
    fn default() -> Self {
        FactEmbedder { dim: DEFAULT_DIM }
    }
}

impl FactEmbedder {
    /// An embedder of dimension `dim`, which must be in `1..=MAX_DIM`.
    pub fn new(dim: usize) -> Result<Self> {
        if (1..=MAX_DIM).contains(&dim) {
            Ok(FactEmbedder { dim })
        } else {
            Err(Error::invalid(format!(
                "dim must be between 1 and {MAX_DIM}, got {dim}"
            )))
        }
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The unit vector of `text` (all-zero if it has no word).
    pub fn embed_text(&self, text: &str) -> Vec<f32> {
        let mut out = vec![0.0; self.dim];
        self.text_into(&mut Featurizer::new(), text, &mut out);
        out
    }

    /// The unit vector of the fact (`subject`, `predicate`, `object`).
    pub fn embed_fact(&self, subject: &str, predicate: &str, object: &str) -> Vec<f32> {
        let mut out = vec![0.0; self.dim];
        self.fact_into(
            &mut Featurizer::new(),
            [subject, predicate, object],
            &mut out,
        );
        out
    }

    /// The vectors of `texts`, row-major: `texts.len() * dim` values.
    pub fn embed_texts<S: AsRef<str> + Sync>(&self, texts: &[S]) -> Vec<f32> {
        self.batch(texts, |f, text, row| self.text_into(f, text.as_ref(), row))
    }

    /// The vectors of `facts`, row-major: `facts.len() * dim` values.
    pub fn embed_facts<S: AsRef<str> + Sync>(&self, facts: &[(S, S, S)]) -> Vec<f32> {
        self.batch(facts, |f, (s, p, o), row| {
            self.fact_into(f, [s.as_ref(), p.as_ref(), o.as_ref()], row)
        })
    }

    /// Fills one row per item in parallel. Rows are independent and each is computed in
    /// the same order as by the single methods, so the result does not depend on the
    /// number of threads.
    fn batch<T: Sync>(
        &self,
        items: &[T],
        embed: impl Fn(&mut Featurizer, &T, &mut [f32]) + Sync,
    ) -> Vec<f32> {
        let mut out = vec![0.0; items.len() * self.dim];
        // Rows of 768 floats take ~1 µs each: batching 64 rows per task keeps rayon's
        // scheduling cost small next to the work.
        out.par_chunks_mut(self.dim * 64)
            .zip(items.par_chunks(64))
            .for_each_init(Featurizer::new, |f, (rows, chunk)| {
                for (row, item) in rows.chunks_mut(self.dim).zip(chunk) {
                    embed(f, item, row);
                }
            });
        out
    }

    fn text_into(&self, f: &mut Featurizer, text: &str, out: &mut [f32]) {
        let w = WordWeights {
            word: WORD_WEIGHT,
            ngrams: NGRAM_WEIGHT,
            role: None,
        };
        f.add_text(text, w, out);
        l2_normalize(out);
    }

    fn fact_into(&self, f: &mut Featurizer, parts: [&str; 3], out: &mut [f32]) {
        for ((part, scale), seed) in parts.iter().zip(ROLE_SCALE).zip(SEED_ROLE) {
            let w = WordWeights {
                word: WORD_WEIGHT * scale,
                ngrams: NGRAM_WEIGHT * scale,
                role: Some((ROLE_WEIGHT * scale, seed)),
            };
            f.add_text(part, w, out);
        }
        l2_normalize(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xxhash_rust::xxh3::xxh3_64;

    fn dot(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    fn norm(a: &[f32]) -> f32 {
        dot(a, a).sqrt()
    }

    fn checksum(v: &[f32]) -> u64 {
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        xxh3_64(&bytes)
    }

    #[test]
    fn golden_vectors_are_pinned() {
        // These checksums pin every bit of the output. If this test fails, the embedding
        // of every stored fact has changed: that needs a migration (re-embedding), not an
        // update of the numbers.
        let e = FactEmbedder::default();
        let fact = e.embed_fact("Pho", "is_a", "dog");
        let text = e.embed_text("The quick brown fox jumps over the lazy dog");
        let small = FactEmbedder::new(16)
            .unwrap()
            .embed_text("Paris capital_of France");
        let got = [checksum(&fact), checksum(&text), checksum(&small)];
        assert_eq!(
            got,
            [
                14998756729431162984,
                9109958955007345934,
                6817429950093327466
            ],
            "checksums of (fact, text, dim-16 text) changed"
        );
    }

    #[test]
    fn same_input_same_bits() {
        let e = FactEmbedder::new(384).unwrap();
        let a = e.embed_fact("Marie Curie", "won", "the Nobel Prize");
        let b = e.embed_fact("Marie Curie", "won", "the Nobel Prize");
        assert_eq!(a, b);
        assert_eq!(e.embed_text("héllo wörld"), e.embed_text("héllo wörld"));
    }

    #[test]
    fn vectors_are_unit_norm() {
        for dim in [1, 2, 7, 768, MAX_DIM] {
            let e = FactEmbedder::new(dim).unwrap();
            for v in [
                e.embed_text("a"),
                e.embed_text("Straße in München, 東京タワー"),
                e.embed_fact("x", "y", "z"),
            ] {
                assert_eq!(v.len(), dim);
                let n = norm(&v);
                // At tiny dims signed features may cancel exactly (see the module docs).
                let ok = (n - 1.0).abs() < 1e-5 || (dim <= 2 && n == 0.0);
                assert!(ok, "dim {dim}: norm {n}");
            }
        }
    }

    #[test]
    fn text_without_words_is_zero() {
        let e = FactEmbedder::new(32).unwrap();
        for text in ["", "   ", "!?-_ ,.;"] {
            assert!(e.embed_text(text).iter().all(|&x| x == 0.0), "{text:?}");
        }
        assert!(e.embed_fact("", "", "").iter().all(|&x| x == 0.0));
        assert!((norm(&e.embed_fact("", "", "dog")) - 1.0).abs() < 1e-5);
    }

    #[test]
    fn case_and_separators_do_not_matter() {
        let e = FactEmbedder::default();
        assert_eq!(e.embed_text("Capital_Of"), e.embed_text("capital of"));
        assert_eq!(e.embed_text("ÉCOLE"), e.embed_text("école"));
        assert_ne!(e.embed_text("capitalof"), e.embed_text("capital of"));
    }

    #[test]
    fn facts_sharing_words_are_closer() {
        let e = FactEmbedder::default();
        let pho = e.embed_fact("Pho", "is_a", "dog");
        let rex = e.embed_fact("Rex", "is_a", "dog");
        let paris = e.embed_fact("Paris", "capital_of", "France");
        let (near, far) = (dot(&pho, &rex), dot(&pho, &paris));
        assert!(near > 0.5, "pho·rex = {near}");
        assert!(far.abs() < 0.2, "pho·paris = {far}");
    }

    #[test]
    fn ngrams_make_inflections_close() {
        let e = FactEmbedder::default();
        let a = e.embed_text("vectorization");
        let b = e.embed_text("vectorizations");
        let c = e.embed_text("banana");
        assert!(
            dot(&a, &b) > 0.35 + dot(&a, &c).abs(),
            "{} vs {}",
            dot(&a, &b),
            dot(&a, &c)
        );
    }

    #[test]
    fn roles_matter_a_little() {
        let e = FactEmbedder::default();
        let ab = e.embed_fact("alice", "knows", "bob");
        let ba = e.embed_fact("bob", "knows", "alice");
        let sim = dot(&ab, &ba);
        assert!(sim < 0.999, "swapped roles must differ: {sim}");
        assert!(sim > 0.6, "swapped roles must stay close: {sim}");
    }

    #[test]
    fn batch_equals_single() {
        let e = FactEmbedder::new(100).unwrap();
        // More rows than one rayon chunk, so several tasks and threads take part.
        let facts: Vec<(String, String, String)> = (0..300)
            .map(|i| {
                (
                    format!("s{i}"),
                    "rel_of".to_string(),
                    format!("object {}", i * 7),
                )
            })
            .collect();
        let batch = e.embed_facts(&facts);
        assert_eq!(batch.len(), 300 * 100);
        for (i, (s, p, o)) in facts.iter().enumerate() {
            assert_eq!(&batch[i * 100..(i + 1) * 100], &e.embed_fact(s, p, o)[..]);
        }
        let texts: Vec<&str> = facts.iter().map(|f| f.2.as_str()).collect();
        let batch = e.embed_texts(&texts);
        for (i, t) in texts.iter().enumerate() {
            assert_eq!(&batch[i * 100..(i + 1) * 100], &e.embed_text(t)[..]);
        }
        assert!(e.embed_texts::<&str>(&[]).is_empty());
    }

    #[test]
    fn dim_is_checked() {
        assert!(FactEmbedder::new(0).is_err());
        assert!(FactEmbedder::new(MAX_DIM + 1).is_err());
        assert_eq!(checked_dim(1).unwrap(), 1);
        assert_eq!(checked_dim(MAX_DIM as i64).unwrap(), MAX_DIM);
        for bad in [-1, 0, MAX_DIM as i64 + 1, i64::MIN] {
            let msg = checked_dim(bad).unwrap_err().to_string();
            assert!(
                msg.contains("dim") && msg.contains(&bad.to_string()),
                "{msg}"
            );
        }
    }
}
