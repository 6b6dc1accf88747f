//! The whole config file: the daemon's settings, the sections' owners together, the line of
//! every problem, and the key files the config names.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use jitca_signer::{CaKeySource, Passphrase};

use super::*;

const ALICE: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFcMnCu5Au53n0Smp6vhsN8/xGdrmt2Rop3g44zKrrmD a@test";
const BOB: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMzM1BPS6NTQ1xrLOF0d6NmSsBIY2EHJ6khjP4iEFDc0 b@test";
const CAROL: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFiPMJr4kDcTOZUGs2BNEay6XmIQ5mPA52MRVQMVr4lv c@test";

fn file() -> &'static Path {
    Path::new("/etc/jitca/jitca.yaml")
}

/// A valid config; tests break one thing at a time.
fn good() -> String {
    format!(
        r#"listen: "0.0.0.0:2200"
users:
  alice:
    keys: ["{ALICE}"]
    groups: [dev]
  bob:
    keys:
      - "{BOB}"
    groups: [sre, audit]
  carol:
    keys: ["{CAROL}"]
    groups: [sre]
hosts:
  web: [web1, web2]
  db: [db1]
rules:
  - name: dev-web
    requesters: [dev]
    hosts: [web]
    logins: [deploy]
    max_duration: 2h
    approvers: [sre]
auditors: [audit]
"#
    )
}

/// The CA key file of a config whose CA key is a file.
fn ca_key(config: &Config) -> &Path {
    match &config.ca.source {
        CaKeySource::File { path, .. } => path,
        other => panic!("not a key file: {other:?}"),
    }
}

/// The line of the top-level setting `name`, if written.
fn line(config: &Config, name: &str) -> Option<usize> {
    config.index.line(&YamlPath::root().key(name))
}

fn errors(text: &str) -> Vec<String> {
    match parse(text, file()) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => {
            assert!(!e.0.is_empty());
            e.0.iter().map(ToString::to_string).collect()
        }
    }
}

/// The config with `from` replaced by `to` has exactly the one problem `want`.
fn one_error(from: &str, to: &str, want: &str) {
    let text = good().replacen(from, to, 1);
    assert_ne!(text, good(), "{from} not found");
    assert_eq!(errors(&text), [want], "replacing {from:?} by {to:?}");
}

#[test]
fn the_good_config_is_good() {
    let config = parse(&good(), file()).unwrap();
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    assert_eq!(config.file, file());
    assert_eq!(config.listen, "0.0.0.0:2200".parse().unwrap());
    assert_eq!(ca_key(&config), Path::new("/etc/jitca/ca"));
    assert_eq!(config.host_key, Path::new("/etc/jitca/host_ed25519"));
    assert_eq!(config.data_dir, Path::new("/etc/jitca/data"));
    assert_eq!(config.pending_ttl, Duration::from_secs(3600));
    assert_eq!(line(&config, "ca_key"), None);
    let rule = config.policy.rule("dev-web").unwrap();
    assert_eq!(rule.approvals, 1);
    assert_eq!(rule.extensions, ["permit-pty"]);
    assert!(rule.critical_options.is_empty());
    assert_eq!(rule.max_duration, Duration::from_secs(7200));
    assert_eq!(config.policy.principal_format(), "{login}@{host}");
}

#[test]
fn defaults_for_an_empty_file() {
    for text in ["", "# nothing yet\n", "---\n", "{}"] {
        let config = parse(text, Path::new("jitca.yaml")).unwrap();
        assert_eq!(config.listen, "127.0.0.1:2222".parse().unwrap());
        assert_eq!(ca_key(&config), Path::new("ca"));
        assert_eq!(config.data_dir, Path::new("data"));
        assert_eq!(config.pending_ttl, DEFAULT_PENDING_TTL);
        assert_eq!(config.policy.users().count(), 0);
    }
    // Sections with everything commented out.
    let config = parse(
        "users:\n  # alice: ...\nhosts:\nrules:\nauditors:\n",
        Path::new("j.yaml"),
    )
    .unwrap();
    assert!(config.policy.rules().is_empty());
}

#[test]
fn paths_resolve_against_the_config_folder() {
    let text = "ca_key: keys/ca\nhost_key: /abs/host\ndata_dir: ../store\n";
    let config = parse(text, Path::new("/srv/jitca/jitca.yaml")).unwrap();
    assert_eq!(ca_key(&config), Path::new("/srv/jitca/keys/ca"));
    assert_eq!(config.host_key, Path::new("/abs/host"));
    assert_eq!(config.data_dir, Path::new("/srv/jitca/../store"));
    assert_eq!(
        (line(&config, "ca_key"), line(&config, "host_key")),
        (Some(1), Some(2))
    );
    let config = parse(text, Path::new("jitca.yaml")).unwrap();
    assert_eq!(ca_key(&config), Path::new("keys/ca"));
    assert_eq!(
        errors("ca_key: \"\"\n"),
        ["/etc/jitca/jitca.yaml:1: ca_key: is empty; give a file path"]
    );
}

#[test]
fn all_optional_fields() {
    let text = good()
            .replace("listen: \"0.0.0.0:2200\"", "listen: \"[::1]:0\"\npending_ttl: 15m\nprincipal_format: \"{host}:{login}\"")
            .replace(
                "    approvers: [sre]\n",
                "    approvals: 2\n    approvers: [sre]\n    extensions: [permit-pty, permit-X11-forwarding, no-touch-required]\n    force_command: \"journalctl -f\"\n    source_address: \"10.0.0.0/8,192.0.2.7,2001:db8::/32\"\n",
            );
    let config = parse(&text, file()).unwrap();
    assert_eq!(config.listen, "[::1]:0".parse().unwrap());
    assert_eq!(config.pending_ttl, Duration::from_secs(900));
    let policy = &config.policy;
    assert_eq!(policy.principal_format(), "{host}:{login}");
    let rule = policy.rule("dev-web").unwrap();
    assert_eq!(rule.approvals, 2);
    assert_eq!(
        rule.extensions,
        ["no-touch-required", "permit-X11-forwarding", "permit-pty"]
    );
    assert_eq!(
        rule.critical_options,
        BTreeMap::from([
            ("force-command".to_string(), "journalctl -f".to_string()),
            (
                "source-address".to_string(),
                "10.0.0.0/8,192.0.2.7,2001:db8::/32".to_string()
            ),
        ])
    );
    let no_extensions = good().replace(
        "    approvers: [sre]\n",
        "    approvers: [sre]\n    extensions: []\n",
    );
    let config = parse(&no_extensions, file()).unwrap();
    assert!(config.policy.rule("dev-web").unwrap().extensions.is_empty());
}

#[test]
fn serde_errors_are_reported_alone_with_their_line() {
    let text = good().replace("    groups: [dev]", "    groupz: [dev]") + "rules: oops\n";
    assert_eq!(
        errors(&text),
        [
            "/etc/jitca/jitca.yaml:5: users.alice: unknown field `groupz`, expected `keys` or `groups`"
        ]
    );
    assert_eq!(
        errors("listen: x\nlisten: y\n"),
        ["/etc/jitca/jitca.yaml:2: duplicate field `listen`"]
    );
    let text = good().replace(
        "    max_duration: 2h\n",
        "    max_duration: 2h\n    logins: [x]\n",
    );
    assert_eq!(
        errors(&text),
        ["/etc/jitca/jitca.yaml:22: rules[0]: duplicate field `logins`"]
    );
    assert_eq!(
        errors("users: [a, b]\n"),
        ["/etc/jitca/jitca.yaml:1: users: invalid type: sequence, expected a mapping of names"]
    );
    let missing = errors(&good().replace("    max_duration: 2h\n", ""));
    assert_eq!(missing.len(), 1);
    assert!(
        missing[0].contains("rules[0]: missing field `max_duration`"),
        "{missing:?}"
    );
    assert_eq!(
        errors("users:\n  alice: [a]\n"),
        [
            "/etc/jitca/jitca.yaml:2: users.alice: invalid type: sequence, expected a user: a mapping with keys and groups"
        ]
    );
    let broken = errors("listen: x\nusers:\n  alice: {keys: [a}\n");
    assert_eq!(broken.len(), 1);
    assert!(
        broken[0].starts_with("/etc/jitca/jitca.yaml:3: "),
        "{broken:?}"
    );
    let tabs = errors("users:\n\talice: {}\n");
    assert!(tabs[0].starts_with("/etc/jitca/jitca.yaml:2: "), "{tabs:?}");
    let negative = errors(&good().replace(
        "    approvers: [sre]\n",
        "    approvals: -1\n    approvers: [sre]\n",
    ));
    assert_eq!(
        negative,
        ["/etc/jitca/jitca.yaml:22: rules[0].approvals: invalid type: integer `-1`, expected u32"]
    );
    assert!(errors("nope: 1\n")[0].contains("unknown field `nope`"));
}

#[test]
fn every_semantic_problem_is_reported_in_line_order() {
    let text = r#"listen: nowhere
pending_ttl: 0s
users:
  alice:
    keys: ["ssh-ed25519 garbage"]
    groups: [dev]
rules:
  - name: r
    requesters: [devs]
    hosts: [web]
    logins: [Root]
    max_duration: 8d
    extensions: [permit-everything]
"#;
    // (Line 9's group nobody is in is a warning, not one of these.)
    let got = errors(text);
    let lines: Vec<&str> = got.iter().map(|e| e.split(": ").next().unwrap()).collect();
    assert_eq!(
        lines,
        [
            "/etc/jitca/jitca.yaml:1",
            "/etc/jitca/jitca.yaml:2",
            "/etc/jitca/jitca.yaml:5",
            "/etc/jitca/jitca.yaml:8",
            "/etc/jitca/jitca.yaml:10",
            "/etc/jitca/jitca.yaml:11",
            "/etc/jitca/jitca.yaml:12",
            "/etc/jitca/jitca.yaml:13",
        ],
        "{got:#?}"
    );
    let display = parse(text, file()).unwrap_err().to_string();
    assert_eq!(display.lines().count(), 8);
    assert!(
        display.starts_with("/etc/jitca/jitca.yaml:1: listen: \"nowhere\" is not a socket address")
    );
}

#[test]
fn listen() {
    one_error(
        "listen: \"0.0.0.0:2200\"",
        "listen: localhost:2222",
        "/etc/jitca/jitca.yaml:1: listen: \"localhost:2222\" is not a socket address; write IP:PORT, like 127.0.0.1:2222",
    );
    one_error(
        "listen: \"0.0.0.0:2200\"",
        "listen: \"127.0.0.1\"",
        "/etc/jitca/jitca.yaml:1: listen: \"127.0.0.1\" is not a socket address; write IP:PORT, like 127.0.0.1:2222",
    );
}

#[test]
fn metrics_listen() {
    let config = parse(&good(), file()).unwrap();
    assert_eq!(config.metrics_listen, None);
    let text = good().replacen(
        "listen: \"0.0.0.0:2200\"",
        "listen: \"0.0.0.0:2200\"\nmetrics_listen: \"127.0.0.1:9842\"",
        1,
    );
    let config = parse(&text, file()).unwrap();
    assert_eq!(
        config.metrics_listen,
        Some("127.0.0.1:9842".parse().unwrap())
    );
    one_error(
        "listen: \"0.0.0.0:2200\"",
        "listen: \"0.0.0.0:2200\"\nmetrics_listen: localhost:9842",
        "/etc/jitca/jitca.yaml:2: metrics_listen: \"localhost:9842\" is not a socket address; write IP:PORT, like 127.0.0.1:9842",
    );
    one_error(
        "listen: \"0.0.0.0:2200\"",
        "listen: \"0.0.0.0:2200\"\nmetrics_listen: \"0.0.0.0:2200\"",
        "/etc/jitca/jitca.yaml:2: metrics_listen: is the control channel's listen address; give the metrics their own port",
    );
}

#[test]
fn log_format() {
    assert_eq!(parse(&good(), file()).unwrap().log_format, LogFormat::Text);
    for (written, want) in [("text", LogFormat::Text), ("json", LogFormat::Json)] {
        let text = good().replacen(
            "listen: \"0.0.0.0:2200\"",
            &format!("listen: \"0.0.0.0:2200\"\nlog_format: {written}"),
            1,
        );
        assert_eq!(parse(&text, file()).unwrap().log_format, want);
    }
    one_error(
        "listen: \"0.0.0.0:2200\"",
        "listen: \"0.0.0.0:2200\"\nlog_format: JSON",
        "/etc/jitca/jitca.yaml:2: log_format: \"JSON\" is not a log format; write text or json",
    );
    one_error(
        "listen: \"0.0.0.0:2200\"",
        "listen: \"0.0.0.0:2200\"\nlog_format: logfmt",
        "/etc/jitca/jitca.yaml:2: log_format: \"logfmt\" is not a log format; write text or json",
    );
}

#[test]
fn pending_ttl() {
    let at = |ttl: &str| errors(&format!("pending_ttl: {ttl}\n"));
    assert_eq!(
        at("0m"),
        ["/etc/jitca/jitca.yaml:1: pending_ttl: must be more than zero"]
    );
    assert_eq!(
        at("8d"),
        ["/etc/jitca/jitca.yaml:1: pending_ttl: 8d is longer than the most jitca allows (7d)"]
    );
    assert!(at("3600")[0].contains("pending_ttl: cannot read \"3600\": a duration needs a unit"));
    assert!(at("1h30m")[0].contains("unknown duration unit"));
    assert!(at("-1h")[0].contains("no sign"));
    assert_eq!(
        parse("pending_ttl: 7d\n", file()).unwrap().pending_ttl,
        MAX_PENDING_TTL
    );
    assert_eq!(
        parse("pending_ttl: 1s\n", file()).unwrap().pending_ttl,
        Duration::from_secs(1)
    );
}

#[test]
fn store_cache_is_a_size_with_a_default() {
    assert_eq!(parse("", file()).unwrap().store_cache, DEFAULT_STORE_CACHE);
    assert_eq!(DEFAULT_STORE_CACHE, 32 << 20);
    let set = |text: &str| parse(&format!("store_cache: {text}\n"), file()).unwrap();
    assert_eq!(set("256MiB").store_cache, 256 << 20);
    assert_eq!(set("2GiB").store_cache, 2 << 30);
    assert_eq!(set("4096KiB").store_cache, 4 << 20);
    assert_eq!(set("1048576").store_cache, 1 << 20);
    assert_eq!(
        errors("store_cache: 64MB\n"),
        [
            "/etc/jitca/jitca.yaml:1: store_cache: cannot read \"64MB\": give a size such as 64MiB or 1GiB"
        ]
    );
    assert_eq!(
        errors("store_cache: 512KiB\n"),
        ["/etc/jitca/jitca.yaml:1: store_cache: must be at least 1MiB"]
    );
    assert_eq!(
        errors("store_cache: 99999999999GiB\n"),
        [
            "/etc/jitca/jitca.yaml:1: store_cache: cannot read \"99999999999GiB\": give a size such as 64MiB or 1GiB"
        ]
    );
}

#[test]
fn store_is_sled_unless_a_postgres_url_is_given() {
    let plain = parse("", file()).unwrap();
    assert_eq!(plain.store, StoreLocation::Sled);
    assert_eq!(plain.limits.store_timeout, Duration::from_secs(10));
    let set = parse(
        "store: postgres://jitca@db.internal:5432/jitca?sslmode=verify-full\n\
         store_password_file: db-password\nlimits:\n  store_timeout: 3s\n",
        file(),
    )
    .unwrap();
    assert_eq!(
        set.store,
        StoreLocation::Postgres {
            url: "postgres://jitca@db.internal:5432/jitca?sslmode=verify-full".into(),
            password_file: Some("/etc/jitca/db-password".into()),
        }
    );
    assert_eq!(set.limits.store_timeout, Duration::from_secs(3));
    assert_eq!(
        errors("store: mysql://jitca@db/jitca\n"),
        [
            "/etc/jitca/jitca.yaml:1: store: \"mysql://jitca@db/jitca\": a store URL starts with postgres://"
        ]
    );
    assert_eq!(
        errors("store: postgres://jitca:hunter2@db/jitca\n"),
        [
            "/etc/jitca/jitca.yaml:1: store: \"postgres://jitca@db/jitca\": put the password in store_password_file, not in the URL"
        ]
    );
    let prefer = errors("store: postgres://jitca@db/jitca?sslmode=prefer\n");
    assert!(
        prefer[0].contains("sslmode=prefer is not accepted"),
        "{prefer:?}"
    );
    assert_eq!(
        errors("store_password_file: pw\n"),
        [
            "/etc/jitca/jitca.yaml:1: store_password_file: is for a PostgreSQL store; there is no store: postgres://... setting"
        ]
    );
}

#[test]
fn audit_key_and_checkpoint_interval() {
    let config = parse("", file()).unwrap();
    assert_eq!(config.audit_key, Path::new("/etc/jitca/audit_ed25519"));
    assert_eq!(config.checkpoint_interval, DEFAULT_CHECKPOINT_INTERVAL);
    let set = parse("audit_key: keys/audit\ncheckpoint_interval: 15m\n", file()).unwrap();
    assert_eq!(set.audit_key, Path::new("/etc/jitca/keys/audit"));
    assert_eq!(line(&set, "audit_key"), Some(1));
    assert_eq!(set.checkpoint_interval, Duration::from_secs(900));
    assert_eq!(
        errors("checkpoint_interval: 8d\n"),
        [
            "/etc/jitca/jitca.yaml:1: checkpoint_interval: 8d is longer than the most jitca allows (7d)"
        ]
    );
    assert_eq!(
        errors("audit_key: \"\"\n"),
        ["/etc/jitca/jitca.yaml:1: audit_key: is empty; give a file path"]
    );
}

#[test]
fn messages_never_carry_control_characters_from_the_file() {
    let text = "listen: \"\\e[2J\"\nusers:\n  \"x\\e\": {keys: []}\n";
    for e in errors(text) {
        assert!(!e.chars().any(char::is_control), "{e:?}");
    }
    // serde_yaml's own messages quote keys too.
    let serde = errors("users:\n  \"x\\e\\u202e\": {\"k\\n\": 1}\n");
    assert_eq!(serde.len(), 1);
    assert!(
        !serde[0].chars().any(|c| c.is_control() || c == '\u{202e}'),
        "{serde:?}"
    );
    assert!(serde[0].contains("\\u{1b}"), "{serde:?}");
}

#[test]
fn load_reads_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jitca.yaml");
    std::fs::write(&path, good()).unwrap();
    let config = load(&path).unwrap();
    assert_eq!(ca_key(&config), dir.path().join("ca"));
    let missing = dir.path().join("missing.yaml");
    let err = load(&missing).unwrap_err();
    assert_eq!(err.0.len(), 1);
    assert_eq!(err.0[0].line, None);
    assert!(
        err.to_string().starts_with(&format!(
            "{}: cannot read the config file: ",
            missing.display()
        )),
        "{err}"
    );
}

const PRIVATE_KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACBXDJwruQLud59Epqer4bDfP8Rna5rdkaKd4OOMyq65gwAAAJDl2hEc5doR
HAAAAAtzc2gtZWQyNTUxOQAAACBXDJwruQLud59Epqer4bDfP8Rna5rdkaKd4OOMyq65gw
AAAEDk0c0cIPxZ7+xwuSdakAxZn5PIVTx+bQbfPwWu/qhPPFcMnCu5Au53n0Smp6vhsN8/
xGdrmt2Rop3g44zKrrmDAAAABmFAdGVzdAECAwQFBgc=
-----END OPENSSH PRIVATE KEY-----
";

const ENCRYPTED_KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAACmFlczI1Ni1jdHIAAAAGYmNyeXB0AAAAGAAAABCKQAFAT2
c29fH0HXSoxlpZAAAAEAAAAAEAAAAzAAAAC3NzaC1lZDI1NTE5AAAAIJgizcDTwtD+nPtr
kjU/FZilJ0Fpr2jtPcBWQuvCeKFaAAAAkBVGTwUPaNi9onWKWOytayE5XkP4+KPmtTcc7K
gybHgDgUQZCmmYa2UH+zFKigEazRDbjjmaooydwy6/bJ7t14LOntva7WfugEijUTDrF14X
HE8ZnkbPtNg+4y2Qcqj1Xo4DTdkkBAkGdS+V/lTx3Hzjrmtq0Ja8P2dUccJFiLwp+U+R88
mL/d+EgOFfEh0Ncw==
-----END OPENSSH PRIVATE KEY-----
";

#[test]
fn key_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jitca.yaml");
    std::fs::write(
        &path,
        "listen: \"127.0.0.1:0\"\nca_key: ca\nhost_key: host\n",
    )
    .unwrap();
    let config = load(&path).unwrap();

    let err = config.check_key_files().unwrap_err();
    assert_eq!(err.0.len(), 2);
    assert_eq!(err.0[0].line, Some(2));
    assert!(
        err.0[0].message.starts_with("ca_key: cannot read "),
        "{err}"
    );
    assert_eq!(err.0[1].line, Some(3));
    assert!(
        err.0[1].message.starts_with("host_key: cannot read "),
        "{err}"
    );

    std::fs::write(dir.path().join("ca"), PRIVATE_KEY).unwrap();
    std::fs::write(dir.path().join("host"), format!("{ALICE}\n")).unwrap();
    // Key files must be closed to group and others (config/ca.rs tests that part).
    for key in ["ca", "host"] {
        std::fs::set_permissions(dir.path().join(key), std::fs::Permissions::from_mode(0o600))
            .unwrap();
    }
    let err = config.check_key_files().unwrap_err();
    assert_eq!(err.0.len(), 1);
    let line = err.to_string();
    assert!(
        line.starts_with(&format!("{}:3: host_key: ", path.display())),
        "{line}"
    );
    assert!(
        line.contains("is not a usable OpenSSH private key"),
        "{line}"
    );

    std::fs::write(dir.path().join("host"), ENCRYPTED_KEY).unwrap();
    let err = config.check_key_files().unwrap_err();
    assert!(
        err.to_string().contains("is encrypted with a passphrase"),
        "{err}"
    );

    std::fs::write(dir.path().join("host"), PRIVATE_KEY).unwrap();
    assert_eq!(config.check_key_files(), Ok(()));

    // Defaults: no line to name.
    let config = parse("", &dir.path().join("other.yaml")).unwrap();
    let err = config.check_key_files().unwrap_err();
    assert_eq!(err.0.len(), 1);
    assert_eq!(err.0[0].line, None);
    assert!(
        err.0[0].message.starts_with("host_key: cannot read "),
        "{err}"
    );
}

#[test]
fn webhook_mistakes_are_named() {
    one_error(
        "auditors: [audit]\n",
        "auditors: [audit]\nnotify:\n  - url: ftp://hooks.example.com/x\n",
        "/etc/jitca/jitca.yaml:25: notify[0].url: must start with https:// (or http://)",
    );
    one_error(
        "auditors: [audit]\n",
        "auditors: [audit]\nnotify:\n  - url: https://hooks.example.com/x\n    events: [everything]\n",
        "/etc/jitca/jitca.yaml:26: notify[0].events[0]: unknown event \"everything\"; known: \
             request_made, decided, break_glass, revoked, review_due, checkpoint",
    );
}

#[test]
fn second_factor_key_and_webhooks() {
    let text = good().replacen(
        "auditors: [audit]\n",
        "auditors: [audit]\nnotify:\n  - url: https://hooks.example.com/T1/B2\n    \
             events: [break_glass, review_due]\n",
        1,
    );
    let config = parse(&text, file()).unwrap();
    assert_eq!(config.mfa_key, Path::new("/etc/jitca/mfa.key"));
    assert_eq!(config.notify.len(), 1);
    assert_eq!(
        config.notify[0].events,
        [
            jitca_notify::AlertKind::BreakGlass,
            jitca_notify::AlertKind::ReviewDue
        ]
    );
}

// ---- The CA key settings (jitca_signer::settings) ----

#[test]
fn sources() {
    let file = Path::new("/etc/jitca/jitca.yaml");
    let config = parse("", file).unwrap();
    assert_eq!(config.ca.source, CaKeySource::file("/etc/jitca/ca"));
    let config = parse("ca_key: k\nca_key_passphrase_file: k.pass\n", file).unwrap();
    assert_eq!(
        config.ca.source,
        CaKeySource::File {
            path: "/etc/jitca/k".into(),
            passphrase: Some(Passphrase::File("/etc/jitca/k.pass".into())),
        }
    );
    assert_eq!(line(&config, "ca_key_passphrase_file"), Some(2));
    let config = parse("ca_key_passphrase_credential: jitca-ca.pass\n", file).unwrap();
    assert_eq!(
        config.ca.source,
        CaKeySource::File {
            path: "/etc/jitca/ca".into(),
            passphrase: Some(Passphrase::Credential("jitca-ca.pass".into())),
        }
    );
    let config = parse(
        "ca_agent: /run/jitca/agent.sock\nca_public_key: ca.pub\n",
        file,
    )
    .unwrap();
    assert_eq!(
        config.ca.source,
        CaKeySource::Agent {
            socket: "/run/jitca/agent.sock".into(),
            public_key: "/etc/jitca/ca.pub".into(),
        }
    );
    assert_eq!(
        (line(&config, "ca_agent"), line(&config, "ca_public_key")),
        (Some(1), Some(2))
    );
}

#[test]
fn combinations_refused() {
    assert_eq!(
        errors("ca_agent: /run/a.sock\n"),
        [
            "/etc/jitca/jitca.yaml:1: ca_agent: needs ca_public_key: the .pub file of the CA \
                 key the agent holds"
        ]
    );
    assert_eq!(
        errors("ca_public_key: ca.pub\n"),
        [
            "/etc/jitca/jitca.yaml:1: ca_public_key: is used only with ca_agent (with \
                 ca_key, the public key is read from the key file); remove it, or add ca_agent"
        ]
    );
    assert_eq!(
        errors("ca_key: ca\nca_agent: a.sock\nca_public_key: ca.pub\nca_key_passphrase_file: p\n"),
        [
            "/etc/jitca/jitca.yaml:1: ca_key: is not used with ca_agent (the agent holds the \
                 CA key); remove one of them",
            "/etc/jitca/jitca.yaml:4: ca_key_passphrase_file: is not used with ca_agent (the \
                 agent holds the key decrypted); remove it",
        ]
    );
    assert_eq!(
        errors("ca_key_passphrase_file: p\nca_key_passphrase_credential: c\n"),
        [
            "/etc/jitca/jitca.yaml:2: ca_key_passphrase_credential: give \
                 ca_key_passphrase_file or ca_key_passphrase_credential, not both"
        ]
    );
    assert_eq!(
        errors("ca_key_passphrase_credential: ../etc/shadow\n"),
        [
            "/etc/jitca/jitca.yaml:1: ca_key_passphrase_credential: \"../etc/shadow\" is not \
                 a credential name; write the NAME of LoadCredential=NAME:PATH (letters, digits \
                 and - _ . @ : +)"
        ]
    );
    assert_eq!(
        errors("ca_agent: \"\"\nca_public_key: \"\"\n"),
        [
            "/etc/jitca/jitca.yaml:1: ca_agent: is empty; give a file path",
            "/etc/jitca/jitca.yaml:2: ca_public_key: is empty; give a file path",
        ]
    );
    // Unknown keys are still refused.
    let unknown = errors("ca_passphrase: x\n");
    assert!(
        unknown[0].starts_with("/etc/jitca/jitca.yaml:1: unknown field `ca_passphrase`"),
        "{unknown:?}"
    );
}

fn write(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn new_key(passphrase: Option<&str>) -> String {
    let key = jitca_signer::generate_ed25519("ca").unwrap();
    let key = match passphrase {
        Some(p) => key.encrypt(&mut rand::rng(), p).unwrap(),
        None => key,
    };
    key.to_openssh(ssh_key::LineEnding::LF).unwrap().to_string()
}

#[test]
fn key_files_checked_with_lines() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = d.join("jitca.yaml");
    write(&d.join("host"), &new_key(None), 0o600);
    write(&d.join("ca"), &new_key(Some("secret")), 0o600);
    write(&d.join("ca.pass"), "secret\n", 0o600);
    std::fs::write(
        &path,
        "ca_key: ca\nhost_key: host\nca_key_passphrase_file: ca.pass\n",
    )
    .unwrap();
    let config = load(&path).unwrap();
    assert_eq!(config.check_key_files(), Ok(()));

    write(&d.join("ca"), &new_key(Some("secret")), 0o644);
    let err = config.check_key_files().unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "{f}:1: ca_key: UNPROTECTED PRIVATE KEY FILE! {k} has mode 0644, so group or \
                 others may read or change it; jitca refuses to use it. Fix: chmod 600 {k}",
            f = path.display(),
            k = d.join("ca").display()
        )
    );
    std::fs::set_permissions(d.join("ca"), std::fs::Permissions::from_mode(0o600)).unwrap();
    write(&d.join("ca.pass"), "not it\n", 0o600);
    let err = config.check_key_files().unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "{}:3: ca_key_passphrase_file: the passphrase from file ",
            path.display()
        )) && err.ends_with("(wrong passphrase)"),
        "{err}"
    );
    write(&d.join("ca.pass"), "secret\n", 0o604);
    let err = config.check_key_files().unwrap_err().to_string();
    assert!(
        err.contains(":3: ca_key_passphrase_file: UNPROTECTED PASSPHRASE FILE! "),
        "{err}"
    );
    std::fs::remove_file(d.join("ca.pass")).unwrap();
    let err = config.check_key_files().unwrap_err().to_string();
    assert!(
        err.contains(":3: ca_key_passphrase_file: cannot read "),
        "{err}"
    );
    write(&d.join("host"), &new_key(None), 0o640);
    let err = config.check_key_files().unwrap_err().0;
    assert_eq!(err.len(), 2);
    assert_eq!(err[0].line, Some(2));
    assert!(
        err[0]
            .message
            .starts_with("host_key: UNPROTECTED PRIVATE KEY FILE! "),
        "{err:?}"
    );
    assert_eq!(err[1].line, Some(3));

    // An agent that is not there: refused by the full check, not by the offline one.
    std::fs::write(d.join("ca.pub"), "# the CA\n\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHiSDRJ+UJGFuEM8OyEG5hmHLZdy9ZXEELTS1G6UbBJa ca\n").unwrap();
    write(&d.join("host"), &new_key(None), 0o600);
    std::fs::write(
        &path,
        "host_key: host\nca_agent: agent.sock\nca_public_key: ca.pub\n",
    )
    .unwrap();
    let config = load(&path).unwrap();
    let err = config.check_key_files().unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "{}:2: ca_agent: the ssh-agent holding the CA key ({}) cannot be reached: No such \
                 file or directory (os error 2)",
            path.display(),
            d.join("agent.sock").display()
        )
    );
    assert_eq!(config.check_key_files_offline(), Ok(()));
    std::fs::write(d.join("ca.pub"), "not a key\n").unwrap();
    let err = config.check_key_files_offline().unwrap_err().to_string();
    assert!(
        err.contains(":3: ca_public_key: ") && err.contains("is not an OpenSSH public key"),
        "{err}"
    );
}

/// The policy identifies a person by the blob the control channel gets from russh
/// (`ssh_key::PublicKey::to_bytes`): for every kind of key, that blob is the one the policy
/// kept from the `keys:` line, whatever the comment.
#[test]
fn the_key_a_client_presents_identifies_its_user() {
    const RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDnjz6NbVmpnoypHk7et0Y5wEgiadQjOeU8fN+AypVGPqKURSRARXNDgYHQ8O+XNT226t/iDF6dcsjpx+qDJtku5uIKLQxuu3yn+MgbZT95WZsWF+SNH54n0dBgOXg/Fx5N2g7fHHDl9kwAIEud2JeeKs7VE2KyHzznmvqqj5F9lDtQKwS2OiWFbMnAqWVnXrK9CL87gDoe9oYKgKJGHLK1NR//hiXOihfrvToMHpjQt9oiJQY7Yw0MbZ2rTVljQNOomwoZAbL1wcJ52OcEbPOmxY5KTcLQRwzojr7qacbFVZ5JlUpMgjNODH512Ppo8FsdUK4sL2YfUgzWPz9lq015 r@test";
    const ECDSA: &str = "ecdsa-sha2-nistp521 AAAAE2VjZHNhLXNoYTItbmlzdHA1MjEAAAAIbmlzdHA1MjEAAACFBACZTV+w981JrKHy3P4aYwWDb6leaST3mlLzZoNUd2DpvWze4TIQseueMcZyO5uLq29Z0cYet05IBV82qUTByTSm8AGWu2r4z+zGBwVNszcAelmmi497akU0Nz2ccx7cV8OzkOwvwwS5YSjQYw0i+dXNkJGaJiwoutVi36TrgyORtXHARA== e@test";
    let text = good()
        .replacen(
            &format!("[\"{ALICE}\"]"),
            &format!("[\"{ALICE}\", \"{RSA}\"]"),
            1,
        )
        .replacen(
            &format!("[\"{CAROL}\"]"),
            &format!("[\"{CAROL}\", \"{ECDSA}\"]"),
            1,
        );
    let config = parse(&text, file()).unwrap();
    for (line, user) in [
        (ALICE, "alice"),
        (RSA, "alice"),
        (BOB, "bob"),
        (ECDSA, "carol"),
    ] {
        let mut key = ssh_key::PublicKey::from_openssh(line).unwrap();
        key.set_comment("what the client says");
        let found = config.policy.identify(&key.to_bytes().unwrap());
        assert_eq!(found.map(|u| u.name.as_str()), Some(user), "{line}");
    }
}

#[test]
fn the_store_password_file_is_read_only_when_closed_to_others() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jitca.yaml");
    let password = dir.path().join("db-password");
    std::fs::write(&password, "s3cret\n").unwrap();
    std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = parse(
        "store: postgres://jitca@db/jitca\nstore_password_file: db-password\n",
        &file,
    )
    .unwrap();
    let refused = format!("{:#}", config.pg_options("node").unwrap_err());
    assert!(refused.contains("0644"), "{refused}");
    std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o600)).unwrap();
    let options = config.pg_options("node").unwrap().unwrap();
    assert_eq!(options.password.as_deref(), Some("s3cret"));
    assert_eq!(options.node, "node");
    assert!(
        parse("", &file)
            .unwrap()
            .pg_options("node")
            .unwrap()
            .is_none()
    );
}
