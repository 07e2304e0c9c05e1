//! Approximate densities for large groups: an IVF index (k-means cells)
//! that finds each log's neighbours among the logs of a few cells instead of
//! all of them.
//!
//! Exact densities cost n² · d: 100,000 logs take ~20 s on two cores, a
//! million ~35 min. But at ε = 0.3 a log's neighbours are the logs of its
//! own cluster, a small part of the whole. So:
//!
//! 1. the unit vectors are clustered by spherical k-means into ⌈√n⌉ cells
//!    (fitted on at most [`FIT_PER_CELL`] logs a cell, every k-th, from
//!    fixed starting centroids, [`ITERATIONS`] rounds), and every log is put
//!    in the cell of its nearest centroid;
//! 2. each cell gets a radius: the angle from its centroid within which all
//!    but its farthest [`FAR_SHARE`] of members lie;
//! 3. a log x can have a neighbour in cell b only if the angle from x to b's
//!    centroid, less b's radius, is within the neighbourhood's angle
//!    arccos(1 − ε) (the triangle inequality on the sphere): each cell is
//!    searched for the logs of the cells that pass this test for one of
//!    their logs, at most [`MAX_PROBES`] cells (the closest by the test's
//!    margin);
//! 4. the similarities of those cell pairs are computed exactly, in tiles,
//!    and summed like [`density::density`]'s: in fixed point, each pair
//!    once, so the result does not depend on the number of threads.
//!
//! A neighbour is missed only when it is one of a cell's far members and
//! its cell was not searched, or when a neighbourhood spans more than
//! [`MAX_PROBES`] cells. Where clusters are compact (what `steady` looks
//! for) recall is ~1 and the picks are exact's. A crate's HNSW or IVF index
//! was not used: they answer k-nearest-neighbour queries, and a density
//! needs every neighbour within a radius (thousands per log at 1M logs),
//! which is this cell-pair scan.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::density::{self, scan_row, Density, Sums, BLOCK};

/// Logs per cell, at most, that k-means is fitted on.
pub const FIT_PER_CELL: usize = 64;

/// Rounds of k-means.
pub const ITERATIONS: usize = 10;

/// The share of a cell's members that may lie outside its radius.
pub const FAR_SHARE: f64 = 0.02;

/// Cells searched for one cell's logs, at most.
pub const MAX_PROBES: usize = 64;

/// Slack on the pruning test, for rounding in the similarities.
const SLACK: f32 = 1e-3;

/// `c = a · bᵀ`: `a` is m × k and `b` is nc × k, both row-major; `c` is
/// m × nc.
fn gemm(a: &[f32], b: &[f32], k: usize, c: &mut [f32]) {
    let (m, nc) = (a.len() / k, b.len() / k);
    assert!(c.len() >= m * nc && a.len() == m * k && b.len() == nc * k, "gemm shapes");
    // SAFETY: `a` is m×k and `b` is nc×k, row-major (strides k, 1); reading
    // `b` with strides (1, k) is its k×nc transpose. `c` is m×nc, row-major,
    // exclusively borrowed; with β = 0 it is only written.
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
}

/// Runs `f` on `threads` threads over the items `0..items`, each thread
/// taking the next one; returns each thread's result.
fn parallel<T: Send>(threads: usize, items: usize, f: impl Fn(&AtomicUsize) -> T + Sync) -> Vec<T> {
    let next = AtomicUsize::new(0);
    let threads = threads.clamp(1, items.max(1));
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads).map(|_| s.spawn(|| f(&next))).collect();
        workers.into_iter().map(|w| w.join().expect("an ivf worker panicked")).collect()
    })
}

/// For every row of `x`, its nearest of the `centroids` (the first on a
/// tie) and the similarity to it.
fn nearest(x: &[f32], centroids: &[f32], dims: usize, threads: usize) -> (Vec<u32>, Vec<f32>) {
    let n = x.len() / dims;
    let cells = centroids.len() / dims;
    let blocks = n.div_ceil(BLOCK);
    let mut cell = vec![0u32; n];
    let mut sim = vec![0f32; n];
    let parts = parallel(threads, blocks, |next| {
        let mut buf = vec![0f32; BLOCK * cells];
        let mut out = Vec::new();
        loop {
            let b = next.fetch_add(1, Ordering::Relaxed);
            if b >= blocks {
                return out;
            }
            let rows = b * BLOCK..((b + 1) * BLOCK).min(n);
            gemm(&x[rows.start * dims..rows.end * dims], centroids, dims, &mut buf);
            for (r, i) in rows.enumerate() {
                let row = &buf[r * cells..(r + 1) * cells];
                let (mut best, mut at) = (f32::NEG_INFINITY, 0);
                for (c, &s) in row.iter().enumerate() {
                    if s > best {
                        (best, at) = (s, c);
                    }
                }
                out.push((i, at as u32, best));
            }
        }
    });
    for (i, c, s) in parts.into_iter().flatten() {
        (cell[i], sim[i]) = (c, s);
    }
    (cell, sim)
}

/// Spherical k-means on the rows of `x`: `cells` unit centroids.
fn kmeans(x: &[f32], dims: usize, cells: usize, threads: usize) -> Vec<f32> {
    let n = x.len() / dims;
    let stride = n.div_ceil(cells * FIT_PER_CELL).max(1);
    let sample: Vec<f32> = (0..n).step_by(stride).flat_map(|i| x[i * dims..(i + 1) * dims].iter().copied()).collect();
    let m = sample.len() / dims;
    // Fixed starting centroids, spread over the sample.
    let mut centroids: Vec<f32> =
        (0..cells).flat_map(|c| sample[(c * m / cells) * dims..(c * m / cells + 1) * dims].iter().copied()).collect();
    for _ in 0..ITERATIONS {
        let (cell, _) = nearest(&sample, &centroids, dims, threads);
        // Sums in a fixed order on one thread: the same centroids however
        // many threads found the cells.
        let mut sums = vec![0f64; cells * dims];
        let mut counts = vec![0usize; cells];
        for (i, &c) in cell.iter().enumerate() {
            let c = c as usize;
            counts[c] += 1;
            for (s, &v) in sums[c * dims..(c + 1) * dims].iter_mut().zip(&sample[i * dims..(i + 1) * dims]) {
                *s += v as f64;
            }
        }
        for c in 0..cells {
            if counts[c] == 0 {
                continue; // an empty cell keeps its centroid
            }
            let mut v: Vec<f32> = sums[c * dims..(c + 1) * dims].iter().map(|&s| s as f32).collect();
            if density::normalize(&mut v) {
                centroids[c * dims..(c + 1) * dims].copy_from_slice(&v);
            }
        }
    }
    centroids
}

/// The index of a group: each cell's members, and the logs of the cells
/// searched for them.
struct Index {
    members: Vec<Vec<u32>>,
    /// For each cell a, the members of the cells b > a searched with it,
    /// one after the other (pairs within a cell are always searched).
    others: Vec<Vec<u32>>,
}

/// The cells of at most `cells` logs' worth: ⌈√n⌉.
pub fn cells_for(n: usize) -> usize {
    (n as f64).sqrt().ceil().max(1.0) as usize
}

fn index(x: &[f32], dims: usize, threshold: f32, threads: usize) -> Index {
    let n = x.len() / dims;
    let cells = cells_for(n);
    let centroids = kmeans(x, dims, cells, threads);
    let (cell, sim) = nearest(x, &centroids, dims, threads);
    let mut members: Vec<Vec<u32>> = vec![Vec::new(); cells];
    for (i, &c) in cell.iter().enumerate() {
        members[c as usize].push(i as u32);
    }
    // The cosine of each cell's radius, then the least similarity to its
    // centroid a log may have and still have a neighbour in it.
    let t = threshold.clamp(-1.0, 1.0) as f64;
    let reach: Vec<f32> = members
        .iter()
        .map(|m| {
            if m.is_empty() {
                return f32::INFINITY; // nothing to find
            }
            let mut s: Vec<f32> = m.iter().map(|&i| sim[i as usize]).collect();
            s.sort_by(f32::total_cmp);
            let far = ((s.len() as f64 * FAR_SHARE) as usize).min(s.len() - 1);
            let cos_r = (s[far] as f64).clamp(-1.0, 1.0);
            let (theta_e, r) = (t.acos(), cos_r.acos());
            if theta_e + r >= std::f64::consts::PI {
                f32::NEG_INFINITY
            } else {
                (theta_e + r).cos() as f32 - SLACK
            }
        })
        .collect();
    // margin[a][b]: how far the logs of cell a come past cell b's reach, at
    // most (negative: none can have a neighbour there); near[a][b]: the
    // most similar any of them is to b's centroid.
    let blocks = n.div_ceil(BLOCK);
    let found = parallel(threads, blocks, |next| {
        let mut margin = vec![f32::NEG_INFINITY; cells * cells];
        let mut near = vec![f32::NEG_INFINITY; cells * cells];
        let mut buf = vec![0f32; BLOCK * cells];
        loop {
            let b = next.fetch_add(1, Ordering::Relaxed);
            if b >= blocks {
                return (margin, near);
            }
            let rows = b * BLOCK..((b + 1) * BLOCK).min(n);
            gemm(&x[rows.start * dims..rows.end * dims], &centroids, dims, &mut buf);
            for (r, i) in rows.enumerate() {
                let a = cell[i] as usize;
                let sims = &buf[r * cells..(r + 1) * cells];
                let (m, s) = (&mut margin[a * cells..(a + 1) * cells], &mut near[a * cells..(a + 1) * cells]);
                for (((m, s), &sim), &reach) in m.iter_mut().zip(s.iter_mut()).zip(sims).zip(&reach) {
                    *m = m.max(sim - reach);
                    *s = s.max(sim);
                }
            }
        }
    });
    let mut margin = vec![f32::NEG_INFINITY; cells * cells];
    let mut near = vec![f32::NEG_INFINITY; cells * cells];
    for (m, s) in found {
        margin.iter_mut().zip(&m).for_each(|(a, &b)| *a = a.max(b));
        near.iter_mut().zip(&s).for_each(|(a, &b)| *a = a.max(b));
    }
    let mut searched = vec![false; cells * cells];
    for a in 0..cells {
        let (margin, near) = (&margin[a * cells..(a + 1) * cells], &near[a * cells..(a + 1) * cells]);
        let mut probes: Vec<usize> = (0..cells).filter(|&b| b != a && margin[b] >= 0.0).collect();
        if probes.len() > MAX_PROBES - 1 {
            // The closest cells, by similarity (not by margin: a loose cell,
            // far logs around a centroid, passes the test from everywhere).
            probes.sort_by(|&p, &q| near[q].total_cmp(&near[p]).then(p.cmp(&q)));
            probes.truncate(MAX_PROBES - 1);
        }
        for b in probes {
            searched[a.min(b) * cells + a.max(b)] = true;
        }
    }
    let others = (0..cells)
        .map(|a| {
            let mut o = Vec::new();
            for b in a + 1..cells {
                if searched[a * cells + b] {
                    o.extend_from_slice(&members[b]);
                }
            }
            o
        })
        .collect();
    Index { members, others }
}

/// The densities of the `weights.len()` unit vectors stored row by row in
/// `x` (each `dims` long) at similarity `threshold`, over the neighbours
/// the index finds (see the module docs), on `threads` threads.
pub fn density(x: &[f32], dims: usize, weights: &[u32], threshold: f32, threads: usize) -> Density {
    let n = weights.len();
    assert_eq!(x.len(), n * dims, "the vectors are n × dims");
    if n == 0 {
        return Density { density: Vec::new(), neighbours: Vec::new() };
    }
    let index = index(x, dims, threshold, threads);
    // Tiles of at most BLOCK × BLOCK logs: a cell's logs with each other
    // (the upper triangle), and with the logs of the cells searched for them.
    let mut tiles: Vec<(&[u32], &[u32], bool)> = Vec::new();
    for (own, others) in index.members.iter().zip(&index.others) {
        let chunks: Vec<&[u32]> = own.chunks(BLOCK).collect();
        for (i, &ra) in chunks.iter().enumerate() {
            for (j, &rb) in chunks.iter().enumerate().skip(i) {
                tiles.push((ra, rb, i == j));
            }
            for rb in others.chunks(BLOCK) {
                tiles.push((ra, rb, false));
            }
        }
    }
    let w: Vec<f32> = weights.iter().map(|&c| c as f32).collect();
    let partials = parallel(threads, tiles.len(), |next| {
        let mut sums = Sums::new(n);
        let (mut pa, mut pb) = (Vec::with_capacity(BLOCK * dims), Vec::with_capacity(BLOCK * dims));
        let mut c = vec![0f32; BLOCK * BLOCK];
        let (mut wc, mut wcu) = (Vec::with_capacity(BLOCK), Vec::with_capacity(BLOCK));
        while let Some(&(rows, cols, diagonal)) = tiles.get(next.fetch_add(1, Ordering::Relaxed)) {
            pa.clear();
            pb.clear();
            wc.clear();
            wcu.clear();
            for &i in rows {
                pa.extend_from_slice(&x[i as usize * dims..(i as usize + 1) * dims]);
            }
            for &j in cols {
                pb.extend_from_slice(&x[j as usize * dims..(j as usize + 1) * dims]);
                wc.push(w[j as usize]);
                wcu.push(weights[j as usize]);
            }
            let nc = cols.len();
            gemm(&pa, &pb, dims, &mut c);
            let mut col_density = vec![0f32; nc];
            let mut col_count = vec![0u32; nc];
            for (r, &i) in rows.iter().enumerate() {
                let from = if diagonal { r + 1 } else { 0 };
                let (d, count) = scan_row(
                    &c[r * nc + from..(r + 1) * nc],
                    threshold,
                    (&wc[from..], &wcu[from..]),
                    (w[i as usize], weights[i as usize]),
                    (&mut col_density[from..], &mut col_count[from..]),
                );
                sums.put(i as usize, d, count);
            }
            for (j, (&d, &count)) in col_density.iter().zip(&col_count).enumerate() {
                sums.put(cols[j] as usize, d, count);
            }
        }
        sums
    });
    Sums::total(partials, weights)
}

/// The neighbours (counting copies, as [`Density::neighbours`] does) of the
/// logs `rows`, by comparing each with every log: what recall is measured
/// against.
pub fn exact_neighbours(x: &[f32], dims: usize, weights: &[u32], threshold: f32, rows: &[usize]) -> Vec<u64> {
    let n = weights.len();
    rows.iter()
        .map(|&i| {
            let v = &x[i * dims..(i + 1) * dims];
            let others: u64 = (0..n)
                .filter(|&j| j != i && density::dot(v, &x[j * dims..(j + 1) * dims]) >= threshold)
                .map(|j| weights[j] as u64)
                .sum();
            others + weights[i] as u64 - 1
        })
        .collect()
}

/// Neighbour recall of `found` against `exact` (both per log): the share
/// of all true neighbour pairs found, over the logs that have some.
pub fn recall(found: &[u64], exact: &[u64]) -> f64 {
    let truth: u64 = exact.iter().sum();
    if truth == 0 {
        return 1.0;
    }
    let hit: u64 = found.iter().zip(exact).map(|(&f, &e)| f.min(e)).sum();
    hit as f64 / truth as f64
}

#[cfg(test)]
mod tests {
    use super::super::density::normalize;
    use super::super::select;
    use super::*;

    use super::super::projection::SplitMix as Rng;

    /// `n` logs like real ones: `clusters` topics with every log at cosine
    /// ≈ 0.9 from its topic, one in 200 a loner in a random direction.
    fn logs(n: usize, dims: usize, clusters: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng(seed);
        let centres: Vec<Vec<f32>> = (0..clusters)
            .map(|_| {
                let mut v: Vec<f32> = (0..dims).map(|_| rng.unit_f32()).collect();
                normalize(&mut v);
                v
            })
            .collect();
        let amplitude = 0.5 * (3.0 / dims as f32).sqrt();
        let mut x = Vec::with_capacity(n * dims);
        for i in 0..n {
            let c = &centres[(rng.next() % clusters as u64) as usize];
            let mut v: Vec<f32> = if i % 200 == 199 {
                (0..dims).map(|_| rng.unit_f32()).collect()
            } else {
                c.iter().map(|&x| x + amplitude * rng.unit_f32()).collect()
            };
            assert!(normalize(&mut v));
            x.extend(v);
        }
        x
    }

    #[test]
    fn approximate_neighbours_reach_the_recall_and_the_picks_of_exact() {
        let (n, dims, threshold) = (5000, 64, 0.7);
        let x = logs(n, dims, 24, 11);
        let weights: Vec<u32> = (0..n as u32).map(|i| 1 + (i % 13 == 0) as u32).collect();
        let exact = density::density(&x, dims, &weights, threshold, 2, BLOCK);
        let approx = density(&x, dims, &weights, threshold, 2);
        assert!(exact.neighbours.iter().filter(|&&k| k > 50).count() > n / 2, "dense clusters");
        let all: Vec<usize> = (0..n).collect();
        let r = recall(&approx.neighbours, &exact.neighbours);
        assert!(r >= 0.95, "recall {r}");
        // Found neighbours are true ones: never more than exact's.
        for i in all {
            assert!(approx.neighbours[i] <= exact.neighbours[i] + 2, "log {i}");
        }
        let success: Vec<bool> = (0..n).map(|i| i % 10 != 3).collect();
        let picks = |d: &Density| select::steady(&x, dims, d, &success, threshold, 20, 2);
        assert_eq!(picks(&approx), picks(&exact));
        let sample: Vec<usize> = (0..n).step_by(97).collect();
        let counted = exact_neighbours(&x, dims, &weights, threshold, &sample);
        let fast: Vec<u64> = sample.iter().map(|&i| exact.neighbours[i]).collect();
        assert!(recall(&fast, &counted) > 0.999 && recall(&counted, &fast) > 0.999);
    }

    #[test]
    fn the_same_on_any_number_of_threads_and_small_inputs_work() {
        let (n, dims) = (1500, 16);
        let x = logs(n, dims, 6, 5);
        let weights = vec![1; n];
        let one = density(&x, dims, &weights, 0.7, 1);
        assert_eq!(density(&x, dims, &weights, 0.7, 3), one);
        for n in [0, 1, 2, 7] {
            let x = logs(n, 4, 2, 3);
            let d = density(&x, 4, &vec![1; n], 0.5, 2);
            assert_eq!(d.neighbours.len(), n);
        }
    }
}
