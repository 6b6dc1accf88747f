//! The `notify:` section of the config file: the webhooks alerted, each an http(s) URL and the
//! events it wants. Read as written, then checked through the config file's one problem
//! collector; what passes is the [`Webhook`] list the [`Notifier`](crate::Notifier) starts with.

use jitca_policy::names::show;
use jitca_policy::{Problems, YamlPath};
use serde::Deserialize;

use crate::{AlertKind, Webhook};

/// One `notify:` entry as written.
#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a webhook: a mapping with url and optionally events"
)]
pub struct RawHook {
    url: String,
    events: Option<Vec<String>>,
}

/// The webhooks of the `notify:` section at `path`: http(s) URLs and known event names.
/// Each problem is recorded in `problems` (a URL is never repeated in a message: it usually
/// carries a secret); the list returned may be used only if there is none.
pub fn read_hooks(raw: Vec<RawHook>, path: &YamlPath, problems: &mut Problems<'_>) -> Vec<Webhook> {
    let mut hooks = Vec::new();
    for (i, hook) in raw.into_iter().enumerate() {
        let here = path.index(i);
        if let Err(e) = check_url(&hook.url) {
            problems.at(&here.key("url"), e);
        }
        let mut events = Vec::new();
        for (j, event) in hook.events.unwrap_or_default().iter().enumerate() {
            match AlertKind::ALL.into_iter().find(|k| k.as_str() == event) {
                Some(kind) => events.push(kind),
                None => problems.at(
                    &here.key("events").index(j),
                    format_args!(
                        "unknown event {}; known: {}",
                        show(event),
                        AlertKind::ALL.map(AlertKind::as_str).join(", ")
                    ),
                ),
            }
        }
        hooks.push(Webhook {
            url: hook.url,
            events,
        });
    }
    hooks
}

/// A webhook URL: `http://` or `https://`, a host, a port (if given) from 1 to 65535, nothing
/// that is not printable ASCII. Messages never repeat the URL: it usually carries a secret.
pub fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| "must start with https:// (or http://)".to_string())?;
    if let Some(bad) = url.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "contains {}; write the URL without spaces or other characters (percent-encode them)",
            show(&bad.to_string())
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let (host, port) = match host_port.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((host, after)) => (host, after),
            None => return Err("has an unclosed [ in its host".to_string()),
        },
        None => host_port.split_at(host_port.find(':').unwrap_or(host_port.len())),
    };
    if host.is_empty() {
        return Err("names no host".to_string());
    }
    if !port.is_empty() {
        match port.strip_prefix(':').map(str::parse::<u16>) {
            Some(Ok(p)) if p != 0 => {}
            _ => return Err("has an invalid port (want 1 to 65535)".to_string()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use jitca_policy::LineIndex;

    use super::*;

    /// The webhooks of a document holding only `notify:`, or its problems.
    fn read(text: &str) -> Result<Vec<Webhook>, Vec<String>> {
        #[derive(Deserialize, Default)]
        struct File {
            notify: Option<Vec<RawHook>>,
        }
        let file = Path::new("j.yaml");
        let index = LineIndex::build(text);
        let raw: File = jitca_policy::document::read(text, file, &index)
            .map_err(|e| e.0.iter().map(ToString::to_string).collect::<Vec<_>>())?;
        let mut problems = Problems::new(&index);
        let hooks = read_hooks(
            raw.notify.unwrap_or_default(),
            &YamlPath::root().key("notify"),
            &mut problems,
        );
        problems
            .finish(file)
            .map(|_| hooks)
            .map_err(|e| e.0.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn hooks_and_their_events() {
        let hooks = read(
            "notify:\n  - url: https://hooks.example.com/T1/B2\n    events: [break_glass, review_due]\n  - url: http://127.0.0.1:8080/all\n",
        )
        .unwrap();
        assert_eq!(hooks.len(), 2);
        assert_eq!(
            hooks[0].events,
            [AlertKind::BreakGlass, AlertKind::ReviewDue]
        );
        assert!(hooks[1].events.is_empty() && hooks[1].wants(AlertKind::Checkpoint));
    }

    #[test]
    fn mistakes_are_named_at_their_lines() {
        assert_eq!(
            read("notify:\n  - url: ftp://hooks.example.com/x\n"),
            Err(vec![
                "j.yaml:2: notify[0].url: must start with https:// (or http://)".to_string()
            ])
        );
        assert_eq!(
            read("notify:\n  - url: https://hooks.example.com/x\n    events: [everything]\n"),
            Err(vec![
                "j.yaml:3: notify[0].events[0]: unknown event \"everything\"; known: \
                 request_made, decided, break_glass, revoked, review_due, checkpoint"
                    .to_string()
            ])
        );
    }

    #[test]
    fn webhook_urls() {
        for url in [
            "https://hooks.slack.com/services/T0/B0/xyz",
            "http://127.0.0.1:8080/hook",
            "https://[::1]:8443/x?token=abc",
            "https://user:pw@example.com:8443/a/b?c=d&e=f",
        ] {
            assert_eq!(check_url(url), Ok(()), "{url}");
        }
        for (url, why) in [
            ("", "https://"),
            ("ftp://example.com/x", "https://"),
            ("HTTPS://example.com", "https://"),
            ("file:///etc/passwd", "https://"),
            ("https://", "no host"),
            ("https:///path", "no host"),
            ("https://:8080/x", "no host"),
            ("https://exa mple.com/", "without spaces"),
            ("https://example.com/\u{7}", "without spaces"),
            ("https://exämple.com/", "percent-encode"),
            ("https://example.com:/x", "port"),
            ("https://example.com:99999/x", "port"),
            ("https://example.com:0/x", "port"),
            ("https://[::1]:/x", "port"),
            ("https://[::1/x", "unclosed"),
        ] {
            let err = check_url(url).expect_err(url);
            assert!(err.contains(why), "{url:?}: {err}");
            if url.len() > 12 {
                assert!(!err.contains(url), "the message repeats the URL: {err}");
            }
        }
    }
}
