//! What a call costs: tokens × the model's price, USD per million tokens.
//! The spec's `prices:` come first, then a built-in table of common models.
//! A dated or provider-prefixed name (`gpt-4o-2024-08-06`, `openai/gpt-4o`)
//! takes the price of the longest listed name it starts with. Unknown
//! models cost `null`, never a guess.

use std::collections::BTreeMap;

use flow_engine::{BackendSpec, Price, Provider};

use super::Usage;

/// Built-in prices, USD per million tokens (input, output), as published by
/// the providers; override or extend them with `prices:` in the spec.
const BUILT_IN: &[(&str, f64, f64)] = &[
    ("gpt-4o", 2.50, 10.00),
    ("gpt-4o-mini", 0.15, 0.60),
    ("gpt-4.1", 2.00, 8.00),
    ("gpt-4.1-mini", 0.40, 1.60),
    ("gpt-4.1-nano", 0.10, 0.40),
    ("gpt-4-turbo", 10.00, 30.00),
    ("gpt-3.5-turbo", 0.50, 1.50),
    ("o1", 15.00, 60.00),
    ("o1-mini", 1.10, 4.40),
    ("o3", 2.00, 8.00),
    ("o3-mini", 1.10, 4.40),
    ("o4-mini", 1.10, 4.40),
    ("text-embedding-3-small", 0.02, 0.0),
    ("text-embedding-3-large", 0.13, 0.0),
    ("text-embedding-ada-002", 0.10, 0.0),
    ("claude-3-5-sonnet", 3.00, 15.00),
    ("claude-3-5-haiku", 0.80, 4.00),
    ("claude-3-7-sonnet", 3.00, 15.00),
    // The offline backend is free.
    ("sim", 0.0, 0.0),
];

pub struct Prices {
    overrides: BTreeMap<String, Price>,
}

impl Prices {
    pub fn new(overrides: BTreeMap<String, Price>) -> Self {
        Self { overrides }
    }

    /// The price of `model`, if known.
    pub fn of(&self, model: &str) -> Option<Price> {
        self.overridden(model)
            .or_else(|| lookup(model, BUILT_IN.iter().map(|(k, i, o)| (*k, Price { input: *i, output: *o }))))
    }

    pub(super) fn overridden(&self, model: &str) -> Option<Price> {
        lookup(model, self.overrides.iter().map(|(k, p)| (k.as_str(), *p)))
    }

    /// What a call with this usage cost.
    pub fn cost(&self, model: &str, usage: Usage) -> Option<f64> {
        self.of(model).map(|p| usd(p, usage))
    }

    /// The price a call of backend `spec` to `model` is billed at, and
    /// where it comes from: the spec's `prices:` first; the built-in table
    /// only when the backend is the provider's own API (a local server
    /// serving a model named `gpt-4o-mini` is not billed at OpenAI's
    /// prices: its calls cost `null` unless `prices:` names the model).
    pub fn for_backend(&self, spec: &BackendSpec, model: &str) -> Option<(Price, PriceSource)> {
        if let Some(p) = self.overridden(model) {
            return Some((p, PriceSource::Spec));
        }
        if !is_providers_own(spec) {
            return None;
        }
        self.of(model).map(|p| (p, PriceSource::BuiltIn))
    }

    /// What a call cost by the spec's `prices:` alone.
    pub fn cost_override(&self, model: &str, usage: Usage) -> Option<f64> {
        self.overridden(model).map(|p| usd(p, usage))
    }
}

/// The listed price whose name `model` is, or starts with (longest first).
fn lookup<'a>(model: &str, names: impl Iterator<Item = (&'a str, Price)>) -> Option<Price> {
    let model = model.rsplit('/').next().unwrap_or(model);
    names
        .filter(|(name, _)| {
            model == *name || model.strip_prefix(*name).is_some_and(|rest| rest.starts_with(['-', ':', '@']))
        })
        .max_by_key(|(name, _)| name.len())
        .map(|(_, p)| p)
}

/// Where a backend's price comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriceSource {
    /// The spec's `prices:`.
    Spec,
    /// The built-in table (the provider's published prices).
    BuiltIn,
}

/// Whether a backend's `base_url` is its provider's own API (what the
/// built-in prices are for).
pub fn is_providers_own(spec: &BackendSpec) -> bool {
    match host_of(spec) {
        Some(host) => is_own_host(spec.provider, &host),
        None => spec.provider == Provider::Sim,
    }
}

/// The host `spec`'s requests go to, lower-cased.
pub(super) fn host_of(spec: &BackendSpec) -> Option<String> {
    reqwest::Url::parse(spec.base_url()).ok().and_then(|u| u.host_str().map(str::to_ascii_lowercase))
}

/// Whether `host` serves `provider`'s own API.
pub(super) fn is_own_host(provider: Provider, host: &str) -> bool {
    match provider {
        Provider::Openai => host == "api.openai.com",
        Provider::Anthropic => host == "api.anthropic.com",
        Provider::Azure => [".openai.azure.com", ".cognitiveservices.azure.com", ".services.ai.azure.com"]
            .iter()
            .any(|d| host.ends_with(d)),
        Provider::Sim | Provider::Local => true,
        // The user's own application: priced by what it reports, or `prices:`.
        Provider::Http | Provider::Exec => false,
    }
}

/// The price of a call through a provider's batch API: half the live
/// price, input and output (OpenAI's Batch and Anthropic's Message Batches
/// alike; Anthropic's cache multipliers apply on top). `p` as it is when
/// the call is live.
pub fn batched(p: Price, batch: bool) -> Price {
    if batch {
        Price { input: p.input / 2.0, output: p.output / 2.0 }
    } else {
        p
    }
}

/// The cost of `usage` at price `p`, USD.
pub fn usd(p: Price, usage: Usage) -> f64 {
    let usd = (usage.prompt_tokens as f64 * p.input + usage.completion_tokens as f64 * p.output) / 1e6;
    // Twelve decimals: stable in JSON, exact enough for sums.
    (usd * 1e12).round() / 1e12
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_by_longest_prefix_with_overrides_first() {
        let p = Prices::new(BTreeMap::from([("my-model".to_string(), Price { input: 1.0, output: 2.0 })]));
        assert_eq!(p.of("gpt-4o-mini-2024-07-18").unwrap().input, 0.15);
        assert_eq!(p.of("gpt-4o-2024-08-06").unwrap().input, 2.50);
        assert_eq!(p.of("openai/gpt-4o").unwrap().output, 10.0);
        assert_eq!(p.of("sim-1").unwrap().input, 0.0);
        assert!(p.of("gpt-4oo").is_none());
        assert!(p.of("llama3").is_none());
        let u = Usage { prompt_tokens: 1_000_000, completion_tokens: 500_000 };
        assert_eq!(p.cost("my-model", u), Some(2.0));
        assert_eq!(p.cost("unknown", u), None);
    }

    #[test]
    fn built_in_prices_only_for_the_providers_own_api() {
        let p = Prices::new(BTreeMap::from([("local-1".to_string(), Price { input: 1.0, output: 2.0 })]));
        let spec = |yaml: &str| serde_yaml::from_str::<BackendSpec>(yaml).unwrap();
        let openai = spec("{provider: openai, model: gpt-4o}");
        assert_eq!(p.for_backend(&openai, "gpt-4o").map(|x| x.1), Some(PriceSource::BuiltIn));
        let local = spec("{provider: openai, model: gpt-4o, base_url: 'http://127.0.0.1:8080/v1'}");
        assert_eq!(p.for_backend(&local, "gpt-4o"), None, "a local server is not billed at OpenAI's prices");
        assert_eq!(p.for_backend(&local, "local-1").map(|x| x.1), Some(PriceSource::Spec));
        let azure = spec("{provider: azure, model: gpt-4o, base_url: 'https://r.openai.azure.com'}");
        assert!(p.for_backend(&azure, "gpt-4o").is_some());
        let claude = spec("{provider: anthropic, model: claude-3-5-haiku}");
        assert!(p.for_backend(&claude, "claude-3-5-haiku-20241022").is_some());
    }
}
