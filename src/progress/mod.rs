//! What a run shows while it goes: on a terminal a bar per node (indicatif)
//! with done/total, rate, ETA, errors, cost and any retry wait; elsewhere
//! (CI logs) a plain line per node at most every [`PLAIN_EVERY`] while it
//! progresses and one when it ends; `--json` event lines for machines;
//! nothing with `--quiet`. Then [`summary`] prints the end of the run.
//! Whatever the display, the same events go to the run's [`log`]
//! (`events.jsonl` in its folder), which `flow view --serve` follows.
//!
//! The engine sends events (started, progress, totals, finished) and hands
//! over each running node's [`flow_engine::Meter`], which the display reads
//! as often as it redraws: a node stuck in a 429's retry wait emits nothing,
//! and that is exactly when it must show something.

pub mod log;
mod status;
pub mod summary;

use crate::out::{errln, outln};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use tokio::sync::mpsc::UnboundedReceiver;

use flow_engine::cache::Store;
use flow_engine::{Plan, RunEvent};

use log::EventLog;

use status::NodeState;

/// How often a plain line may repeat for one node.
pub const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// How the run is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Bars on a terminal.
    Bars,
    /// Lines for a log.
    Plain,
    /// JSON lines on stdout.
    Json,
    /// Nothing but errors.
    Quiet,
}

impl Mode {
    /// `--json` and `--quiet` win; else bars when standard error is a terminal.
    pub fn pick(json: bool, quiet: bool) -> Self {
        if json {
            Mode::Json
        } else if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bars
        } else {
            Mode::Plain
        }
    }
}

/// Whether to write colour: on a terminal, unless `NO_COLOR` is set
/// (<https://no-color.org>: any non-empty value).
pub fn colour_on(stream_is_terminal: bool) -> bool {
    stream_is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

pub struct Display {
    pub mode: Mode,
    colour: bool,
    nodes: Vec<NodeState>,
    by_name: HashMap<String, usize>,
    multi: Option<MultiProgress>,
    bars: Vec<ProgressBar>,
    width: usize,
    spec: String,
    /// Where the run's folder is, once it starts: its event log goes there.
    store: Option<Store>,
    log: Option<EventLog>,
}

impl Display {
    pub fn new(plan: &Plan, mode: Mode) -> Self {
        let nodes: Vec<NodeState> = plan.nodes.iter().map(|n| NodeState::new(&n.name, n.kind)).collect();
        let by_name = nodes.iter().enumerate().map(|(i, n)| (n.name.clone(), i)).collect();
        let width = plan.nodes.iter().map(|n| n.name.len()).max().unwrap_or(4);
        let colour = mode == Mode::Bars && colour_on(true);
        let spec = plan.spec_name.clone();
        let mut d =
            Self { mode, colour, nodes, by_name, multi: None, bars: Vec::new(), width, spec, store: None, log: None };
        if mode == Mode::Bars {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            for n in &d.nodes {
                let bar = multi.add(ProgressBar::new_spinner().with_style(d.style(false, false)));
                bar.set_prefix(n.name.clone());
                bar.set_message("waiting");
                d.bars.push(bar);
            }
            d.multi = Some(multi);
        }
        d
    }

    /// Also writes the run's event log, in its folder of `store`.
    pub fn with_log(mut self, store: Store) -> Self {
        self.store = Some(store);
        self
    }

    /// The bar's look: a bar with a total, a spinner without, a plain
    /// line once finished.
    fn style(&self, total: bool, finished: bool) -> ProgressStyle {
        let w = self.width;
        let template = match (finished, total, self.colour) {
            (true, ..) => format!("  {{prefix:{w}}}  {{msg}}"),
            (false, true, true) => format!("{{spinner}} {{prefix:{w}}}  [{{bar:28.cyan/blue}}] {{msg}}"),
            (false, true, false) => format!("{{spinner}} {{prefix:{w}}}  [{{bar:28}}] {{msg}}"),
            (false, false, _) => format!("{{spinner}} {{prefix:{w}}}  {{msg}}"),
        };
        ProgressStyle::with_template(&template).expect("valid template").progress_chars("=> ")
    }

    /// Renders events until the run closes the channel.
    pub async fn consume(mut self, mut rx: UnboundedReceiver<RunEvent>) -> Self {
        let mut tick = tokio::time::interval(match self.mode {
            Mode::Bars => Duration::from_millis(200),
            // The log's held-back progress waits at most this.
            _ => log::PROGRESS_EVERY,
        });
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Some(ev) => self.on_event(ev),
                    None => break,
                },
                _ = tick.tick() => self.on_tick(),
            }
        }
        if let Some(multi) = &self.multi {
            let _ = multi.clear();
        }
        self
    }

    fn on_event(&mut self, ev: RunEvent) {
        match &ev {
            RunEvent::RunStarted { run_id } => {
                self.log = self.store.as_ref().and_then(|s| EventLog::open(&s.run_dir(run_id)));
            }
            RunEvent::Records { node, records } => {
                if let Some(log) = &mut self.log {
                    log.records(node, records);
                }
                return;
            }
            _ => {}
        }
        if self.mode == Mode::Json || self.log.is_some() {
            if let Some(line) = self.event_json(&ev) {
                if self.mode == Mode::Json {
                    outln!("{line}");
                }
                if let Some(log) = &mut self.log {
                    let node = match &ev {
                        RunEvent::RunStarted { .. } | RunEvent::Records { .. } | RunEvent::Note { .. } => None,
                        RunEvent::NodeStarted { node, .. }
                        | RunEvent::Progress { node, .. }
                        | RunEvent::Total { node, .. } => Some(node.as_str()),
                        RunEvent::NodeFinished(r) => Some(r.name.as_str()),
                    };
                    log.event(node, matches!(ev, RunEvent::Progress { .. }), &line);
                }
            }
        }
        match ev {
            RunEvent::RunStarted { .. } | RunEvent::Records { .. } => {}
            RunEvent::Note { text } => match self.mode {
                Mode::Plain => errln!("{text}"),
                Mode::Bars => match &self.multi {
                    Some(multi) => {
                        let _ = multi.println(&text);
                    }
                    None => errln!("{text}"),
                },
                Mode::Json | Mode::Quiet => {}
            },
            RunEvent::NodeStarted { node, cached, total, meter, .. } => {
                let Some(&i) = self.by_name.get(&node) else { return };
                let n = &mut self.nodes[i];
                n.started = Some(Instant::now());
                n.cached = cached;
                n.total = total;
                n.meter = meter;
                match self.mode {
                    Mode::Plain => {
                        let expected =
                            total.filter(|_| !cached).map(|t| format!(" ({t} records expected)")).unwrap_or_default();
                        errln!("[{node}] {}: {}{expected}", n.kind, if cached { "cached" } else { "started" });
                        n.last_line_at = Some(Instant::now());
                    }
                    Mode::Bars => {
                        let bar = &self.bars[i];
                        bar.enable_steady_tick(Duration::from_millis(120));
                        if let Some(t) = total {
                            bar.set_length(t);
                            bar.set_style(self.style(true, false));
                        }
                        self.redraw(i);
                    }
                    _ => {}
                }
            }
            RunEvent::Progress { node, records } => {
                let Some(&i) = self.by_name.get(&node) else { return };
                self.nodes[i].done = records;
                if self.mode == Mode::Bars {
                    self.redraw(i);
                }
            }
            RunEvent::Total { node, total } => {
                let Some(&i) = self.by_name.get(&node) else { return };
                self.nodes[i].total = Some(total);
                if self.mode == Mode::Bars {
                    self.bars[i].set_length(total);
                    self.bars[i].set_style(self.style(true, false));
                    self.redraw(i);
                }
            }
            RunEvent::NodeFinished(r) => {
                let Some(&i) = self.by_name.get(&r.name) else { return };
                let n = &mut self.nodes[i];
                n.finished = true;
                n.done = r.records_out;
                let line = summary::finished_line(&r, n.rate().filter(|_| !n.cached));
                match self.mode {
                    Mode::Plain => errln!("[{}] {line}", r.name),
                    Mode::Bars => {
                        let bar = &self.bars[i];
                        bar.set_style(self.style(false, true));
                        bar.finish_with_message(line);
                    }
                    _ => {}
                }
            }
        }
    }

    /// Redraws the bars (a retry wait counts down), or prints the plain
    /// lines that are due: a node that moved (records or calls) since its
    /// last line, or that is waiting to retry, at most every [`PLAIN_EVERY`].
    fn on_tick(&mut self) {
        if let Some(log) = &mut self.log {
            log.tick();
        }
        match self.mode {
            Mode::Bars => {
                for i in 0..self.nodes.len() {
                    if self.nodes[i].started.is_some() && !self.nodes[i].finished {
                        self.redraw(i);
                    }
                }
            }
            Mode::Plain => {
                for n in self.nodes.iter_mut().filter(|n| n.started.is_some() && !n.finished && !n.cached) {
                    if n.last_line_at.is_some_and(|t| t.elapsed() < PLAIN_EVERY) {
                        continue;
                    }
                    let now = (n.done, n.calls_seen());
                    let moved = n.last_line != Some(now) && now != (0, 0);
                    let waiting = n.meter.as_ref().is_some_and(|m| m.backoff().is_some());
                    if moved || waiting {
                        errln!("{}", n.line());
                        n.last_line = Some(now);
                        n.last_line_at = Some(Instant::now());
                    }
                }
            }
            Mode::Json | Mode::Quiet => {}
        }
    }

    fn redraw(&self, i: usize) {
        let n = &self.nodes[i];
        let bar = &self.bars[i];
        if n.finished {
            return;
        }
        bar.set_position(n.done);
        let mut parts = vec![if n.cached { format!("replaying cached output: {}", n.count()) } else { n.count() }];
        parts.extend(n.figures(self.colour));
        bar.set_message(parts.join(" · "));
    }

    fn event_json(&self, ev: &RunEvent) -> Option<serde_json::Value> {
        Some(match ev {
            RunEvent::RunStarted { run_id } => json!({"event": "run_started", "run_id": run_id, "spec": self.spec}),
            RunEvent::Records { .. } => return None,
            RunEvent::NodeStarted { node, kind, cached, total, .. } => {
                json!({"event": "node_started", "node": node, "kind": kind, "cached": cached, "total": total})
            }
            RunEvent::Progress { node, records } => {
                let n = &self.nodes[*self.by_name.get(node)?];
                let calls = n.meter.as_ref().and_then(|m| m.snapshot());
                let backoff = n
                    .meter
                    .as_ref()
                    .and_then(|m| m.backoff())
                    .map(|b| json!({"status": b.status, "retry_in_ms": b.retry_in.as_millis() as u64}));
                json!({
                    "event": "progress",
                    "node": node,
                    "records": records,
                    "total": n.total,
                    "rate": rate(n.started, *records),
                    "errors": calls.map_or(0, |c| c.errors),
                    "cost_usd": calls.and_then(|c| c.cost_usd),
                    "backing_off": backoff,
                })
            }
            RunEvent::Total { node, total } => json!({"event": "total", "node": node, "total": total}),
            RunEvent::NodeFinished(r) => json!({"event": "node_finished", "node": r}),
            RunEvent::Note { text } => json!({"event": "note", "text": text}),
        })
    }
}

/// Records per second since `started`, to two decimals, once there is
/// something to say.
fn rate(started: Option<Instant>, records: u64) -> Option<f64> {
    let secs = started?.elapsed().as_secs_f64();
    (secs > 0.2 && records > 0).then(|| (records as f64 / secs * 100.0).round() / 100.0)
}
