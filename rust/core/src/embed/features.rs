//! Feature extraction for the embedder: tokenising, hashing, and adding signed features
//! into an accumulator. Everything here must give the same bits on every platform and
//! run, so it uses only xxh3 with fixed seeds (never `DefaultHasher`, whose keys are
//! random per process) and a fixed, sequential order of floating-point additions.

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Seeds of the independent hash families. Changing any of them changes every vector:
/// the golden checksum test in `mod.rs` is there to catch that.
pub(crate) const SEED_WORD: u64 = 0x6c6c_6d6b_675f_7764; // "llmkg_wd"
pub(crate) const SEED_NGRAM: u64 = 0x6c6c_6d6b_675f_6e67; // "llmkg_ng"
/// One seed per fact role, so "paris" as a subject and "paris" as an object also land
/// on different role-tagged features (they share the untagged ones).
pub(crate) const SEED_ROLE: [u64; 3] = [
    0x6c6c_6d6b_675f_7273, // "llmkg_rs" subject
    0x6c6c_6d6b_675f_7270, // "llmkg_rp" predicate
    0x6c6c_6d6b_675f_726f, // "llmkg_ro" object
];

/// Length of the character n-grams.
pub(crate) const NGRAM: usize = 3;
/// Word boundary markers, so that prefixes and suffixes ("<ca", "og>") are features of
/// their own and a short word still yields at least one n-gram.
const BOUNDARY_START: char = '<';
const BOUNDARY_END: char = '>';

/// Adds one signed feature of weight `weight` to `acc`.
///
/// The 64-bit hash is split into independent parts: its low 32 bits pick the bucket by
/// a multiply-shift (Lemire's reduction, unbiased enough for `dim <= 65_536` and free of
/// the division of `%`), and its top bit picks the sign, so colliding features cancel
/// out on average instead of piling up.
#[inline]
fn add_feature(acc: &mut [f32], hash: u64, weight: f32) {
    let dim = acc.len() as u64;
    let bucket = (((hash & 0xffff_ffff) * dim) >> 32) as usize;
    let sign = if hash >> 63 == 0 { 1.0 } else { -1.0 };
    acc[bucket] += sign * weight;
}

/// Turns texts into features; holds scratch space reused across words, so that
/// embedding a text allocates nothing once the buffers have grown.
pub(crate) struct Featurizer {
    word: String,
    chars: Vec<char>,
    gram: String,
}

/// How one word is turned into features.
#[derive(Clone, Copy)]
pub(crate) struct WordWeights {
    /// Weight of the whole-word feature (shared by all roles and by plain text).
    pub word: f32,
    /// Total weight of the word's n-grams (spread over them, see `add_word`).
    pub ngrams: f32,
    /// Weight and seed of the role-tagged whole-word feature; `None` for plain text.
    pub role: Option<(f32, u64)>,
}

impl Featurizer {
    pub(crate) fn new() -> Self {
        Featurizer {
            word: String::with_capacity(32),
            chars: Vec::with_capacity(34),
            gram: String::with_capacity(NGRAM * 4),
        }
    }

    /// Splits `text` into lowercase words and adds each word's features to `acc`.
    /// Returns the number of words seen.
    ///
    /// A word is a maximal run of alphanumeric characters (Unicode's definition), so
    /// punctuation, spaces and `_` separate words: `capital_of` gives `capital`, `of`.
    /// Lowercasing is `char::to_lowercase`, which is locale-independent.
    pub(crate) fn add_text(&mut self, text: &str, w: WordWeights, acc: &mut [f32]) -> usize {
        let mut words = 0;
        self.word.clear();
        for c in text.chars() {
            if c.is_alphanumeric() {
                self.word.extend(c.to_lowercase());
            } else if !self.word.is_empty() {
                self.add_word(w, acc);
                self.word.clear();
                words += 1;
            }
        }
        if !self.word.is_empty() {
            self.add_word(w, acc);
            self.word.clear();
            words += 1;
        }
        words
    }

    /// Adds the features of the word in `self.word`.
    fn add_word(&mut self, w: WordWeights, acc: &mut [f32]) {
        let bytes = self.word.as_bytes();
        add_feature(acc, xxh3_64_with_seed(bytes, SEED_WORD), w.word);
        if let Some((weight, seed)) = w.role {
            add_feature(acc, xxh3_64_with_seed(bytes, seed), weight);
        }

        self.chars.clear();
        self.chars.push(BOUNDARY_START);
        self.chars.extend(self.word.chars());
        self.chars.push(BOUNDARY_END);
        // The word has at least one char, so with its markers there are >= 3 chars and
        // at least one n-gram. Each n-gram gets ngrams / sqrt(count): the n-gram block
        // of a word then has norm ~`w.ngrams` whatever the word's length, so long words
        // do not drown short ones.
        let count = self.chars.len() + 1 - NGRAM;
        let weight = w.ngrams / (count as f32).sqrt();
        for window in self.chars.windows(NGRAM) {
            self.gram.clear();
            self.gram.extend(window.iter());
            add_feature(
                acc,
                xxh3_64_with_seed(self.gram.as_bytes(), SEED_NGRAM),
                weight,
            );
        }
    }
}

/// Scales `v` to unit L2 norm; leaves an all-zero vector as it is.
///
/// The sum of squares is accumulated in f64 in index order, and every operation is a
/// correctly rounded IEEE one (no FMA contraction in Rust), so the result is the same
/// bits everywhere.
pub(crate) fn l2_normalize(v: &mut [f32]) {
    let norm_sq: f64 = v.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
    if norm_sq > 0.0 {
        let inv = (1.0 / norm_sq.sqrt()) as f32;
        for x in v.iter_mut() {
            *x *= inv;
        }
    }
}
