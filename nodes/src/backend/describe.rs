//! How `flow plan` shows a network backend: its identity and its price.

use flow_engine::{BackendSpec, Provider};

use super::price::{self, Prices};
use super::{app, withheld_key, Usage};

/// How `flow plan` shows backend `name`: its identity (provider, model,
/// where it is, Azure's deployment and version) and its price, or why its
/// calls will cost `null`.
pub fn describe(
    name: &str,
    spec: &BackendSpec,
    prices: &std::collections::BTreeMap<String, flow_engine::Price>,
) -> String {
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
    let prices = Prices::new(prices.clone());
    let price = match spec.provider {
        Provider::Sim => match prices.cost_override(spec.model(), Usage::default()) {
            Some(_) => prices.for_backend(spec, spec.model()),
            None => Some((flow_engine::Price { input: 0.0, output: 0.0 }, price::PriceSource::BuiltIn)),
        },
        _ => prices.for_backend(spec, spec.model()),
    };
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
