//! How `flow plan` shows a backend: its identity and its price, and what
//! the next run is expected to send it and cost.

use std::collections::BTreeMap;

use flow_engine::calls::BackendCalls;
use flow_engine::{BackendSpec, Price, Provider};
use serde_json::{json, Value};

use super::price::{self, Prices};
use super::{app, withheld_key, Usage};

/// How `flow plan` shows backend `name`: its identity (provider, model,
/// where it is, Azure's deployment and version) and its price, or why its
/// calls will cost `null`.
pub fn describe(name: &str, spec: &BackendSpec, prices: &BTreeMap<String, Price>) -> String {
    let mut out = format!("backend `{name}`: {} `{}`", spec.provider.name(), spec.model());
    if spec.provider.is_remote() {
        out.push_str(&format!(" at {}", flow_engine::spec::url::redact(spec.base_url())));
    }
    if let Some(command) = spec.command.as_ref().filter(|_| spec.provider == Provider::Exec) {
        out.push_str(&format!(" running `{}`", command.join(" ")));
    }
    if spec.provider == Provider::Azure {
        out.push_str(&format!(" (deployment `{}`, api-version {})", spec.request_model(), spec.api_version()));
    }
    let price = live_price(spec, &Prices::new(prices.clone()));
    match price {
        Some((p, source)) => out.push_str(&format!(
            "; ${}/${} per million input/output tokens ({})",
            p.input,
            p.output,
            match source {
                price::PriceSource::Spec => "from `prices:`",
                price::PriceSource::BuiltIn => "built in",
            }
        )),
        None if app::is_app(spec.provider) => {
            out.push_str("; cost: what the app reports (`cost_usd`, or the `cost:` path), else null (or `prices:`)")
        }
        None if price::is_providers_own(spec) => out.push_str("; no known price: cost null (add it under `prices:`)"),
        None => out.push_str("; not the provider's own API, so no built-in price: cost null (add it under `prices:`)"),
    }
    if let Some(b) = &spec.batch {
        let half = match price {
            Some((p, _)) => {
                let h = price::batched(p, true);
                format!("${}/${} per million input/output tokens (half the live price)", h.input, h.output)
            }
            None => "half the live price".to_string(),
        };
        out.push_str(&format!(
            "\n  batch API: {half}; up to {} requests a batch, polled every {}s; results within 24 h",
            b.max_requests(),
            match (spec.provider, b.poll) {
                (Provider::Sim, None) => 0.1,
                _ => b.poll().as_secs_f64(),
            }
        ));
    }
    if let Some(w) = withheld_key(spec) {
        out.push_str(&format!(
            "\n  key `{}` is not sent to {}: it is for {}'s own API (`send_key_anywhere: true` sends it; a key under another name goes anywhere)",
            w.var,
            w.host,
            w.owner.name()
        ));
    }
    out
}

/// The live price a backend's calls are billed at, as the run figures it:
/// the offline `sim` and a local model cost nothing unless `prices:` says.
fn live_price(spec: &BackendSpec, prices: &Prices) -> Option<(Price, price::PriceSource)> {
    match spec.provider {
        Provider::Sim | Provider::Local => match prices.cost_override(spec.model(), Usage::default()) {
            Some(_) => prices.for_backend(spec, spec.model()),
            None => Some((Price { input: 0.0, output: 0.0 }, price::PriceSource::BuiltIn)),
        },
        _ => prices.for_backend(spec, spec.model()),
    }
}

/// Whether `flow plan` lists backend `spec`: a network one, a batch one,
/// or one that costs something (a priced `sim`, for a demo).
pub fn shown_in_plan(spec: &BackendSpec, prices: &BTreeMap<String, Price>) -> bool {
    let priced = live_price(spec, &Prices::new(prices.clone())).is_some_and(|(p, _)| p.input > 0.0 || p.output > 0.0);
    spec.provider.is_remote() || spec.batch.is_some() || priced
}

/// What the next run is expected to cost on a backend, USD, for the
/// requests counted call by call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cost {
    /// Prompts, and the answers when their tokens are known.
    pub low: f64,
    /// With every answer at its `max_tokens`; `None` when some answer has
    /// no bound.
    pub high: Option<f64>,
    /// From the token counts the backend itself will report (the `sim`).
    pub exact: bool,
}

/// The cost of `calls` at the backend's price (batch or live); `None`
/// when its price is unknown or no call is priced.
pub fn expected_cost(spec: &BackendSpec, prices: &BTreeMap<String, Price>, calls: &BackendCalls) -> Option<Cost> {
    let (p, _) = live_price(spec, &Prices::new(prices.clone()))?;
    // Every call of a batch backend goes through its batch API.
    let p = price::batched(p, spec.batch.is_some());
    let t = &calls.tokens;
    if t.calls == t.unknown {
        return None;
    }
    let prompts = price::usd(p, Usage { prompt_tokens: t.prompt, completion_tokens: 0 });
    let all = price::usd(p, Usage { prompt_tokens: t.prompt, completion_tokens: t.completion });
    Some(Cost {
        low: if t.estimated { prompts } else { all },
        high: (t.unbounded == 0).then_some(all),
        exact: !t.estimated && t.unbounded == 0 && t.unknown == 0 && !calls.bounded,
    })
}

/// The lines `flow plan` adds under a backend's: the requests the run is
/// expected to send it, and what they cost.
pub fn expected(spec: &BackendSpec, prices: &BTreeMap<String, Price>, calls: &BackendCalls) -> Vec<String> {
    let what = if spec.batch.is_some() { "batch requests" } else { "requests" };
    let counted = calls.requests + calls.more_up_to;
    let mut lines = vec![match (calls.bounded || calls.more_up_to > 0, calls.uncounted.is_empty()) {
        _ if counted == 0 && !calls.uncounted.is_empty() => format!("{what}: as many as the input has records"),
        (false, true) => format!("{what} expected: {}", grouped(calls.requests)),
        (true, true) => format!("{what} expected: up to {}", grouped(counted)),
        (_, false) => format!("{what} expected: at least {}", grouped(calls.requests)),
    }];
    // A free backend (the unpriced `sim`) has nothing to add.
    if let Some(c) = expected_cost(spec, prices, calls).filter(|c| c.high != Some(0.0)) {
        let t = &calls.tokens;
        let mut line = match (c.exact, c.high) {
            (true, _) => format!("cost: {} (the sim's own token counts)", dollars(c.low)),
            // Embeddings: no answer tokens.
            (false, Some(_)) if t.completion == 0 => {
                format!("cost: about {} (inputs ≈ {} tokens)", dollars(c.low), grouped(t.prompt))
            }
            (false, Some(high)) => format!(
                "cost: about {} to {} (prompts ≈ {} tokens; answers at most {} tokens, by `max_tokens`)",
                dollars(c.low),
                dollars(high),
                grouped(t.prompt),
                grouped(t.completion)
            ),
            (false, None) => format!(
                "cost: about {} and up (prompts ≈ {} tokens; {} answers have no `max_tokens` to bound them)",
                dollars(c.low),
                grouped(t.prompt),
                t.unbounded
            ),
        };
        if t.unknown > 0 {
            line.push_str(&format!(
                "; {} calls not priced (a fine-tuning job is billed by its trained tokens)",
                t.unknown
            ));
        }
        lines.push(line);
    }
    if !calls.not_priced.is_empty() {
        let nodes: Vec<String> = calls.not_priced.iter().map(|n| format!("`{n}`")).collect();
        lines.push(format!("not priced: the calls of {} (their input is not known before the run)", nodes.join(", ")));
    }
    lines
}

/// The plan's last line when more than one backend has a cost: what the
/// run costs in all, and which nodes that leaves out.
pub fn total(costs: &[Cost], not_priced: &[String]) -> Option<String> {
    // Free backends (an unpriced `sim`) add nothing.
    let costs: Vec<&Cost> = costs.iter().filter(|c| c.high != Some(0.0)).collect();
    if costs.len() < 2 {
        return None;
    }
    let low: f64 = costs.iter().map(|c| c.low).sum();
    let high: Option<f64> = costs.iter().map(|c| c.high).sum();
    let mut line = match (costs.iter().all(|c| c.exact), high) {
        (true, _) => format!("cost of the run: {}", dollars(low)),
        (false, Some(high)) => format!("cost of the run: about {} to {}", dollars(low), dollars(high)),
        (false, None) => format!("cost of the run: about {} and up", dollars(low)),
    };
    if !not_priced.is_empty() {
        let nodes: Vec<String> = not_priced.iter().map(|n| format!("`{n}`")).collect();
        line.push_str(&format!(", not counting the calls of {}", nodes.join(", ")));
    }
    Some(line)
}

/// The figures of [`expected`], for `flow plan --format json`.
pub fn expected_json(spec: &BackendSpec, prices: &BTreeMap<String, Price>, calls: &BackendCalls) -> Value {
    let cost = expected_cost(spec, prices, calls).map(|c| json!({"low": c.low, "high": c.high, "exact": c.exact}));
    json!({
        "requests": calls.requests,
        "bounded": calls.bounded,
        "more_up_to": calls.more_up_to,
        "batch": spec.batch.is_some(),
        "tokens": calls.tokens,
        "cost_usd": cost,
        "not_priced": calls.not_priced,
    })
}

/// `799,370`: a token count a reader takes in at a glance.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// `$0.00042`, `$0.13`, `$12.50`: two significant figures under a dollar.
fn dollars(usd: f64) -> String {
    if usd <= 0.0 {
        return "$0".to_string();
    }
    if usd >= 1.0 {
        return format!("${usd:.2}");
    }
    let decimals = (-usd.log10()).floor() as usize + 2;
    format!("${usd:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calls(prompt: u64, completion: u64, unbounded: u64, estimated: bool) -> BackendCalls {
        let tokens = flow_engine::calls::BackendTokens {
            calls: 10,
            prompt,
            completion,
            unbounded,
            estimated,
            ..Default::default()
        };
        BackendCalls { requests: 10, tokens, ..BackendCalls::default() }
    }

    /// What the plan says a backend's calls will cost: exact on a priced
    /// `sim`, a range elsewhere, no top without `max_tokens`.
    #[test]
    fn the_plan_prices_what_it_counted() {
        let spec = |yaml: &str| serde_yaml::from_str::<BackendSpec>(yaml).unwrap();
        let prices = BTreeMap::from([("sim-1".to_string(), Price { input: 2.0, output: 8.0 })]);
        let sim = spec("{provider: sim, model: sim-1}");
        let lines = expected(&sim, &prices, &calls(1000, 500, 0, false));
        assert_eq!(lines, ["requests expected: 10", "cost: $0.0060 (the sim's own token counts)"]);
        let batch = spec("{provider: sim, model: sim-1, batch: true}");
        let lines = expected(&batch, &prices, &calls(1000, 500, 0, false));
        assert_eq!(lines, ["batch requests expected: 10", "cost: $0.0030 (the sim's own token counts)"]);

        let openai = spec("{provider: openai, model: gpt-4o-mini}");
        let lines = expected(&openai, &prices, &calls(100_000, 20_000, 0, true));
        assert_eq!(
            lines[1],
            "cost: about $0.015 to $0.027 (prompts ≈ 100,000 tokens; answers at most 20,000 tokens, by `max_tokens`)"
        );
        let lines = expected(&openai, &prices, &calls(100_000, 0, 10, true));
        assert_eq!(
            lines[1],
            "cost: about $0.015 and up (prompts ≈ 100,000 tokens; 10 answers have no `max_tokens` to bound them)"
        );
        let embed = spec("{provider: openai, model: text-embedding-3-small}");
        assert_eq!(
            expected(&embed, &prices, &calls(1_000_000, 0, 0, true))[1],
            "cost: about $0.020 (inputs ≈ 1,000,000 tokens)"
        );

        // A local server has no built-in price: no cost line.
        let local = spec("{provider: openai, model: gpt-4o-mini, base_url: 'http://127.0.0.1:8080/v1'}");
        assert_eq!(expected(&local, &prices, &calls(100, 10, 0, true)), ["requests expected: 10"]);
        // The free sim: nothing to add.
        let free = spec("{provider: sim}");
        assert_eq!(expected(&free, &BTreeMap::new(), &calls(100, 10, 0, false)), ["requests expected: 10"]);

        let costs: Vec<Cost> = [calls(1000, 500, 0, false), calls(100_000, 20_000, 0, true)]
            .iter()
            .zip([&sim, &openai])
            .filter_map(|(c, spec)| expected_cost(spec, &prices, c))
            .collect();
        assert_eq!(
            total(&costs, &["scores".to_string()]).unwrap(),
            "cost of the run: about $0.021 to $0.033, not counting the calls of `scores`"
        );
        assert_eq!(total(&costs[..1], &[]), None, "one backend's line says it all");
        let free = Cost { low: 0.0, high: Some(0.0), exact: true };
        assert_eq!(total(&[costs[0], free], &[]), None, "a free backend adds nothing");

        let judged = BackendCalls { more_up_to: 24, not_priced: vec!["scores".into()], ..BackendCalls::default() };
        assert_eq!(
            expected(&openai, &prices, &judged),
            [
                "requests expected: up to 24",
                "not priced: the calls of `scores` (their input is not known before the run)"
            ]
        );
    }

    #[test]
    fn dollars_keep_two_significant_figures() {
        assert_eq!(dollars(0.0), "$0");
        assert_eq!(dollars(0.000423), "$0.00042");
        assert_eq!(dollars(0.13), "$0.13");
        assert_eq!(dollars(0.5), "$0.50");
        assert_eq!(dollars(0.0999), "$0.100");
        assert_eq!(dollars(12.5), "$12.50");
        assert_eq!([grouped(0), grouped(999), grouped(1000), grouped(799_370)], ["0", "999", "1,000", "799,370"]);
    }
}
