//! Keys that ride in a backend's URL: credentials (`http://user:KEY@host`)
//! are refused at validate, and query values named like keys
//! (`?api-key=...`, Azure's and Google's habit) are redacted wherever a URL
//! is stored or printed: a node's backend identity (its key and manifest),
//! error messages, logs.

/// Query parameter names whose values are secrets.
fn is_secret_param(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["key", "token", "secret", "password", "passwd", "sig", "signature", "auth", "credential"]
        .iter()
        .any(|s| n == *s || n.contains(s))
        && !matches!(n.as_str(), "api-version" | "keyspace")
}

/// The user information of `url` (`user:KEY` in `http://user:KEY@host/`).
pub fn userinfo(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    authority.rsplit_once('@').map(|(info, _)| info)
}

/// `url` with its user information and the values of its key-like query
/// parameters replaced by `REDACTED`.
pub fn redact(url: &str) -> String {
    let mut out = match userinfo(url) {
        Some(info) => url.replacen(&format!("{info}@"), "REDACTED@", 1),
        None => url.to_string(),
    };
    if let Some((base, query)) = out.split_once('?') {
        let (query, fragment) = query.split_once('#').map_or((query, None), |(q, f)| (q, Some(f)));
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if is_secret_param(name) => format!("{name}=REDACTED"),
                _ => pair.to_string(),
            })
            .collect();
        out = format!("{base}?{}{}", pairs.join("&"), fragment.map(|f| format!("#{f}")).unwrap_or_default());
    }
    out
}

/// The URL of `path` under the API root `base`, keeping `base`'s query
/// after the path (`https://x/openai?api-version=1` + `chat/completions`).
pub fn join(base: &str, path: &str) -> String {
    let path = path.trim_start_matches('/');
    match base.split_once('?') {
        Some((root, query)) => format!("{}/{path}?{query}", root.trim_end_matches('/')),
        None => format!("{}/{path}", base.trim_end_matches('/')),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_in_urls_are_found_and_redacted() {
        assert_eq!(userinfo("http://user:sk-1@host:8/v1"), Some("user:sk-1"));
        assert_eq!(userinfo("http://host/v1?next=a@b"), None);
        assert_eq!(redact("http://user:sk-1@host/v1"), "http://REDACTED@host/v1");
        assert_eq!(
            redact("https://x.azure.com/openai?api-version=2024-02-01&api-key=s3cr3t#f"),
            "https://x.azure.com/openai?api-version=2024-02-01&api-key=REDACTED#f"
        );
        assert_eq!(redact("https://g.com/v1?key=AIza1&alt=json"), "https://g.com/v1?key=REDACTED&alt=json");
        assert_eq!(redact("http://localhost:8000/v1"), "http://localhost:8000/v1");
        assert_eq!(join("http://h/v1", "/chat/completions"), "http://h/v1/chat/completions");
        assert_eq!(
            join("http://h/v1/?api-version=1", "chat/completions"),
            "http://h/v1/chat/completions?api-version=1"
        );
    }
}
