//! Precision levels, their codecs, and the distance kernels that read them.
//!
//! Every node of the index is stored at one of four precisions. Distances from an f32 query
//! to a code are computed on the code directly (asymmetric distance): the query stays f32,
//! only the stored side is approximate. All metrics reduce to an inner product plus per-row
//! parameters (see [`RowParams`]), so there is one kernel per precision, not per metric.

mod codec;
pub mod kernels;
mod mapped;

pub use codec::{decode_into, encode, CodeArena, RowParams};

use crate::error::{Error, Result};

/// How one node's vector is kept in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Precision {
    /// f32 per dimension, exact.
    Full = 0,
    /// int8 scalar quantization per vector (min + scale), 1 byte per dimension.
    Q8 = 1,
    /// 4-bit scalar quantization per vector, 2 dimensions per byte.
    Q4 = 2,
    /// 1 bit per dimension: the sign around the vector's mean, with one scale.
    Binary = 3,
}

impl Precision {
    /// Every precision, from most to least memory per node (the order of its `repr(u8)`).
    pub const ALL: [Precision; 4] = [
        Precision::Full,
        Precision::Q8,
        Precision::Q4,
        Precision::Binary,
    ];
    const EXPECTED: &'static str = "\"full\", \"q8\", \"q4\", \"binary\"";

    pub fn name(self) -> &'static str {
        match self {
            Precision::Full => "full",
            Precision::Q8 => "q8",
            Precision::Q4 => "q4",
            Precision::Binary => "binary",
        }
    }

    pub fn parse(value: &str) -> Result<Precision> {
        match value {
            "full" | "f32" => Ok(Precision::Full),
            "q8" | "int8" => Ok(Precision::Q8),
            "q4" | "int4" => Ok(Precision::Q4),
            "binary" | "bit" => Ok(Precision::Binary),
            _ => Err(Error::UnknownName {
                kind: "precision",
                value: value.to_string(),
                expected: Self::EXPECTED,
            }),
        }
    }

    pub(crate) fn from_u8(v: u8) -> Option<Precision> {
        Precision::ALL.get(v as usize).copied()
    }

    /// Bytes of one code of this precision for `dim` dimensions (row data only).
    pub fn code_bytes(self, dim: usize) -> usize {
        match self {
            Precision::Full => dim * 4,
            Precision::Q8 => dim,
            Precision::Q4 => dim.div_ceil(2),
            Precision::Binary => dim.div_ceil(8),
        }
    }
}
