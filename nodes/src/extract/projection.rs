//! A 2-D map of the logs, for the report: every log's embedding projected
//! onto the first two principal components of the logs.
//!
//! The report draws one point per log with the picks marked, so a reader
//! sees whether the `steady` picks sit in the middle of distinct clusters
//! and the `anomaly` picks at the edges. The map must be cheap next to the
//! densities (which cost n² · d) and the same on every run, so it is PCA by
//! subspace iteration, not t-SNE or UMAP:
//!
//! - the components are fitted on at most [`FIT_ROWS`] logs (every k-th,
//!   in the order of groups and ids, when there are more), then every log
//!   is projected;
//! - the unit vectors are read row by row, in blocks of [`BLOCK`], and
//!   never gathered into a covariance or an n × n matrix: one iteration is
//!   `W = C · V` with C the covariance of the vectors, taken as
//!   `Σ (xᵢ − μ) ((xᵢ − μ) · V) / n`, two dot products and two
//!   multiply-adds per row: 4 · n · d operations and memory for two
//!   d-vectors;
//! - V starts from a fixed pseudo-random pair of directions (SplitMix64,
//!   seed [`SEED`]), is orthonormalized after each of [`ITERATIONS`]
//!   iterations (Gram–Schmidt), then turned within its plane so that the
//!   first axis carries the most variance (Rayleigh–Ritz on the 2 × 2
//!   projected covariance);
//! - a component's sign is arbitrary in PCA: each is flipped so that its
//!   largest coefficient (the first, on a tie) is positive;
//! - sums are taken in a fixed order on one thread (products in f32 within
//!   a block, blocks added up in f64): the same vectors give the same map
//!   to the last bit, and since logs are ordered by id before anything
//!   else, so do the same logs in any order.
//!
//! A fixed number of iterations rather than a convergence test: where the
//! second and third components carry nearly the same variance, the plane
//! found is one of the (equally good) planes of nearly maximal variance.

/// Rows whose products are summed in f32 before they are added into the
/// f64 sums.
pub const BLOCK: usize = 1024;

/// Subspace iterations.
pub const ITERATIONS: usize = 10;

/// Rows the components are fitted on, at most: every k-th row past that.
/// A thousand unit vectors pin the two directions of most variance down
/// well enough to draw, and keep the fit in a core's cache (and a few
/// milliseconds), whatever the number of logs.
pub const FIT_ROWS: usize = 1024;

/// Seed of the starting directions.
pub const SEED: u64 = 0x005e_ed0f_f10e;

/// Lanes of the dot products: independent accumulators that vectorize, in
/// a fixed order.
const LANES: usize = 16;

/// The plane the logs are projected onto.
#[derive(Debug, Clone, PartialEq)]
pub struct Pca {
    /// The mean vector μ.
    pub mean: Vec<f64>,
    /// Two orthonormal directions, the first of the most variance (zero
    /// when the vectors have none along it).
    pub axes: [Vec<f64>; 2],
    /// The variance along each axis.
    pub variance: [f64; 2],
    /// The total variance of the vectors (the trace of C).
    pub total_variance: f64,
}

impl Pca {
    /// The share of the total variance each axis shows.
    pub fn explained(&self) -> [f64; 2] {
        let t = self.total_variance;
        self.variance.map(|v| if t > 0.0 { (v / t).clamp(0.0, 1.0) } else { 0.0 })
    }

    /// What projects vectors onto the plane.
    pub fn projector(&self) -> Projector {
        Projector {
            axes: [0, 1].map(|k| self.axes[k].iter().map(|&x| x as f32).collect()),
            shift: [0, 1].map(|k| dot64(&self.mean, &self.axes[k])),
        }
    }
}

/// The plane's axes in f32 and the mean's coordinates on them.
pub struct Projector {
    axes: [Vec<f32>; 2],
    shift: [f64; 2],
}

impl Projector {
    /// The coordinates of one vector on the plane.
    pub fn project(&self, row: &[f32]) -> (f64, f64) {
        let (a, b) = dot2(row, &self.axes[0], &self.axes[1]);
        (a - self.shift[0], b - self.shift[1])
    }
}

/// The first two principal components of the rows of `parts` (each a
/// row-major matrix of rows `dims` long: one per group of logs), fitted on
/// at most [`FIT_ROWS`] of them.
pub fn pca(parts: &[&[f32]], dims: usize) -> Pca {
    let n: usize = parts.iter().map(|p| p.len() / dims.max(1)).sum();
    if n == 0 || dims == 0 {
        return Pca {
            mean: vec![0.0; dims],
            axes: [vec![0.0; dims], vec![0.0; dims]],
            variance: [0.0; 2],
            total_variance: 0.0,
        };
    }
    // Every k-th row past FIT_ROWS, in the order of the parts: the same
    // rows whichever way they are split into parts.
    let stride = n.div_ceil(FIT_ROWS);
    let sample: Vec<f32>;
    let parts: Vec<&[f32]> = if stride == 1 {
        parts.to_vec()
    } else {
        sample = rows(parts, dims).step_by(stride).fold(Vec::with_capacity(FIT_ROWS * dims), |mut s, row| {
            s.extend_from_slice(row);
            s
        });
        vec![&sample]
    };
    let parts = parts.as_slice();
    let n = sample_len(parts, dims);
    let mut mean = vec![0f64; dims];
    let mut square = 0f64;
    for row in rows(parts, dims) {
        for (m, &x) in mean.iter_mut().zip(row) {
            *m += x as f64;
        }
        square += row.iter().map(|&x| x as f64 * x as f64).sum::<f64>();
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let total_variance = (square / n as f64 - dot64(&mean, &mean)).max(0.0);

    let mut rng = SplitMix(SEED);
    let mut axes = [(); 2].map(|_| (0..dims).map(|_| rng.unit()).collect::<Vec<f64>>());
    orthonormalize(&mut axes);
    for _ in 0..ITERATIONS {
        axes = times_covariance(parts, dims, &mean, &axes, n);
        orthonormalize(&mut axes);
    }
    // Rayleigh–Ritz: H = Vᵀ C V, its eigenvectors turn V within the plane.
    let cv = times_covariance(parts, dims, &mean, &axes, n);
    let (a, b, c) = (dot64(&axes[0], &cv[0]), dot64(&axes[0], &cv[1]), dot64(&axes[1], &cv[1]));
    let (variance, turn) = eigen2(a, b, c);
    let mut turned: [Vec<f64>; 2] =
        [0, 1].map(|k| (0..dims).map(|j| turn[k][0] * axes[0][j] + turn[k][1] * axes[1][j]).collect());
    for (axis, v) in turned.iter_mut().zip(variance) {
        if v <= 0.0 || norm(axis) == 0.0 {
            axis.iter_mut().for_each(|x| *x = 0.0);
        }
        fix_sign(axis);
    }
    Pca { mean, axes: turned, variance: variance.map(|v| v.max(0.0)), total_variance }
}

fn sample_len(parts: &[&[f32]], dims: usize) -> usize {
    parts.iter().map(|p| p.len() / dims).sum()
}

/// The rows of every part, in order.
fn rows<'a>(parts: &'a [&'a [f32]], dims: usize) -> impl Iterator<Item = &'a [f32]> + 'a {
    parts.iter().flat_map(move |p| p.chunks_exact(dims.max(1)))
}

/// `C · V` for the two columns of V, C the covariance of the rows about
/// `mean`: Σ (xᵢ − μ) pᵢ / n with pᵢ = (xᵢ − μ) · V, as Σ xᵢ pᵢ − μ Σ pᵢ.
/// Within a block the products are f32 (vectors twice as wide), and each
/// block's sums are added into f64.
fn times_covariance(parts: &[&[f32]], dims: usize, mean: &[f64], v: &[Vec<f64>; 2], n: usize) -> [Vec<f64>; 2] {
    let v32 = [0, 1].map(|k| v[k].iter().map(|&x| x as f32).collect::<Vec<f32>>());
    let shift = [dot64(mean, &v[0]), dot64(mean, &v[1])];
    let mut w = [vec![0f64; dims], vec![0f64; dims]];
    let (mut w0, mut w1) = (vec![0f32; dims], vec![0f32; dims]);
    let mut sum_p = [0f64; 2];
    let mut flush = |w0: &mut Vec<f32>, w1: &mut Vec<f32>| {
        for (k, wb) in [w0, w1].into_iter().enumerate() {
            w[k].iter_mut().zip(wb.iter()).for_each(|(a, &b)| *a += b as f64);
            wb.fill(0.0);
        }
    };
    // Blocks of the rows in order, wherever the parts end: the same sums
    // however the rows are split.
    for (i, row) in rows(parts, dims).enumerate() {
        let (a, b) = dot2(row, &v32[0], &v32[1]);
        let p = [a - shift[0], b - shift[1]];
        sum_p[0] += p[0];
        sum_p[1] += p[1];
        let (p0, p1) = (p[0] as f32, p[1] as f32);
        for ((x, y0), y1) in row.iter().zip(w0.iter_mut()).zip(w1.iter_mut()) {
            *y0 += x * p0;
            *y1 += x * p1;
        }
        if (i + 1) % BLOCK == 0 {
            flush(&mut w0, &mut w1);
        }
    }
    flush(&mut w0, &mut w1);
    for k in 0..2 {
        for (w, &m) in w[k].iter_mut().zip(mean) {
            *w = (*w - m * sum_p[k]) / n as f64;
        }
    }
    w
}

/// x · a and x · b, each in [`LANES`] f32 accumulators, summed in f64.
fn dot2(x: &[f32], a: &[f32], b: &[f32]) -> (f64, f64) {
    let mut acc_a = [0f32; LANES];
    let mut acc_b = [0f32; LANES];
    let whole = x.len() - x.len() % LANES;
    let lanes = x[..whole].chunks_exact(LANES).zip(a[..whole].chunks_exact(LANES)).zip(b[..whole].chunks_exact(LANES));
    for ((x, a), b) in lanes {
        for l in 0..LANES {
            acc_a[l] += x[l] * a[l];
            acc_b[l] += x[l] * b[l];
        }
    }
    let mut sa = acc_a.iter().map(|&v| v as f64).sum::<f64>();
    let mut sb = acc_b.iter().map(|&v| v as f64).sum::<f64>();
    for j in whole..x.len() {
        sa += (x[j] * a[j]) as f64;
        sb += (x[j] * b[j]) as f64;
    }
    (sa, sb)
}

/// Gram–Schmidt on the two columns; a column with no length left becomes
/// zero.
fn orthonormalize(v: &mut [Vec<f64>; 2]) {
    scale_to_unit(&mut v[0]);
    let along = dot64(&v[0], &v[1]);
    let (first, second) = v.split_at_mut(1);
    second[0].iter_mut().zip(&first[0]).for_each(|(y, &x)| *y -= along * x);
    scale_to_unit(&mut v[1]);
}

fn scale_to_unit(v: &mut [f64]) {
    let len = norm(v);
    if len > 1e-12 {
        v.iter_mut().for_each(|x| *x /= len);
    } else {
        v.iter_mut().for_each(|x| *x = 0.0);
    }
}

fn norm(v: &[f64]) -> f64 {
    dot64(v, v).sqrt()
}

/// Eigenvalues (largest first) and unit eigenvectors (rows) of the
/// symmetric [[a, b], [b, c]].
fn eigen2(a: f64, b: f64, c: f64) -> ([f64; 2], [[f64; 2]; 2]) {
    let mid = (a + c) / 2.0;
    let r = (((a - c) / 2.0).powi(2) + b * b).sqrt();
    let (l1, l2) = (mid + r, mid - r);
    if b.abs() < 1e-300 {
        return if a >= c { ([a, c], [[1.0, 0.0], [0.0, 1.0]]) } else { ([c, a], [[0.0, 1.0], [1.0, 0.0]]) };
    }
    // (A − λ I) e = 0: e ∝ (b, λ − a).
    let unit = |x: f64, y: f64| {
        let n = (x * x + y * y).sqrt();
        [x / n, y / n]
    };
    let e1 = unit(b, l1 - a);
    ([l1, l2], [e1, [-e1[1], e1[0]]])
}

/// Flips `v` so that its largest coefficient in size (the first, on a tie)
/// is positive.
fn fix_sign(v: &mut [f64]) {
    let mut best = 0usize;
    for (j, x) in v.iter().enumerate() {
        if x.abs() > v[best].abs() {
            best = j;
        }
    }
    if v.get(best).is_some_and(|&x| x < 0.0) {
        v.iter_mut().for_each(|x| *x = -*x);
    }
}

fn dot64(x: &[f64], y: &[f64]) -> f64 {
    x.iter().zip(y).map(|(a, b)| a * b).sum()
}

/// SplitMix64: the starting directions (and the tests' random vectors).
pub(super) struct SplitMix(pub(super) u64);

impl SplitMix {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }

    /// Uniform in [-1, 1), as f32.
    #[cfg(test)]
    pub(super) fn unit_f32(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// `x` rounded to 5 decimals, for JSON (`-0` as `0`).
pub fn coordinate(x: f64) -> Coordinate {
    let r = (x * 1e5).round() / 1e5;
    Coordinate(if r == 0.0 { 0.0 } else { r })
}

/// A coordinate as JSON writes it.
pub struct Coordinate(f64);

impl std::fmt::Display for Coordinate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::super::density::normalize;
    use super::*;

    /// `n` unit vectors in `dims` dimensions spread mostly along two
    /// directions (e₀ by 3, e₁ by 1.5) with a little noise elsewhere.
    fn plane(n: usize, dims: usize, seed: u64) -> Vec<f32> {
        let mut rng = SplitMix(seed);
        let mut x = Vec::with_capacity(n * dims);
        for _ in 0..n {
            let mut v: Vec<f32> = (0..dims).map(|_| 0.05 * rng.unit() as f32).collect();
            v[0] += 3.0 * rng.unit() as f32;
            v[1] += 1.5 * rng.unit() as f32;
            v[2] += 4.0; // an offset: the mean is taken out
            assert!(normalize(&mut v));
            x.extend(v);
        }
        x
    }

    #[test]
    fn the_same_vectors_give_the_same_map_to_the_last_bit() {
        let (n, dims) = (3000, 48);
        let x = plane(n, dims, 11);
        let one = pca(&[&x], dims);
        assert_eq!(pca(&[&x], dims), one);
        // However the rows are split into groups.
        let (a, b) = x.split_at(1234 * dims);
        let split = pca(&[a, b], dims);
        assert_eq!(split, one);
        let coords: Vec<(f64, f64)> = x.chunks(dims).map(|r| one.projector().project(r)).collect();
        let again: Vec<(f64, f64)> = x.chunks(dims).map(|r| split.projector().project(r)).collect();
        assert_eq!(coords, again);
        // Signs are fixed: the largest coefficient of each axis is positive.
        for axis in &one.axes {
            let big = axis.iter().copied().fold(0f64, |m, v| if v.abs() > m.abs() { v } else { m });
            assert!(big > 0.0, "{axis:?}");
        }
    }

    #[test]
    fn past_the_fit_sample_the_map_does_not_depend_on_the_groups_either() {
        let (n, dims) = (FIT_ROWS * 2 + 123, 8);
        let x = plane(n, dims, 3);
        let one = pca(&[&x], dims);
        let (a, rest) = x.split_at(777 * dims);
        let (b, c) = rest.split_at(FIT_ROWS * dims);
        assert_eq!(pca(&[a, b, c], dims), one);
        assert!(one.axes[0][0].abs() > 0.9, "{:?}", one.axes[0]);
    }

    #[test]
    fn finds_the_directions_of_most_variance() {
        let dims = 16;
        let x = plane(FIT_ROWS, dims, 5); // all of them fitted on
        let p = pca(&[&x], dims);
        // The data spreads along e₀ then e₁ (tilted towards e₂ by the
        // normalization); the axes are orthonormal and ordered.
        assert!(p.axes[0][0].abs() > 0.9, "{:?}", p.axes[0]);
        assert!(p.axes[1][1].abs() > 0.9, "{:?}", p.axes[1]);
        assert!(dot64(&p.axes[0], &p.axes[1]).abs() < 1e-9);
        assert!((norm(&p.axes[0]) - 1.0).abs() < 1e-9 && (norm(&p.axes[1]) - 1.0).abs() < 1e-9);
        assert!(p.variance[0] > p.variance[1] && p.variance[1] > 0.0, "{:?}", p.variance);
        let [e0, e1] = p.explained();
        assert!(e0 + e1 > 0.95 && e0 + e1 <= 1.0 + 1e-9, "{e0} {e1}");
        // The projections have the mean taken out and the variance found.
        let coords: Vec<(f64, f64)> = x.chunks(dims).map(|r| p.projector().project(r)).collect();
        let mx = coords.iter().map(|c| c.0).sum::<f64>() / coords.len() as f64;
        let vx = coords.iter().map(|c| (c.0 - mx).powi(2)).sum::<f64>() / coords.len() as f64;
        assert!(mx.abs() < 1e-9 && (vx - p.variance[0]).abs() < 1e-6 * p.variance[0].max(1.0), "{mx} {vx}");
    }

    #[test]
    fn degenerate_inputs_give_a_flat_map() {
        assert_eq!(pca(&[], 4).variance, [0.0, 0.0]);
        let same = [0.6f32, 0.8, 0.6, 0.8, 0.6, 0.8];
        let p = pca(&[&same], 2);
        assert_eq!(p.projector().project(&same[..2]), (0.0, 0.0));
        let one_dim = [1f32, -1.0, 1.0];
        let p = pca(&[&one_dim], 1);
        assert!(p.variance[0] > 0.0 && p.variance[1] == 0.0 && p.axes[1] == [0.0]);
        assert_eq!(coordinate(-0.000001).to_string(), "0");
        assert_eq!(coordinate(0.123456).to_string(), "0.12346");
    }
}
