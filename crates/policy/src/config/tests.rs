//! The policy sections, one mistake at a time: each problem's words and line.

use std::path::Path;
use std::time::Duration;

use super::rules::check_source_address;
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
        r#"principal_format: "{{login}}@{{host}}"
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

/// The config is accepted, with exactly this one warning.
fn one_warning(from: &str, to: &str, want: &str) {
    let text = good().replacen(from, to, 1);
    assert_ne!(text, good(), "{from} not found");
    let config = parse(&text, file()).unwrap_or_else(|e| panic!("refused: {e}"));
    let warnings: Vec<String> = config.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(warnings, [want], "replacing {from:?} by {to:?}");
}

/// Found by the `config` fuzz target: ssh-key's error for a key whose base64 blob holds a
/// bad algorithm label quotes the decoded label, raw bytes and all, so a key line in
/// `users:` could put a NUL or a terminal escape into `jitca check`'s output.
#[test]
fn a_key_line_cannot_put_control_characters_in_a_message() {
    for blob in [
        // label "ssh-\e[31mevil\e[0m", then 32 bytes
        "AAAAEXNzaC0bWzMxbWV2aWwbWzBtAAAAIEFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB",
        // the fuzzer's own: label "ssh-ed2551\0"
        "AAAAC3NzaC1lZDI1NTEAAAIAL5790iB1MeLni7B9gfz5XF4n0o6CzF/SWeyc47pImmLz",
    ] {
        let text = good().replacen(ALICE, &format!("ssh-ed25519 {blob} a@test"), 1);
        let found = errors(&text);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].contains("users.alice.keys[0]: not an OpenSSH public key"),
            "{found:?}"
        );
        assert!(
            !found[0].chars().any(char::is_control),
            "raw control character in {:?}",
            found[0]
        );
    }
}

#[test]
fn a_group_nobody_is_in_is_one_warning_naming_its_rules() {
    // The last member of dev leaves: the config stays good (offboarding goes through).
    let text = good().replacen("groups: [dev]", "groups: []", 1);
    assert_ne!(text, good());
    let config = parse(&text, file()).unwrap_or_else(|e| panic!("refused: {e}"));
    assert!(config.policy.user("alice").is_some());
    assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
    let line = config.warnings[0].to_string();
    assert!(line.contains("warning: group dev has no members"), "{line}");
    assert!(line.contains("rule dev-web"), "{line}");
    assert!(!line.contains('\n'));
}

#[test]
fn a_host_in_two_host_groups_is_fine() {
    let text = good().replace("db: [db1]", "db: [db1, web1]");
    assert!(parse(&text, file()).is_ok());
}

#[test]
fn principal_format() {
    let at = |format: &str| errors(&format!("principal_format: '{format}'\n"));
    let prefix = "/etc/jitca/jitca.yaml:1: principal_format: ";
    assert_eq!(at("{login}"), [format!("{prefix}must contain {{host}}")]);
    assert_eq!(at("{host}"), [format!("{prefix}must contain {{login}}")]);
    assert_eq!(
        at("x"),
        [
            format!("{prefix}must contain {{login}}"),
            format!("{prefix}must contain {{host}}")
        ]
    );
    assert_eq!(
        at("{login}@{host}@{host}"),
        [format!("{prefix}contains {{host}} more than once")]
    );
    assert!(at("{login} {host}")[0].contains("contains whitespace"));
    assert!(at("{login}@{host}\t")[0].contains("contains whitespace"));
    assert!(at("{login}\u{e9}{host}")[0].contains("other than printable ASCII"));
    assert_eq!(
        at("{login},{host}"),
        [format!("{prefix}contains ',', which separates principals")]
    );
    assert!(at("{login}@{user}")[0].contains("has a '{' that is not part of {login} or {host}"));
    assert!(at("{login}@{host}}")[0].contains("has a '}'"));
    assert!(at("{{login}@{host}")[0].contains("has a '{'"));
    assert!(at("#{login}@{host}")[0].contains("must not start with '#'"));
    assert!(at("")[0].contains("is empty"));
    // Without a separator, deploy+web1 and deploy-+web1 ... could collide: refused.
    for ambiguous in [
        "{login}{host}",
        "{login}.{host}",
        "{login}-x_{host}",
        "@{login}{host}@",
    ] {
        assert!(
            at(ambiguous)[0].contains("needs a separator"),
            "{ambiguous}"
        );
    }
    for fine in [
        "{login}@{host}",
        "{host}:{login}",
        "x{login}/{host}.y",
        "{login}-@-{host}",
    ] {
        assert!(
            parse(&format!("principal_format: '{fine}'\n"), file()).is_ok(),
            "{fine}"
        );
    }
}

#[test]
fn user_names_and_groups() {
    one_error(
        "  carol:",
        "  \"c@rol\":",
        "/etc/jitca/jitca.yaml:10: users.\"c@rol\": name \"c@rol\" contains '@', which is not allowed; use letters, digits, '_', '.' and '-'",
    );
    one_error(
        "groups: [dev]",
        "groups: [dev, dev]",
        "/etc/jitca/jitca.yaml:5: users.alice.groups[1]: group dev is listed twice",
    );
    one_error(
        "groups: [dev]",
        "groups: [dev, \"-x\"]",
        "/etc/jitca/jitca.yaml:5: users.alice.groups[1]: name \"-x\" must not start with '-'",
    );
    let text = good().replace("hosts:\n", "  alice:\n    keys: []\nhosts:\n");
    assert_eq!(
        errors(&text),
        ["/etc/jitca/jitca.yaml:13: users.alice: user \"alice\" is defined more than once"]
    );
}

#[test]
fn user_keys() {
    one_error(
        &format!("[\"{ALICE}\"]"),
        "[\"ssh-ed25519 AAAAnotakey\"]",
        "/etc/jitca/jitca.yaml:4: users.alice.keys[0]: not an OpenSSH public key: Base64 encoding error: invalid Base64 encoding",
    );
    let garbage = errors(&good().replacen(ALICE, "hello", 1));
    assert!(
        garbage[0].starts_with(
            "/etc/jitca/jitca.yaml:4: users.alice.keys[0]: not an OpenSSH public key: "
        ),
        "{garbage:?}"
    );
    let cert = "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIEnu4a6Ghx b@test";
    one_error(
        ALICE,
        cert,
        "/etc/jitca/jitca.yaml:4: users.alice.keys[0]: this is a certificate, not a public key; give the key's line from its .pub file",
    );
    let private = errors(&good().replacen(
            &format!("[\"{ALICE}\"]"),
            "\n      - |\n        -----BEGIN OPENSSH PRIVATE KEY-----\n        b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n        -----END OPENSSH PRIVATE KEY-----\n",
            1,
        ));
    assert_eq!(private.len(), 1);
    // The line of the block scalar's first line of text.
    assert!(
        private[0]
            .starts_with("/etc/jitca/jitca.yaml:6: users.alice.keys[0]: this is a private key"),
        "{private:?}"
    );
    assert!(!private[0].contains("b3BlbnNz"), "never echo key material");
    let dsa = "ssh-dss AAAAB3NzaC1kc3MAAACBAIA/YifC7a0F0DkrRzA/9XI6HniCwl9zlz3XmBjFg92sArvSrjU4V+bgwev0rR1jRKr8YatGVkE4z7zQ87cEwUYioD6JjUeXd0mUFYtWfm0Q0Rm3Wg/hKDK8IiADykZItxThNtTqyZ5l5QwK8ZGUDS83Uxk32cHXWmgJ0O/kjlWnAAAAFQCyuHeIlEE8o/ElBzuoYi98epdd1QAAAIAgpUfW6GvkVXDcue4+R2IxI38cgFoYq7StK5fYnCcck0tAsIpW6+8cdmreIB/xGqwBciwokb38MX/XfC84rH61YGF+Y4oR+sVxLDahAsxMCuUkZsygRWa0GR43X3v6CVyp1oY7CV/CzcEz+bFIUqB5Botf00+MjoJ8DyP7qFYzdwAAAIAaAaj2wPySvTr5kNapXlioLr9yliQ0hmkcDoRI9FcP0kiQuPD4LmaCYMPuLg6neqR6yG3Mt9Ml+ZYhDM8hi/t4PmrsXvCNEaqTQFxJdn1/3qhMqo3wO1cjhfGCpfWvoFYAiI6dBJaR6poRNIFJSsyjLovjEYlZ7t+0Umi6f+s2TA== root@vm";
    let dsa_errors = errors(&good().replacen(ALICE, dsa, 1));
    assert_eq!(
        dsa_errors,
        [
            "/etc/jitca/jitca.yaml:4: users.alice.keys[0]: DSA keys are refused (OpenSSH no longer supports them); use ed25519"
        ]
    );
}

#[test]
fn weak_rsa_keys_are_refused() {
    let rsa1024 = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQCw7PYF7anurcpuKOatUhMTx935KkaT/JxhkEyXthXthJjsFALco6nZ1WXdQ1z4L5FFIi5CIb5VN1gP7IWIAwTEKs12U5L6Y9OaXl0h3Xh1d+qlMFfzmLaDqEBJIb7uxhbPen+YeXqrdCqh4HjXQW3KzujHT+DWhFB32rPm61I2dw== root@vm";
    let got = errors(&good().replacen(ALICE, rsa1024, 1));
    assert_eq!(
        got,
        [
            "/etc/jitca/jitca.yaml:4: users.alice.keys[0]: RSA key of 1024 bits is too weak (at least 2048); use ed25519"
        ]
    );
}

#[test]
fn a_key_identifies_one_user() {
    // The same key with another comment under bob.
    let same = ALICE.replace("a@test", "other comment");
    one_error(
        &format!("      - \"{BOB}\""),
        &format!("      - \"{BOB}\"\n      - \"{same}\""),
        "/etc/jitca/jitca.yaml:9: users.bob.keys[1]: the same key as users.alice.keys[0]; a key must identify exactly one user",
    );
    one_error(
        &format!("[\"{ALICE}\"]"),
        &format!("[\"{ALICE}\", \"{ALICE}\"]"),
        "/etc/jitca/jitca.yaml:4: users.alice.keys[1]: the same key as users.alice.keys[0]; a key must identify exactly one user",
    );
}

#[test]
fn host_groups() {
    one_error(
        "web: [web1, web2]",
        "web: [web1, \"web*\"]",
        "/etc/jitca/jitca.yaml:14: hosts.web[1]: host name \"web*\" contains '*', which is not allowed; use letters, digits, '.', '-' and '_'",
    );
    one_error(
        "web: [web1, web2]",
        "web: [web1, web1]",
        "/etc/jitca/jitca.yaml:14: hosts.web[1]: host web1 is listed twice",
    );
    one_error(
        "db: [db1]",
        "db: []",
        "/etc/jitca/jitca.yaml:15: hosts.db: lists no hosts",
    );
    one_error(
        "db: [db1]",
        "\"d b\": [db1]",
        "/etc/jitca/jitca.yaml:15: hosts.\"d b\": name \"d b\" contains a space, which is not allowed; use letters, digits, '_', '.' and '-'",
    );
    one_error(
        "db: [db1]",
        "db: [db1]\n  web: [web9]",
        "/etc/jitca/jitca.yaml:16: hosts.web: host group \"web\" is defined more than once",
    );
}

#[test]
fn rule_names() {
    let second = "\n  - name: dev-web\n    requesters: [dev]\n    hosts: [db]\n    logins: [root]\n    max_duration: 1h\n    approvals: 0\n";
    let text = good().replace(
        "auditors:",
        &format!("{}auditors:", second.trim_start_matches('\n')),
    );
    assert_eq!(
        errors(&text),
        ["/etc/jitca/jitca.yaml:23: rules[1].name: rule name dev-web is already used by rules[0]"]
    );
    one_error(
        "name: dev-web",
        "name: \"dev web\"",
        "/etc/jitca/jitca.yaml:17: rules[0].name: name \"dev web\" contains a space, which is not allowed; use letters, digits, '_', '.' and '-'",
    );
}

#[test]
fn rule_references_must_exist() {
    one_warning(
        "requesters: [dev]",
        "requesters: [devs]",
        "/etc/jitca/jitca.yaml:18: warning: group devs has no members (no user lists it in groups); rule dev-web: nobody can use that until someone joins it",
    );
    one_error(
        "hosts: [web]",
        "hosts: [web, web1]",
        "/etc/jitca/jitca.yaml:19: rules[0].hosts[1]: host group web1 does not exist (it is not defined under hosts)",
    );
    one_warning(
        "approvers: [sre]",
        "approvers: [sre, ops]",
        "/etc/jitca/jitca.yaml:22: warning: group ops has no members (no user lists it in groups); rule dev-web: nobody can use that until someone joins it",
    );
    one_warning(
        "auditors: [audit]",
        "auditors: [audit, auditors]",
        "/etc/jitca/jitca.yaml:23: warning: group auditors has no members (no user lists it in groups); auditors: nobody can use that until someone joins it",
    );
    one_error(
        "requesters: [dev]",
        "requesters: [dev, dev]",
        "/etc/jitca/jitca.yaml:18: rules[0].requesters[1]: group dev is listed twice",
    );
    one_error(
        "hosts: [web]",
        "hosts: [web, web]",
        "/etc/jitca/jitca.yaml:19: rules[0].hosts[1]: host group web is listed twice",
    );
    assert!(parse(&good().replace("auditors: [audit]", "auditors: []"), file()).is_ok());
}

#[test]
fn rule_lists_must_not_be_empty() {
    one_error(
        "requesters: [dev]",
        "requesters: []",
        "/etc/jitca/jitca.yaml:18: rules[0].requesters: is empty; name at least one group",
    );
    one_error(
        "hosts: [web]",
        "hosts: []",
        "/etc/jitca/jitca.yaml:19: rules[0].hosts: is empty; name at least one host group",
    );
    one_error(
        "logins: [deploy]",
        "logins: []",
        "/etc/jitca/jitca.yaml:20: rules[0].logins: is empty; name at least one login",
    );
}

#[test]
fn rule_logins() {
    one_error(
        "logins: [deploy]",
        "logins: [deploy, Root]",
        "/etc/jitca/jitca.yaml:20: rules[0].logins[1]: login \"Root\" contains 'R', which is not allowed; use lowercase letters, digits, '_', '.' and '-'",
    );
    one_error(
        "logins: [deploy]",
        "logins: [deploy, deploy]",
        "/etc/jitca/jitca.yaml:20: rules[0].logins[1]: login deploy is listed twice",
    );
}

#[test]
fn governance_settings_of_a_rule() {
    let text = good().replacen(
            "    approvers: [sre]\n",
            "    approvers: [sre]\n    reason_pattern: \"^(INC|CHG)-[0-9]+\"\n    review: required\n    \
             requester_mfa: totp\n    approver_mfa: totp\n  - name: glass\n    requesters: [dev]\n    \
             hosts: [web]\n    logins: [deploy]\n    max_duration: 1h\n    break_glass: true\n    \
             approvers: [sre]\noperators: [sre]\n",
            1,
        );
    let config = parse(&text, file()).unwrap();
    let rule = config.policy.rule("dev-web").unwrap();
    let pattern = rule.reason_pattern.as_ref().unwrap();
    assert!(pattern.is_match("INC-42 disk full"));
    assert!(!pattern.is_match("disk full INC-42"));
    assert!(rule.review_required && rule.requester_mfa && rule.approver_mfa);
    assert!(!rule.break_glass);
    let glass = config.policy.rule("glass").unwrap();
    // Break-glass: no approvals, and always reviewed.
    assert!(glass.break_glass && glass.review_required);
    assert_eq!(glass.approvals, 0);
    // Break-glass rules answer only break-glass asks, and only they do.
    let ask = |break_glass| crate::Ask {
        hosts: vec!["web1".into()],
        logins: vec!["deploy".into()],
        duration: Duration::from_secs(1800),
        break_glass,
    };
    let ordinary = config.policy.decide_request("alice", &ask(false)).unwrap();
    assert_eq!(
        (ordinary.rule.as_str(), ordinary.approvals_needed),
        ("dev-web", 1)
    );
    assert!(!ordinary.break_glass);
    let urgent = config.policy.decide_request("alice", &ask(true)).unwrap();
    assert_eq!(
        (urgent.rule.as_str(), urgent.approvals_needed),
        ("glass", 0)
    );
    assert!(urgent.break_glass);
    let mut db = ask(true);
    db.hosts = vec!["db1".into()];
    assert_eq!(
        config
            .policy
            .decide_request("alice", &db)
            .unwrap_err()
            .to_string(),
        "no break-glass rule lets alice request login deploy on db1"
    );
    assert!(config.policy.is_operator("carol"));
    assert!(!config.policy.is_operator("alice"));
}

#[test]
fn governance_mistakes_are_named() {
    let at = "/etc/jitca/jitca.yaml:23: rules[0].";
    let max_at = "/etc/jitca/jitca.yaml:21: rules[0].";
    one_error(
        "    approvers: [sre]\n",
        "    approvers: [sre]\n    reason_pattern: \"(INC\"\n",
        &format!("{at}reason_pattern: \"(INC\" is not a regular expression: unclosed group"),
    );
    one_error(
        "    approvers: [sre]\n",
        "    approvers: [sre]\n    review: sometimes\n",
        &format!("{at}review: \"sometimes\" is not a review setting; write required or optional"),
    );
    one_error(
        "    approvers: [sre]\n",
        "    approvers: [sre]\n    approver_mfa: sms\n",
        &format!("{at}approver_mfa: \"sms\" is not a second factor; write totp (or none)"),
    );
    one_error(
        "    approvers: [sre]\n",
        "    approvers: [sre]\n    break_glass: true\n    approvals: 1\n",
        "/etc/jitca/jitca.yaml:24: rules[0].approvals: is 1, but a break_glass rule issues at once without approval; \
             remove approvals (its approvers review each use afterwards)",
    );
    one_error(
        "    max_duration: 2h\n",
        "    max_duration: 5h\n    break_glass: true\n",
        &format!("{max_at}max_duration: 5h is longer than the most jitca allows (4h)"),
    );
    one_warning(
        "auditors: [audit]\n",
        "auditors: [audit]\noperators: [ops]\n",
        "/etc/jitca/jitca.yaml:24: warning: group ops has no members (no user lists it in groups); operators: nobody can use that until someone joins it",
    );
}

#[test]
fn rule_durations() {
    let at = "/etc/jitca/jitca.yaml:21: rules[0].max_duration: ";
    one_error(
        "max_duration: 2h",
        "max_duration: 0h",
        &format!("{at}must be more than zero"),
    );
    one_error(
        "max_duration: 2h",
        "max_duration: 8d",
        &format!("{at}8d is longer than the most jitca allows (7d)"),
    );
    one_error(
        "max_duration: 2h",
        "max_duration: 169h",
        &format!("{at}169h is longer than the most jitca allows (7d)"),
    );
    one_error(
        "max_duration: 2h",
        "max_duration: 2 hours",
        &format!(
            "{at}cannot read \"2 hours\": unknown duration unit \" hours\"; use s, m, h or d (like 90s, 15m, 2h, 1d)"
        ),
    );
    one_error(
        "max_duration: 2h",
        "max_duration: 7200",
        &format!(
            "{at}cannot read \"7200\": a duration needs a unit after the number: s, m, h or d (like 90s, 15m, 2h, 1d)"
        ),
    );
    assert!(
        parse(
            &good().replace("max_duration: 2h", "max_duration: 7d"),
            file()
        )
        .is_ok()
    );
}

#[test]
fn approvals() {
    one_error(
        "    approvers: [sre]\n",
        "",
        "/etc/jitca/jitca.yaml:17: rules[0].approvers: approvals is 1 but the rule names no approvers; add approvers: [GROUP] or set approvals: 0",
    );
    one_warning(
        "    approvers: [sre]\n",
        "    approvals: 3\n    approvers: [sre]\n",
        "/etc/jitca/jitca.yaml:22: warning: rules[0].approvals: needs 3 approvals but only 2 users may approve under this rule (bob, carol), so no request under it can be approved until more join",
    );
    // Members are counted once even when in two approver groups.
    one_warning(
        "    approvers: [sre]\n",
        "    approvals: 3\n    approvers: [sre, audit]\n",
        "/etc/jitca/jitca.yaml:22: warning: rules[0].approvals: needs 3 approvals but only 2 users may approve under this rule (bob, carol), so no request under it can be approved until more join",
    );
    assert!(
        parse(
            &good().replace(
                "    approvers: [sre]\n",
                "    approvals: 2\n    approvers: [sre]\n"
            ),
            file()
        )
        .is_ok()
    );
    assert!(
        parse(
            &good().replace("    approvers: [sre]\n", "    approvals: 0\n"),
            file()
        )
        .is_ok()
    );
}

#[test]
fn approvals_with_a_single_approver() {
    let text = good().replace("approvers: [sre]", "approvals: 2\n    approvers: [dev]");
    let warnings: Vec<String> = parse(&text, file())
        .unwrap()
        .warnings
        .iter()
        .map(|w| w.to_string())
        .collect();
    assert_eq!(
        warnings,
        [
            "/etc/jitca/jitca.yaml:22: warning: rules[0].approvals: needs 2 approvals but only 1 user may approve under this rule (alice), so no request under it can be approved until more join"
        ]
    );
}

#[test]
fn extensions() {
    one_error(
        "    approvers: [sre]\n",
        "    approvers: [sre]\n    extensions: [permit-pty, permit-everything]\n",
        "/etc/jitca/jitca.yaml:23: rules[0].extensions[1]: unknown extension \"permit-everything\"; known: permit-X11-forwarding, permit-agent-forwarding, permit-port-forwarding, permit-pty, permit-user-rc, no-touch-required",
    );
    one_error(
        "    approvers: [sre]\n",
        "    approvers: [sre]\n    extensions: [permit-pty, permit-pty]\n",
        "/etc/jitca/jitca.yaml:23: rules[0].extensions[1]: extension permit-pty is listed twice",
    );
    for known in KNOWN_EXTENSIONS {
        let text = good().replace(
            "    approvers: [sre]\n",
            &format!("    approvers: [sre]\n    extensions: [{known}]\n"),
        );
        assert!(parse(&text, file()).is_ok(), "{known}");
    }
}

#[test]
fn force_command() {
    let with = |value: &str| {
        good().replace(
            "    approvers: [sre]\n",
            &format!("    approvers: [sre]\n    force_command: {value}\n"),
        )
    };
    assert_eq!(
        errors(&with("\"\"")),
        [
            "/etc/jitca/jitca.yaml:23: rules[0].force_command: is empty; give a command or remove force_command"
        ]
    );
    assert_eq!(errors(&with("\"  \"")).len(), 1);
    assert_eq!(
        errors(&with("\"ls\\nrm -rf /\"")),
        [
            "/etc/jitca/jitca.yaml:23: rules[0].force_command: contains a control character (U+000A); a command is one line of text"
        ]
    );
    assert!(errors(&with("\"ls\\u001b\""))[0].contains("U+001B"));
    assert!(parse(&with("\"/usr/bin/journalctl -u app -f\""), file()).is_ok());
}

#[test]
fn source_address() {
    for ok in [
        "10.0.0.0/8",
        "192.0.2.7",
        "10.0.0.0/8,192.0.2.7/32",
        "::1",
        "2001:db8::/32",
        "0.0.0.0/0",
        "::/0",
    ] {
        assert_eq!(check_source_address(ok), Ok(()), "{ok}");
    }
    let cases = [
        ("", "is empty"),
        ("10.0.0.0/8,", "has an empty entry"),
        (
            "10.0.0.0/8, 192.0.2.7",
            "\" 192.0.2.7\" is not an IP address",
        ),
        ("example.com", "\"example.com\" is not an IP address"),
        ("10.0.0.*", "is not an IP address"),
        (
            "10.0.0.0/33",
            "\"10.0.0.0/33\" has a bad prefix length (0 to 32 for IPv4)",
        ),
        ("::/129", "has a bad prefix length (0 to 128 for IPv6)"),
        ("10.0.0.0/", "bad prefix length"),
        ("10.0.0.0/+8", "bad prefix length"),
        ("10.0.0.0/8/8", "bad prefix length"),
        ("10.0.0.1/8", "has bits set after the prefix length"),
        ("2001:db8::1/32", "has bits set after the prefix length"),
        ("fe80::1%eth0", "is not an IP address"),
    ];
    for (value, want) in cases {
        let got = check_source_address(value).unwrap_err();
        assert!(got.contains(want), "{value}: {got}");
    }
    let text = good().replace(
        "    approvers: [sre]\n",
        "    approvers: [sre]\n    source_address: \"10.0.0.1/8\"\n",
    );
    assert_eq!(
        errors(&text),
        [
            "/etc/jitca/jitca.yaml:23: rules[0].source_address: \"10.0.0.1/8\" has bits set after the prefix length; write the network address"
        ]
    );
}
