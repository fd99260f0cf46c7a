//! Peer measurement for `make bench`: the instant-distance crate on the same data as
//! llmkg, hnswlib and faiss (benches/bench_hnsw.py runs this and reads its JSON).
//!
//! Its Python wheel only takes 300-dim points, so the crate is measured from Rust; its
//! query loop therefore has no Python call overhead, unlike the Python loops of the others.
//!
//! ```text
//! cargo run --release --example peer_instant_distance -- \
//!     --base base.f32 --queries queries.f32 --gt gt.i32 --dim 384 --gt-k 10 \
//!     [--k 10] [--ef-construction 200] [--efs 10,16,...] [--threads 1,2] [--seed 42] \
//!     [--repeats 3]
//! ```
//!
//! Inputs are raw little-endian files: `base` and `queries` f32 rows of `dim`, `gt` i32
//! rows of `gt-k` exact neighbour ids (best first; ids are base row numbers). Vectors are
//! unit-norm, and the distance is `1 - dot`. Output (stdout): one JSON object with the
//! build seconds per thread count, the index size, and recall@k and queries/s per ef.
//!
//! instant-distance fixes M (32, 64 links on layer 0) in the crate, and fixes ef_search
//! at build time: the graph is built once per thread count, and each ef of the sweep
//! runs on a copy whose stored ef_search is changed through its serde form.

use std::collections::HashSet;
use std::error::Error;
use std::fmt::Write as _;
use std::time::Instant;

use instant_distance::{Builder, Hnsw, Point, Search};
use serde::{Deserialize, Serialize};

type Res<T> = Result<T, Box<dyn Error>>;

/// A unit vector and its row in the base file: search results carry the point, so the
/// row number comes back with it and no id map is needed.
#[derive(Clone, Serialize, Deserialize)]
struct Row {
    id: u32,
    v: Vec<f32>,
}

impl Point for Row {
    fn distance(&self, other: &Self) -> f32 {
        1.0 - dot(&self.v, &other.v)
    }
}

/// Dot product with 8 independent partial sums: f32 addition is not associative, so the
/// compiler vectorises a reduction only when it is written with separate lanes.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    let mut acc = [0.0f32; 8];
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

struct Args {
    base: String,
    queries: String,
    gt: String,
    dim: usize,
    gt_k: usize,
    k: usize,
    ef_construction: usize,
    efs: Vec<usize>,
    threads: Vec<usize>,
    seed: u64,
    repeats: usize,
}

fn parse_list(name: &str, s: &str) -> Res<Vec<usize>> {
    s.split(',')
        .map(|x| {
            x.trim()
                .parse::<usize>()
                .map_err(|e| format!("--{name}: bad number {x:?}: {e}").into())
        })
        .collect()
}

fn parse_args() -> Res<Args> {
    let mut a = Args {
        base: String::new(),
        queries: String::new(),
        gt: String::new(),
        dim: 0,
        gt_k: 0,
        k: 10,
        ef_construction: 200,
        efs: vec![10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512],
        threads: vec![1, 2],
        seed: 42,
        repeats: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = |name: &str| {
            value
                .parse::<usize>()
                .map_err(|e| format!("{name}: bad number {value:?}: {e}"))
        };
        match flag.as_str() {
            "--base" => a.base = value.clone(),
            "--queries" => a.queries = value.clone(),
            "--gt" => a.gt = value.clone(),
            "--dim" => a.dim = num("--dim")?,
            "--gt-k" => a.gt_k = num("--gt-k")?,
            "--k" => a.k = num("--k")?,
            "--ef-construction" => a.ef_construction = num("--ef-construction")?,
            "--seed" => a.seed = num("--seed")? as u64,
            "--repeats" => a.repeats = num("--repeats")?.max(1),
            "--efs" => a.efs = parse_list("efs", &value)?,
            "--threads" => a.threads = parse_list("threads", &value)?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if a.base.is_empty() || a.queries.is_empty() || a.gt.is_empty() {
        return Err("--base, --queries and --gt are required".into());
    }
    if a.dim == 0 || a.gt_k < a.k || a.k == 0 {
        return Err(format!(
            "need --dim > 0 and 0 < --k <= --gt-k (got {}, {}, {})",
            a.dim, a.k, a.gt_k
        )
        .into());
    }
    if a.efs.is_empty() || a.threads.is_empty() || a.threads.contains(&0) {
        return Err("--efs and --threads need at least one value; threads >= 1".into());
    }
    Ok(a)
}

fn read_f32_rows(path: &str, dim: usize) -> Res<Vec<Row>> {
    let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    if bytes.len() % (4 * dim) != 0 {
        return Err(format!(
            "{path}: {} bytes is not a whole number of {dim}-dim f32 rows",
            bytes.len()
        )
        .into());
    }
    let floats: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Ok(floats
        .chunks_exact(dim)
        .enumerate()
        .map(|(i, v)| Row {
            id: i as u32,
            v: v.to_vec(),
        })
        .collect())
}

fn read_i32(path: &str) -> Res<Vec<i32>> {
    let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    if bytes.len() % 4 != 0 {
        return Err(format!("{path}: not a whole number of i32").into());
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

fn build(a: &Args, points: &[Row], threads: usize, ef_search: usize) -> Res<(Hnsw<Row>, f64)> {
    let points = points.to_vec(); // outside the timing: the crate takes ownership
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let start = Instant::now();
    let (hnsw, _ids) = pool.install(|| {
        Builder::default()
            .ef_construction(a.ef_construction)
            .ef_search(ef_search)
            .seed(a.seed)
            .build_hnsw(points)
    });
    Ok((hnsw, start.elapsed().as_secs_f64()))
}

fn main() -> Res<()> {
    let a = parse_args()?;
    let base = read_f32_rows(&a.base, a.dim)?;
    let queries = read_f32_rows(&a.queries, a.dim)?;
    let gt = read_i32(&a.gt)?;
    if gt.len() != queries.len() * a.gt_k {
        return Err(format!(
            "--gt holds {} ids, expected {} queries x {}",
            gt.len(),
            queries.len(),
            a.gt_k
        )
        .into());
    }
    eprintln!(
        "instant-distance: {} base, {} queries, dim {}",
        base.len(),
        queries.len(),
        a.dim
    );

    let first_ef = a.efs[0];
    let mut builds = Vec::new();
    let mut index = None;
    for &t in &a.threads {
        let (hnsw, secs) = build(&a, &base, t, first_ef)?;
        eprintln!("instant-distance: built with {t} thread(s) in {secs:.1} s");
        builds.push((t, secs));
        index = Some(hnsw);
    }
    let index = index.ok_or("no build")?;

    // bincode 1 writes a struct's fields in order, usize as 8 little-endian bytes: the
    // first field of `Hnsw` is its ef_search. Checked here, so that a new crate version
    // with another layout fails loudly instead of measuring the wrong ef.
    let mut bytes = bincode::serialize(&index)?;
    drop(index);
    if bytes.len() < 8 || u64::from_le_bytes(bytes[..8].try_into()?) != first_ef as u64 {
        return Err("instant-distance's serialized Hnsw no longer starts with ef_search".into());
    }
    let index_bytes = bytes.len();

    let mut sweep = String::new();
    for &ef in &a.efs {
        bytes[..8].copy_from_slice(&(ef as u64).to_le_bytes());
        let hnsw: Hnsw<Row> = bincode::deserialize(&bytes)?;
        let mut search = Search::default();
        let mut found: Vec<Vec<u32>> = Vec::new();
        // One query at a time on this thread, as the Python loops of the other libraries;
        // best of `repeats` passes, as they do, because the machine may be shared.
        let mut secs = f64::INFINITY;
        for _ in 0..a.repeats {
            found.clear();
            let start = Instant::now();
            for q in &queries {
                found.push(
                    hnsw.search(q, &mut search)
                        .take(a.k)
                        .map(|item| item.point.id)
                        .collect(),
                );
            }
            secs = secs.min(start.elapsed().as_secs_f64());
        }
        let hits: usize = found
            .iter()
            .enumerate()
            .map(|(i, ids)| {
                let truth: HashSet<i32> =
                    gt[i * a.gt_k..i * a.gt_k + a.k].iter().copied().collect();
                ids.iter()
                    .filter(|&&id| truth.contains(&(id as i32)))
                    .count()
            })
            .sum();
        let recall = hits as f64 / (queries.len() * a.k) as f64;
        let qps = queries.len() as f64 / secs;
        eprintln!(
            "instant-distance: ef {ef:>4} recall@{} {recall:.4} {qps:>9.0} q/s",
            a.k
        );
        if !sweep.is_empty() {
            sweep.push(',');
        }
        write!(
            sweep,
            "{{\"ef\":{ef},\"recall\":{recall:.6},\"qps\":{qps:.3}}}"
        )?;
    }

    let builds: Vec<String> = builds
        .iter()
        .map(|(t, s)| format!("\"{t}\":{s:.4}"))
        .collect();
    println!(
        "{{\"library\":\"instant-distance\",\"version\":\"0.6\",\"m\":\"fixed by the crate: 32 (64 on layer 0)\",\
\"ef_construction\":{},\"n\":{},\"k\":{},\"build_seconds\":{{{}}},\"index_bytes\":{},\"sweep\":[{}]}}",
        a.ef_construction,
        base.len(),
        a.k,
        builds.join(","),
        index_bytes,
        sweep
    );
    Ok(())
}
