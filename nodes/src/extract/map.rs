//! `projection.json`: every log as a point of a 2-D map, with its density
//! and whether it was picked, and a histogram of the densities, for the
//! report's extract view (and anyone who wants to plot the logs).
//!
//! The points are the distinct logs (copies collapsed), projected on one
//! plane ([`projection::pca`]) fitted over all groups at once, so groups
//! that are far apart in embedding space are far apart on the map. The
//! plane is fitted before the densities, on a bounded sample, and each log
//! is projected (two dot products) as its unit vector is made, while it is
//! in the cache: about 8 ms for 10,000 logs of 384 dimensions, against
//! some 200 ms of densities. At most
//! [`MAX_POINTS`] are written: past that, every pick and a sample of the
//! other logs (those whose hash of group and id is smallest: the same
//! logs on every run, spread evenly over clusters), and the file says
//! so (`sampled`). The histogram counts every distinct log.

use std::io::Write as _;

use serde_json::json;

use flow_engine::Artifact;

use super::density::Density;
use super::logs::Log;
use super::projection::{self, coordinate, Pca, Projector};
use super::Strategy;

/// The artifact's name.
pub const PROJECTION_JSON: &str = "projection.json";

/// Points written at most.
pub const MAX_POINTS: usize = 20_000;

/// Bins of the density histogram.
pub const BINS: usize = 40;

/// The logs of every group, as the map needs them, gathered group by group.
pub struct LogMap {
    pca: Pca,
    plane: Projector,
    groups: Vec<Group>,
}

struct Group {
    function: Option<String>,
    ids: Vec<String>,
    statuses: Vec<String>,
    density: Vec<f64>,
    /// Whether the log could be picked (a success with an answer).
    success: Vec<bool>,
    /// The rank of a pick, 0 for the others.
    rank: Vec<u32>,
    /// Where the log is on the map.
    at: Vec<(f64, f64)>,
}

impl LogMap {
    /// The map of `logs`, whose unit vectors (`dims` long) are the rows of
    /// `x`, in the order of groups and ids (`usable`: the vector has a
    /// direction): its plane is fitted on every k-th log, up to
    /// [`projection::FIT_ROWS`] of them, before the groups are added.
    pub fn fit(x: &[f32], usable: &[bool], dims: usize) -> LogMap {
        let n = usable.len();
        let stride = n.div_ceil(projection::FIT_ROWS).max(1);
        let mut sample = Vec::with_capacity(n.min(projection::FIT_ROWS) * dims);
        for i in (0..n).step_by(stride) {
            // A log without a direction fails the node later, naming it.
            if usable[i] {
                sample.extend_from_slice(&x[i * dims..(i + 1) * dims]);
            }
        }
        let pca = projection::pca(&[&sample], dims);
        LogMap { plane: pca.projector(), pca, groups: Vec::new() }
    }

    /// What projects a log's unit vector onto the map.
    pub fn plane(&self) -> &Projector {
        &self.plane
    }

    /// Adds a group: its logs, where they are on the map (`at`), their
    /// densities, which could be picked and the picks (indexes, by rank).
    pub fn add(&mut self, group: &[Log], at: Vec<(f64, f64)>, d: &Density, success: &[bool], picks: &[usize]) {
        let mut rank = vec![0u32; group.len()];
        for (r, &i) in picks.iter().enumerate() {
            rank[i] = r as u32 + 1;
        }
        self.groups.push(Group {
            function: group.first().and_then(|l| l.group.clone()),
            ids: group.iter().map(|l| l.id.clone()).collect(),
            statuses: group.iter().map(|l| l.status.clone()).collect(),
            density: d.density.clone(),
            success: success.to_vec(),
            rank,
            at,
        });
    }

    /// `projection.json` for vectors of `dims` dimensions.
    pub fn artifact(self, strategy: Strategy, dims: usize) -> Artifact {
        let pca = &self.pca;
        let total: usize = self.groups.iter().map(|g| g.ids.len()).sum();
        let shown = self.shown();
        let head = json!({
            "format": 1,
            "strategy": strategy.name(),
            "logs": total,
            "shown": shown.iter().flatten().filter(|&&s| s).count(),
            "max_points": MAX_POINTS,
            "sampled": total > MAX_POINTS,
            "dimensions": (dims > 0).then_some(dims),
            "projection": {
                "method": "pca",
                "about": "each log's unit embedding, mean taken out, on the first two principal components of the \
                          logs (fitted on at most `fitted_on` of them, every k-th in the order of groups and ids; \
                          subspace iteration from fixed starting directions; a component's largest coefficient \
                          is positive)",
                "fitted_on": projection::FIT_ROWS,
                "iterations": projection::ITERATIONS,
                "explained_variance": pca.explained().map(round),
            },
        });
        // The histogram's lists on one line each, a point a line: a file
        // that reads well and stays small.
        let mut text = serde_json::to_vec_pretty(&head).expect("json");
        text.truncate(text.len() - 2); // "\n}"
        text.extend_from_slice(b",\n  \"histogram\": ");
        serde_json::to_writer(&mut text, &self.histogram()).expect("json");
        text.extend_from_slice(b",\n  \"points\": [");
        let mut first = true;
        for (g, keep) in self.groups.iter().zip(&shown) {
            let function = serde_json::to_string(&g.function).expect("json");
            for (i, _) in keep.iter().enumerate().filter(|(_, &k)| k) {
                let (x, y) = g.at[i];
                text.extend_from_slice(if first { b"\n    " } else { b",\n    " });
                first = false;
                point(
                    &mut text,
                    &g.ids[i],
                    &function,
                    &g.statuses[i],
                    g.success[i],
                    g.density[i],
                    (x, y),
                    g.rank[i],
                    strategy,
                )
                .expect("writing to memory");
            }
        }
        text.extend_from_slice(if first { b"]\n}\n" } else { b"\n  ]\n}\n" });
        Artifact { name: PROJECTION_JSON.into(), bytes: text }
    }

    /// Which logs of each group are written: all of them up to
    /// [`MAX_POINTS`], else the picks and the other logs of smallest hash.
    fn shown(&self) -> Vec<Vec<bool>> {
        let total: usize = self.groups.iter().map(|g| g.ids.len()).sum();
        let mut shown: Vec<Vec<bool>> = self.groups.iter().map(|g| vec![total <= MAX_POINTS; g.ids.len()]).collect();
        if total <= MAX_POINTS {
            return shown;
        }
        let mut left = MAX_POINTS;
        let mut others = Vec::with_capacity(total);
        for (gi, g) in self.groups.iter().enumerate() {
            let key = g.function.as_deref().unwrap_or("");
            for (i, id) in g.ids.iter().enumerate() {
                if g.rank[i] > 0 && left > 0 {
                    shown[gi][i] = true;
                    left -= 1;
                } else if g.rank[i] == 0 {
                    let mut h = blake3::Hasher::new();
                    h.update(key.as_bytes()).update(&[0]).update(id.as_bytes());
                    others.push((*h.finalize().as_bytes(), gi, i));
                }
            }
        }
        if left < others.len() {
            others.select_nth_unstable(left);
            others.truncate(left);
        }
        for (_, gi, i) in others {
            shown[gi][i] = true;
        }
        shown
    }

    /// [`BINS`] equal bins from the least density to the most, counting
    /// every distinct log, the successful ones and the picks.
    fn histogram(&self) -> serde_json::Value {
        let all = || self.groups.iter().flat_map(|g| g.density.iter().copied());
        let (lo, hi) = all().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), d| (lo.min(d), hi.max(d)));
        if lo > hi {
            return json!(null);
        }
        let bins = if hi > lo { BINS } else { 1 };
        let width = (hi - lo) / bins as f64;
        let (mut logs, mut successful, mut picked) = (vec![0u64; bins], vec![0u64; bins], vec![0u64; bins]);
        for g in &self.groups {
            for (i, &d) in g.density.iter().enumerate() {
                let b = if width > 0.0 { (((d - lo) / width) as usize).min(bins - 1) } else { 0 };
                logs[b] += 1;
                successful[b] += g.success[i] as u64;
                picked[b] += (g.rank[i] > 0) as u64;
            }
        }
        json!({"from": round(lo), "to": round(hi), "logs": logs, "successful": successful, "picked": picked})
    }
}

/// Checks that `bytes` (the file read back, by the report) is one JSON
/// value, without building it: 20,000 points as `Value`s weigh tens of MiB.
pub fn check(bytes: &[u8]) -> Result<(), serde_json::Error> {
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).map(|_| ())
}

/// One point, as a line of JSON; `function` is JSON already.
#[allow(clippy::too_many_arguments)]
fn point(
    out: &mut Vec<u8>,
    id: &str,
    function: &str,
    status: &str,
    success: bool,
    density: f64,
    (x, y): (f64, f64),
    rank: u32,
    strategy: Strategy,
) -> std::io::Result<()> {
    out.write_all(b"{\"id\": ")?;
    serde_json::to_writer(&mut *out, id)?;
    write!(out, ", \"function\": {function}, \"status\": ")?;
    serde_json::to_writer(&mut *out, status)?;
    write!(out, ", \"success\": {success}, \"density\": ")?;
    serde_json::to_writer(&mut *out, &round(density))?;
    write!(out, ", \"x\": {}, \"y\": {}, \"picked\": ", coordinate(x), coordinate(y))?;
    match rank {
        0 => out.write_all(b"null}"),
        r => write!(out, "{{\"strategy\": \"{}\", \"rank\": {r}}}}}", strategy.name()),
    }
}

fn round(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::super::density;
    use super::*;

    /// Logs in groups (`function`, how many, the picks), in 3 dimensions,
    /// every fifth failed, with densities 0, 1, 2...: the map fitted on
    /// them, and each group added as `extract` adds it.
    fn map_of(groups: &[(&str, usize, &[usize])]) -> LogMap {
        let mut logs = Vec::new();
        let mut x = Vec::new();
        for &(function, n, _) in groups {
            let list: Vec<Log> = (0..n)
                .map(|i| Log {
                    id: format!("{function}-{i:06}"),
                    group: Some(function.into()),
                    success: i % 5 != 0,
                    answered: true,
                    status: if i % 5 == 0 { "FAIL" } else { "SUCCESS" }.into(),
                    at: 0,
                    dims: Some(3),
                    text: None,
                    embedded: None,
                    duplicates: 0,
                })
                .collect();
            for i in 0..n {
                let mut v = vec![1.0, (i % 7) as f32 / 10.0, (i % 3) as f32 / 10.0];
                density::normalize(&mut v);
                x.extend(v);
            }
            logs.push(list);
        }
        let total: usize = logs.iter().map(Vec::len).sum();
        let mut map = LogMap::fit(&x, &vec![true; total], 3);
        let mut row = 0;
        for (&(_, n, picks), group) in groups.iter().zip(&logs) {
            let at = (row..row + n).map(|i| map.plane().project(&x[i * 3..(i + 1) * 3])).collect();
            row += n;
            let d = Density { density: (0..n).map(|i| i as f64).collect(), neighbours: vec![0; n] };
            let success: Vec<bool> = group.iter().map(|l| l.success).collect();
            map.add(group, at, &d, &success, picks);
        }
        map
    }

    fn written(map: LogMap) -> Value {
        let a = map.artifact(Strategy::Steady, 3);
        assert_eq!(a.name, PROJECTION_JSON);
        serde_json::from_slice(&a.bytes).unwrap()
    }

    #[test]
    fn every_log_is_a_point_with_its_pick() {
        let v = written(map_of(&[("a", 30, &[12, 3]), ("b", 10, &[])]));
        let points = v["points"].as_array().unwrap();
        assert_eq!((points.len(), &v["logs"], &v["shown"], &v["sampled"]), (40, &json!(40), &json!(40), &json!(false)));
        assert_eq!(points[12]["picked"], json!({"strategy": "steady", "rank": 1}));
        assert_eq!(points[3]["picked"]["rank"], 2);
        assert_eq!(points.iter().filter(|p| !p["picked"].is_null()).count(), 2);
        assert_eq!(
            (&points[35]["id"], &points[35]["function"], &points[35]["status"]),
            (&json!("b-000005"), &json!("b"), &json!("FAIL"))
        );
        assert!(points.iter().any(|p| p["x"] != 0.0) && points.iter().any(|p| p["y"] != 0.0), "{points:?}");
        let h = &v["histogram"];
        let sum = |k: &str| h[k].as_array().unwrap().iter().map(|c| c.as_u64().unwrap()).sum::<u64>();
        assert_eq!((sum("logs"), sum("successful"), sum("picked")), (40, 32, 2));
        assert_eq!((&h["from"], &h["to"]), (&json!(0.0), &json!(29.0)));
    }

    #[test]
    fn past_the_cap_the_picks_and_the_same_sample_are_written() {
        let groups: [(&str, usize, &[usize]); 2] = [("a", MAX_POINTS, &[7, MAX_POINTS - 1]), ("b", 500, &[499])];
        let v = written(map_of(&groups));
        assert_eq!(
            (&v["logs"], &v["shown"], &v["sampled"]),
            (&json!(MAX_POINTS + 500), &json!(MAX_POINTS), &json!(true))
        );
        let points = v["points"].as_array().unwrap();
        assert_eq!(points.len(), MAX_POINTS);
        let picked: Vec<&str> =
            points.iter().filter(|p| !p["picked"].is_null()).map(|p| p["id"].as_str().unwrap()).collect();
        assert_eq!(picked, ["a-000007", "a-019999", "b-000499"]);
        assert!(points.iter().any(|p| p["function"] == "b" && p["picked"].is_null()), "the sample spans groups");
        assert_eq!(written(map_of(&groups)), v);
    }
}
