//! The density of every log in a group, computed exactly: for unit vectors
//! x₁…xₙ, sim(i, j) = xᵢ·xⱼ, N(i) = { j ≠ i : sim(i, j) ≥ 1 − ε } and
//! D(i) = Σ_{j ∈ N(i)} sim(i, j).
//!
//! The similarity matrix is never held: it is cut into `block × block` tiles
//! and only the tiles on and above the diagonal are computed (the matrix is
//! symmetric), each as one matrix product `X_I · X_Jᵀ` (matrixmultiply's
//! sgemm), then scanned against the threshold and folded into per-log sums.
//! Worker threads take tiles from a shared counter; each holds one tile
//! buffer and its own per-log accumulators, so memory is
//! `threads × (block² + n)`, never `n²`.
//!
//! Results do not depend on the number of threads or the order tiles finish
//! in: each pair's similarity is computed once (in one tile, by one kernel
//! call whose arithmetic is fixed by the tile's shape), a tile's sums are
//! taken in a fixed order, and tiles are added up in integers (fixed point,
//! 2⁻²⁴), which is associative. So a run on 1 thread and on 16 gives the
//! same densities to the last bit, and ordering by density is reproducible.
//!
//! Exact duplicates are collapsed before this, so each log carries a weight
//! (how many raw logs it stands for): a log's copies count as neighbours
//! at similarity 1, and a neighbour counts as many times as it has copies.
//! The figures are then those of the raw logs, with the work done once.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Tile side: two 512×384 panels and a 1 MiB tile fit a core's L2 cache,
/// and one product is ~100M multiply-adds, large enough to run at full
/// speed and small enough to balance across threads.
pub const BLOCK: usize = 512;

/// Fixed-point scale of the summed densities (see the module docs).
const SCALE: f64 = (1u64 << 24) as f64;

/// Density and neighbourhood size of each log, in the order of the vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct Density {
    /// D(i).
    pub density: Vec<f64>,
    /// |N(i)|, counting copies.
    pub neighbours: Vec<u64>,
}

/// Scales `v` to unit length; `false` when it is all zeros (no direction).
pub fn normalize(v: &mut [f32]) -> bool {
    let norm = v.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
    if norm == 0.0 {
        return false;
    }
    v.iter_mut().for_each(|x| *x = (*x as f64 / norm) as f32);
    true
}

/// The densities of the `weights.len()` unit vectors stored row by row in
/// `x` (each `dims` long), at similarity `threshold` (1 − ε), on `threads`
/// threads with tiles of `block` rows.
pub fn density(x: &[f32], dims: usize, weights: &[u32], threshold: f32, threads: usize, block: usize) -> Density {
    let n = weights.len();
    assert_eq!(x.len(), n * dims, "the vectors are n × dims");
    assert!(block > 0 && dims > 0, "empty tiles");
    let blocks = n.div_ceil(block);
    let tiles: Vec<(usize, usize)> = (0..blocks).flat_map(|i| (i..blocks).map(move |j| (i, j))).collect();
    let next = AtomicUsize::new(0);
    let graph = Graph { x, dims, threshold, weights, w: weights.iter().map(|&c| c as f32).collect(), n, block };
    let threads = threads.clamp(1, tiles.len().max(1));
    let partials: Vec<Sums> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut sums = Sums::new(n);
                    let mut tile = vec![0f32; block * block];
                    while let Some(&(i, j)) = tiles.get(next.fetch_add(1, Ordering::Relaxed)) {
                        graph.tile(i, j, &mut tile, &mut sums);
                    }
                    sums
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("a density worker panicked")).collect()
    });
    Sums::total(partials, weights)
}

/// Per-log sums, exact integers so they add up in any order.
pub(super) struct Sums {
    /// Σ weight × similarity, in units of 2⁻²⁴.
    density: Vec<i64>,
    neighbours: Vec<u64>,
}

impl Sums {
    pub(super) fn new(n: usize) -> Self {
        Self { density: vec![0; n], neighbours: vec![0; n] }
    }

    pub(super) fn add(&mut self, other: &Sums) {
        self.density.iter_mut().zip(&other.density).for_each(|(a, b)| *a += b);
        self.neighbours.iter_mut().zip(&other.neighbours).for_each(|(a, b)| *a += b);
    }

    /// The densities the threads' sums add up to; a log's own copies are
    /// neighbours at similarity 1.
    pub(super) fn total(partials: Vec<Sums>, weights: &[u32]) -> Density {
        let n = weights.len();
        let mut total = Sums::new(n);
        for p in partials {
            total.add(&p);
        }
        let density = (0..n).map(|i| total.density[i] as f64 / SCALE + (weights[i] as f64 - 1.0)).collect();
        let neighbours = (0..n).map(|i| total.neighbours[i] + weights[i] as u64 - 1).collect();
        Density { density, neighbours }
    }

    /// Adds one tile's partial sum for log `i`.
    pub(super) fn put(&mut self, i: usize, density: f32, neighbours: u32) {
        self.density[i] += (density as f64 * SCALE).round() as i64;
        self.neighbours[i] += neighbours as u64;
    }
}

struct Graph<'a> {
    x: &'a [f32],
    dims: usize,
    threshold: f32,
    weights: &'a [u32],
    /// The weights as floats, for the vectorized scan.
    w: Vec<f32>,
    n: usize,
    block: usize,
}

impl Graph<'_> {
    fn rows(&self, b: usize) -> Range<usize> {
        b * self.block..((b + 1) * self.block).min(self.n)
    }

    /// Computes tile (bi, bj), bi ≤ bj, and adds what it holds to `sums`:
    /// every pair (r, c) with r in block bi, c in block bj (c > r on the
    /// diagonal) counts for both r and c.
    fn tile(&self, bi: usize, bj: usize, buf: &mut [f32], sums: &mut Sums) {
        let (rows, cols) = (self.rows(bi), self.rows(bj));
        let (m, k, nc) = (rows.len(), self.dims, cols.len());
        let a = &self.x[rows.start * k..rows.end * k];
        let b = &self.x[cols.start * k..cols.end * k];
        let c = &mut buf[..m * nc];
        // SAFETY: `a` is m×k and `b` is nc×k, both row-major (strides k, 1);
        // reading `b` with strides (1, k) is its k×nc transpose. `c` is m×nc,
        // row-major, and exclusively borrowed; with β = 0 it is only written.
        unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                nc,
                1.0,
                a.as_ptr(),
                k as isize,
                1,
                b.as_ptr(),
                1,
                k as isize,
                0.0,
                c.as_mut_ptr(),
                nc as isize,
                1,
            );
        }
        let diagonal = bi == bj;
        let mut col_density = vec![0f32; nc];
        let mut col_count = vec![0u32; nc];
        let (wc, wcu) = (&self.w[cols.clone()], &self.weights[cols.clone()]);
        for r in 0..m {
            // On the diagonal only the upper triangle: each pair once.
            let from = if diagonal { r + 1 } else { 0 };
            let row = &c[r * nc + from..(r + 1) * nc];
            let (wr, wru) = (self.w[rows.start + r], self.weights[rows.start + r]);
            let (d, count) = scan_row(
                row,
                self.threshold,
                (&wc[from..], &wcu[from..]),
                (wr, wru),
                (&mut col_density[from..], &mut col_count[from..]),
            );
            sums.put(rows.start + r, d, count);
        }
        for (j, (&d, &count)) in col_density.iter().zip(&col_count).enumerate() {
            sums.put(cols.start + j, d, count);
        }
    }
}

/// Lanes of the row accumulators: written as arrays so the compiler keeps
/// them in vector registers (a float sum is not reassociated otherwise).
const LANES: usize = 16;

/// One row of a tile: the weighted sum and count of the entries at or above
/// `threshold` (weighted by the column's log), and the same entries added,
/// weighted by the row's log, to the column sums.
pub(super) fn scan_row(
    row: &[f32],
    threshold: f32,
    (wc, wcu): (&[f32], &[u32]),
    (wr, wru): (f32, u32),
    (col_density, col_count): (&mut [f32], &mut [u32]),
) -> (f32, u32) {
    let mut acc = [0f32; LANES];
    let mut cnt = [0u32; LANES];
    let len = row.len();
    let whole = len - len % LANES;
    let lanes = row[..whole]
        .chunks_exact(LANES)
        .zip(wc[..whole].chunks_exact(LANES))
        .zip(wcu[..whole].chunks_exact(LANES))
        .zip(col_density[..whole].chunks_exact_mut(LANES))
        .zip(col_count[..whole].chunks_exact_mut(LANES));
    for ((((s, w), wu), cd), cc) in lanes {
        for l in 0..LANES {
            let keep = s[l] >= threshold;
            acc[l] += if keep { s[l] * w[l] } else { 0.0 };
            cnt[l] += if keep { wu[l] } else { 0 };
            cd[l] += if keep { s[l] * wr } else { 0.0 };
            cc[l] += if keep { wru } else { 0 };
        }
    }
    for j in whole..len {
        if row[j] >= threshold {
            acc[j - whole] += row[j] * wc[j];
            cnt[j - whole] += wcu[j];
            col_density[j] += row[j] * wr;
            col_count[j] += wru;
        }
    }
    (acc.iter().sum(), cnt.iter().sum())
}

/// Cosine similarity of two unit vectors, for the few pairs looked at one
/// by one (a pick and a candidate).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let whole = a.len() - a.len() % LANES;
    for (x, y) in a[..whole].chunks_exact(LANES).zip(b[..whole].chunks_exact(LANES)) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    let tail: f32 = a[whole..].iter().zip(&b[whole..]).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::projection::SplitMix as Rng;

    /// `n` unit vectors around `centres` random centres, `spread` apart
    /// from them: clustered, so many pairs are neighbours and many are not.
    fn clustered(n: usize, dims: usize, centres: usize, spread: f32, seed: u64) -> Vec<f32> {
        let mut rng = Rng(seed);
        let cs: Vec<Vec<f32>> = (0..centres).map(|_| (0..dims).map(|_| rng.unit_f32()).collect()).collect();
        let mut x = Vec::with_capacity(n * dims);
        for i in 0..n {
            let c = &cs[(rng.next() % centres as u64) as usize];
            let mut v: Vec<f32> = (0..dims).map(|k| c[k] + spread * rng.unit_f32()).collect();
            if i % 11 == 0 {
                v = (0..dims).map(|_| rng.unit_f32()).collect(); // a loner
            }
            assert!(normalize(&mut v));
            x.extend(v);
        }
        x
    }

    /// The definition, in f64, pair by pair; also how far each log's
    /// figures may move for pairs within rounding of the threshold.
    fn naive(x: &[f32], dims: usize, weights: &[u32], threshold: f32) -> (Density, Vec<(f64, u64)>) {
        let n = weights.len();
        let mut d = Density { density: vec![0.0; n], neighbours: vec![0; n] };
        let mut slack = vec![(1e-4, 0u64); n];
        for i in 0..n {
            d.density[i] += weights[i] as f64 - 1.0;
            d.neighbours[i] += weights[i] as u64 - 1;
            for j in 0..n {
                if j == i {
                    continue;
                }
                let s: f64 = (0..dims).map(|k| x[i * dims + k] as f64 * x[j * dims + k] as f64).sum();
                if (s - threshold as f64).abs() < 1e-5 {
                    slack[i].0 += s.abs() * weights[j] as f64;
                    slack[i].1 += weights[j] as u64;
                }
                if s >= threshold as f64 {
                    d.density[i] += s * weights[j] as f64;
                    d.neighbours[i] += weights[j] as u64;
                }
            }
        }
        (d, slack)
    }

    fn assert_close(fast: &Density, slow: &Density, slack: &[(f64, u64)]) {
        for (i, &(ds, ns)) in slack.iter().enumerate().take(slow.density.len()) {
            let dd = (fast.density[i] - slow.density[i]).abs();
            assert!(
                dd <= ds + 1e-6 * slow.density[i].abs(),
                "log {i}: density {} vs {}",
                fast.density[i],
                slow.density[i]
            );
            let dn = fast.neighbours[i].abs_diff(slow.neighbours[i]);
            assert!(dn <= ns, "log {i}: neighbours {} vs {}", fast.neighbours[i], slow.neighbours[i]);
        }
    }

    #[test]
    fn matches_the_definition_on_random_data() {
        // Sizes that leave partial tiles, one tile, and a single log.
        for (n, dims, block, seed) in [(300, 24, 64, 1), (257, 7, 32, 2), (40, 16, 512, 3), (1, 5, 8, 4)] {
            let x = clustered(n, dims, 4, 0.35, seed);
            let weights = vec![1; n];
            for eps in [0.1f32, 0.3, 0.6] {
                let fast = density(&x, dims, &weights, 1.0 - eps, 3, block);
                let (slow, slack) = naive(&x, dims, &weights, 1.0 - eps);
                assert_close(&fast, &slow, &slack);
                if n > 1 && eps == 0.3 {
                    assert!(slow.neighbours.iter().any(|&k| k > 2), "n = {n}: some logs have neighbours");
                    assert!(slow.neighbours.contains(&0), "n = {n}: and some none");
                }
            }
        }
    }

    #[test]
    fn weights_count_as_copies() {
        let (n, dims) = (150, 12);
        let x = clustered(n, dims, 3, 0.3, 9);
        let weights: Vec<u32> = (0..n as u32).map(|i| 1 + i % 4).collect();
        let fast = density(&x, dims, &weights, 0.7, 2, 32);
        let (slow, slack) = naive(&x, dims, &weights, 0.7);
        assert_close(&fast, &slow, &slack);

        // The same as expanding every copy and reading the first of each.
        let mut expanded = Vec::new();
        let mut first = Vec::new();
        for i in 0..n {
            first.push(expanded.len() / dims);
            for _ in 0..weights[i] {
                expanded.extend_from_slice(&x[i * dims..(i + 1) * dims]);
            }
        }
        let ones = vec![1; expanded.len() / dims];
        let raw = density(&expanded, dims, &ones, 0.7, 2, 32);
        for (i, &f) in first.iter().enumerate() {
            assert_eq!(fast.neighbours[i], raw.neighbours[f], "log {i}");
            assert!((fast.density[i] - raw.density[f]).abs() < 1e-3, "log {i}");
        }
    }

    #[test]
    fn the_same_to_the_last_bit_on_any_number_of_threads() {
        let (n, dims) = (700, 32);
        let x = clustered(n, dims, 5, 0.4, 7);
        let weights = vec![1; n];
        let one = density(&x, dims, &weights, 0.7, 1, 64);
        assert!(one.neighbours.iter().any(|&k| k > 10), "the data has dense clusters");
        assert!(one.neighbours.contains(&0), "and loners");
        for threads in [2, 3, 8] {
            assert_eq!(density(&x, dims, &weights, 0.7, threads, 64), one, "{threads} threads");
        }
    }

    #[test]
    fn normalize_and_dot() {
        let mut v = vec![3.0, 4.0];
        assert!(normalize(&mut v));
        assert!((dot(&v, &v) - 1.0).abs() < 1e-6);
        assert!(!normalize(&mut [0.0, 0.0]));
        let a: Vec<f32> = (0..37).map(|i| i as f32).collect();
        let naive: f32 = a.iter().map(|x| x * x).sum();
        assert!((dot(&a, &a) - naive).abs() < 1e-2);
    }
}
