//! Which logs of a group become examples, given their densities. Only
//! successful logs are candidates; ties in density go to the smaller id
//! (the logs of a group are ordered by id, so: the smaller index).

use super::density::{dot, Density};

/// `steady`: the centres of distinct dense clusters. Successful logs with
/// at least `min_neighbours` neighbours, densest first; a log within the
/// neighbourhood of one already taken (similarity ≥ `threshold`) is
/// skipped, so each pick is a real log at the heart of its own cluster,
/// not a near-copy of an earlier pick. At most `top_k`.
pub fn steady(
    x: &[f32],
    dims: usize,
    d: &Density,
    success: &[bool],
    threshold: f32,
    top_k: usize,
    min_neighbours: u64,
) -> Vec<usize> {
    let mut candidates: Vec<usize> =
        (0..success.len()).filter(|&i| success[i] && d.neighbours[i] >= min_neighbours).collect();
    candidates.sort_by(|&a, &b| d.density[b].total_cmp(&d.density[a]).then(a.cmp(&b)));
    let row = |i: usize| &x[i * dims..(i + 1) * dims];
    let mut picks: Vec<usize> = Vec::new();
    for i in candidates {
        if picks.len() == top_k {
            break;
        }
        if picks.iter().all(|&p| dot(row(p), row(i)) < threshold) {
            picks.push(i);
        }
    }
    picks
}

/// `anomaly`: the sparsest successful logs, rare but successful patterns.
/// At most `top_k`.
pub fn anomaly(d: &Density, success: &[bool], top_k: usize) -> Vec<usize> {
    let mut candidates: Vec<usize> = (0..success.len()).filter(|&i| success[i]).collect();
    candidates.sort_by(|&a, &b| d.density[a].total_cmp(&d.density[b]).then(a.cmp(&b)));
    candidates.truncate(top_k);
    candidates
}

#[cfg(test)]
mod tests {
    use super::super::density::{density, normalize};
    use super::*;

    /// Three clusters of 2-d directions (at 0°, 90° and 200°, of 9, 6 and
    /// 4 logs, 2° apart), a failing cluster of 12 at 300°, and two loners.
    fn plane() -> (Vec<f32>, Vec<bool>, Vec<&'static str>) {
        let mut x = Vec::new();
        let mut ok = Vec::new();
        let mut what = Vec::new();
        let mut put = |deg: f32, success: bool, label: &'static str| {
            let mut v = vec![deg.to_radians().cos(), deg.to_radians().sin()];
            normalize(&mut v);
            x.extend(v);
            ok.push(success);
            what.push(label);
        };
        for k in 0..9 {
            put(k as f32 * 2.0 - 8.0, true, if k == 4 { "A-centre" } else { "A" });
        }
        for k in 0..6 {
            put(90.0 + k as f32 * 2.0, true, "B");
        }
        for k in 0..4 {
            put(200.0 + k as f32 * 2.0, true, "C");
        }
        for k in 0..12 {
            put(300.0 + k as f32 * 0.5, false, "FAIL");
        }
        put(140.0, true, "rare-1");
        put(250.0, true, "rare-2");
        (x, ok, what)
    }

    #[test]
    fn steady_takes_one_centre_per_cluster_and_anomaly_the_loners() {
        let (x, ok, what) = plane();
        // ε such that a cluster is one neighbourhood: cos 20° ≈ 0.94.
        let threshold = 20f32.to_radians().cos();
        let d = density(&x, 2, &vec![1; ok.len()], threshold, 2, 8);
        let picks = steady(&x, 2, &d, &ok, threshold, 50, 2);
        let names: Vec<&str> = picks.iter().map(|&i| what[i]).collect();
        assert_eq!(names, ["A-centre", "B", "C"]);
        let rare: Vec<&str> = anomaly(&d, &ok, 2).iter().map(|&i| what[i]).collect();
        assert_eq!(rare, ["rare-1", "rare-2"]);
        // top_k caps both; FAIL logs are never candidates.
        assert_eq!(steady(&x, 2, &d, &ok, threshold, 1, 2).len(), 1);
        assert!(anomaly(&d, &ok, 100).iter().all(|&i| ok[i]));
    }

    #[test]
    fn ties_go_to_the_smaller_index() {
        let d = Density { density: vec![1.0, 0.5, 1.0, 0.5], neighbours: vec![3; 4] };
        let x = [1.0, 0.0, 0.0, 1.0, -1.0, 0.0, 0.0, -1.0];
        assert_eq!(steady(&x, 2, &d, &[true; 4], 0.9, 4, 0), [0, 2, 1, 3]);
        assert_eq!(anomaly(&d, &[true; 4], 4), [1, 3, 0, 2]);
    }
}
