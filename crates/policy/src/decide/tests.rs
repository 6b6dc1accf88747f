//! The decisions, on a policy parsed from a config text.

use super::*;
use std::path::Path;

const ALICE: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFcMnCu5Au53n0Smp6vhsN8/xGdrmt2Rop3g44zKrrmD a@test";
const BOB: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMzM1BPS6NTQ1xrLOF0d6NmSsBIY2EHJ6khjP4iEFDc0 b@test";
const CAROL: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFiPMJr4kDcTOZUGs2BNEay6XmIQ5mPA52MRVQMVr4lv c@test";
const DAVE: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIItb6dTh8xJDuu1bQkrZX4aSt2wTzdvmMt+YA2Ys2q0M d@test";
const ERIN: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBE1co3Pa6sVYJF+dO2AhSCQfVF27ALxNTfTUy7eVL8F9EIokFmDe4bCNFoWX1ZQ1wA7lMqUQ0gVHEAd+QR2f5kE= e@test";

/// alice: dev; bob: sre, dev; carol: sre; dave: audit; erin: ops (requests db, self-approving
/// group).
fn config_text() -> String {
    format!(
        r#"
principal_format: "{{login}}@{{host}}"
users:
  alice: {{ keys: ["{ALICE}"], groups: [dev] }}
  bob: {{ keys: ["{BOB}"], groups: [sre, dev] }}
  carol: {{ keys: ["{CAROL}"], groups: [sre] }}
  dave: {{ keys: ["{DAVE}"], groups: [audit] }}
  erin: {{ keys: ["{ERIN}"], groups: [ops] }}
hosts:
  web: [web1, web2]
  web-extra: [web3]
  db: [db1]
  staging: [stage1, web1]
rules:
  - name: dev-web
    requesters: [dev]
    hosts: [web, web-extra]
    logins: [deploy]
    max_duration: 2h
    approvers: [sre]
    extensions: [permit-pty, permit-agent-forwarding]
  - name: dev-web-app
    requesters: [dev]
    hosts: [web]
    logins: [deploy, app]
    max_duration: 8h
    approvals: 2
    approvers: [sre]
    force_command: "journalctl -f"
  - name: staging
    requesters: [dev, ops]
    hosts: [staging]
    logins: [deploy]
    max_duration: 1d
    approvals: 0
  - name: ops-db
    requesters: [ops]
    hosts: [db]
    logins: [root, postgres]
    max_duration: 1h
    approvals: 1
    approvers: [sre, ops, dev]
    source_address: "10.0.0.0/8"
auditors: [audit]
"#
    )
}

fn policy() -> Policy {
    crate::parse(&config_text(), Path::new("/etc/jitca/jitca.yaml"))
        .unwrap()
        .policy
}

fn ask(hosts: &[&str], logins: &[&str], secs: u64) -> Ask {
    Ask {
        hosts: hosts.iter().map(|s| s.to_string()).collect(),
        logins: logins.iter().map(|s| s.to_string()).collect(),
        duration: Duration::from_secs(secs),
        break_glass: false,
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn lookups() {
    let p = policy();
    assert_eq!(p.user("bob").unwrap().groups, strings(&["sre", "dev"]));
    assert!(p.user("mallory").is_none());
    let names: Vec<&str> = p.users().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["alice", "bob", "carol", "dave", "erin"]);
    assert_eq!(p.principal_format(), "{login}@{host}");
    assert_eq!(
        p.rule("ops-db").unwrap().logins,
        strings(&["root", "postgres"])
    );
    assert!(p.rule("nope").is_none());
    assert_eq!(p.rules().len(), 4);
    assert_eq!(p.auditor_groups(), strings(&["audit"]).as_slice());
    let groups: Vec<&str> = p.host_groups().map(|(g, _)| g).collect();
    assert_eq!(groups, ["web", "web-extra", "db", "staging"]);
}

/// The blob a client presents for the key of `line`: its base64 word, decoded.
fn blob(line: &str) -> Vec<u8> {
    let word = line.split(' ').nth(1).unwrap();
    data_encoding::BASE64.decode(word.as_bytes()).unwrap()
}

#[test]
fn identify_compares_key_data_not_comment() {
    let p = policy();
    // The blob carries no comment: bob's line says b@test, a client sends none.
    assert_eq!(p.identify(&blob(BOB)).unwrap().name, "bob");
    assert_eq!(p.identify(&blob(ERIN)).unwrap().name, "erin");
    let stranger =
        blob("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJgizcDTwtD+nPtrkjU/FZilJ0Fpr2jtPcBWQuvCeKFa x");
    assert!(p.identify(&stranger).is_none());
    let mut near = blob(BOB);
    *near.last_mut().unwrap() ^= 1;
    assert!(p.identify(&near).is_none());
    assert!(p.identify(&[]).is_none());
}

#[test]
fn principals_are_rendered_in_one_pass() {
    let p = policy();
    assert_eq!(p.principal("deploy", "web1"), "deploy@web1");
    // A replacement that looks like a placeholder is not expanded again.
    assert_eq!(p.principal("{host}", "web1"), "{host}@web1");
    let custom = crate::parse(
        "principal_format: \"x-{host}:{login}.y\"\n",
        Path::new("j.yaml"),
    )
    .unwrap()
    .policy;
    assert_eq!(custom.principal("deploy", "web1"), "x-web1:deploy.y");
}

#[test]
fn first_covering_rule_wins_with_everything_the_certificate_carries() {
    let p = policy();
    let grant = p
        .decide_request("alice", &ask(&["web2", "web1"], &["deploy"], 3600))
        .unwrap();
    assert_eq!(
        grant,
        Grant {
            rule: "dev-web".into(),
            hosts: strings(&["web2", "web1"]),
            logins: strings(&["deploy"]),
            principals: strings(&["deploy@web2", "deploy@web1"]),
            duration: Duration::from_secs(3600),
            approvals_needed: 1,
            extensions: strings(&["permit-agent-forwarding", "permit-pty"]),
            critical_options: BTreeMap::new(),
            break_glass: false,
        }
    );
}

#[test]
fn hosts_may_span_host_groups_of_one_rule() {
    let p = policy();
    let grant = p
        .decide_request("alice", &ask(&["web1", "web3"], &["deploy"], 60))
        .unwrap();
    assert_eq!(grant.rule, "dev-web");
    assert_eq!(grant.principals, strings(&["deploy@web1", "deploy@web3"]));
}

#[test]
fn a_later_rule_wins_when_the_first_does_not_cover_every_login() {
    let p = policy();
    let grant = p
        .decide_request("alice", &ask(&["web1", "web2"], &["app", "deploy"], 3600))
        .unwrap();
    assert_eq!(grant.rule, "dev-web-app");
    assert_eq!(grant.approvals_needed, 2);
    assert_eq!(
        grant.principals,
        strings(&["app@web1", "app@web2", "deploy@web1", "deploy@web2"])
    );
    assert_eq!(grant.extensions, strings(&["permit-pty"]));
    assert_eq!(
        grant.critical_options,
        BTreeMap::from([("force-command".to_string(), "journalctl -f".to_string())])
    );
}

#[test]
fn repeats_in_the_ask_are_dropped() {
    let p = policy();
    let grant = p
        .decide_request("alice", &ask(&["web1", "web1"], &["deploy", "deploy"], 60))
        .unwrap();
    assert_eq!(grant.hosts, strings(&["web1"]));
    assert_eq!(grant.principals, strings(&["deploy@web1"]));
}

#[test]
fn zero_approvals_and_critical_options_pass_through() {
    let p = policy();
    let grant = p
        .decide_request("erin", &ask(&["stage1"], &["deploy"], 60))
        .unwrap();
    assert_eq!(
        (grant.rule.as_str(), grant.approvals_needed),
        ("staging", 0)
    );
    let grant = p
        .decide_request("erin", &ask(&["db1"], &["root"], 60))
        .unwrap();
    assert_eq!(
        grant.critical_options,
        BTreeMap::from([("source-address".to_string(), "10.0.0.0/8".to_string())])
    );
}

#[test]
fn duration_too_long_under_the_first_covering_rule_is_not_passed_on() {
    let p = policy();
    // dev-web covers it but allows 2h; dev-web-app (8h) also covers it but comes later.
    let denial = p
        .decide_request("alice", &ask(&["web1"], &["deploy"], 3 * 3600))
        .unwrap_err();
    assert_eq!(
        denial,
        Denial::DurationTooLong {
            requested: Duration::from_secs(3 * 3600),
            max: Duration::from_secs(2 * 3600),
            rule: "dev-web".into(),
        }
    );
    assert_eq!(
        denial.to_string(),
        "3h is longer than rule dev-web allows (2h)"
    );
    // Exactly max_duration is fine.
    assert!(
        p.decide_request("alice", &ask(&["web1"], &["deploy"], 2 * 3600))
            .is_ok()
    );
}

#[test]
fn unknown_requester() {
    let denial = policy()
        .decide_request("mallory", &ask(&["web1"], &["deploy"], 60))
        .unwrap_err();
    assert_eq!(denial, Denial::UnknownUser("mallory".into()));
    assert_eq!(denial.to_string(), "mallory is not a registered user");
}

#[test]
fn unknown_host() {
    let denial = policy()
        .decide_request("alice", &ask(&["web1", "web9"], &["deploy"], 60))
        .unwrap_err();
    assert_eq!(denial, Denial::UnknownHost("web9".into()));
    assert_eq!(denial.to_string(), "host web9 is not in any host group");
}

#[test]
fn empty_asks_are_refused_never_granted_without_principals() {
    let p = policy();
    assert_eq!(
        p.decide_request("alice", &ask(&[], &["deploy"], 60)),
        Err(Denial::NoHosts)
    );
    assert_eq!(
        p.decide_request("alice", &ask(&["web1"], &[], 60)),
        Err(Denial::NoLogins)
    );
    assert_eq!(
        p.decide_request("alice", &ask(&["web1"], &["deploy"], 0)),
        Err(Denial::ZeroDuration)
    );
}

#[test]
fn no_rule_names_the_first_uncovered_pair() {
    let p = policy();
    let denial = p
        .decide_request("alice", &ask(&["web1", "db1"], &["deploy", "root"], 60))
        .unwrap_err();
    assert_eq!(
        denial,
        Denial::NoRule {
            break_glass: false,
            requester: "alice".into(),
            login: "deploy".into(),
            host: "db1".into(),
        }
    );
    assert_eq!(
        denial.to_string(),
        "no rule lets alice request login deploy on db1"
    );
    // A rule for another group does not count: ops-db covers root@db1, but not for alice.
    let denial = p
        .decide_request("alice", &ask(&["db1"], &["root"], 60))
        .unwrap_err();
    assert_eq!(
        denial.to_string(),
        "no rule lets alice request login root on db1"
    );
    // A login outside every rule.
    let denial = p
        .decide_request("alice", &ask(&["web1"], &["root"], 60))
        .unwrap_err();
    assert_eq!(
        denial.to_string(),
        "no rule lets alice request login root on web1"
    );
    // A user with no rule at all.
    let denial = p
        .decide_request("dave", &ask(&["web1"], &["deploy"], 60))
        .unwrap_err();
    assert_eq!(
        denial.to_string(),
        "no rule lets dave request login deploy on web1"
    );
}

#[test]
fn pairs_covered_by_different_rules_need_separate_requests() {
    let p = policy();
    // deploy@web3 only under dev-web; app@web1 only under dev-web-app.
    let denial = p
        .decide_request("alice", &ask(&["web1", "web3"], &["deploy", "app"], 60))
        .unwrap_err();
    // app@web3 is covered by no rule: named first.
    assert_eq!(
        denial,
        Denial::NoRule {
            break_glass: false,
            requester: "alice".into(),
            login: "app".into(),
            host: "web3".into(),
        }
    );
    // stage1 under staging, web3 under dev-web: each pair covered, no single rule.
    let denial = p
        .decide_request("alice", &ask(&["stage1", "web3"], &["deploy"], 60))
        .unwrap_err();
    assert_eq!(
        denial,
        Denial::NoSingleRule {
            requester: "alice".into()
        }
    );
    assert!(denial.to_string().contains("separate requests"));
}

#[test]
fn denials_never_echo_control_characters() {
    let denial = policy()
        .decide_request("alice", &ask(&["web\x1b[2J"], &["deploy"], 60))
        .unwrap_err();
    let text = denial.to_string();
    assert_eq!(text, "host \"web\\u{1b}[2J\" is not in any host group");
    let denial = Denial::UnknownUser("a\u{202e}b".into());
    assert_eq!(
        denial.to_string(),
        "\"a\\u{202e}b\" is not a registered user"
    );
}

#[test]
fn approval_by_an_eligible_other_user() {
    let p = policy();
    let grant = p
        .decide_request("alice", &ask(&["web1"], &["deploy"], 60))
        .unwrap();
    assert_eq!(p.check_approver("carol", "alice", &grant).map(drop), Ok(()));
    assert_eq!(p.check_approver("bob", "alice", &grant).map(drop), Ok(()));
    assert_eq!(
        p.eligible_approvers("alice", &grant),
        strings(&["bob", "carol"])
    );
}

#[test]
fn self_approval_is_refused_even_for_an_approver() {
    let p = policy();
    // bob is in dev (may request) and in sre (may approve).
    let grant = p
        .decide_request("bob", &ask(&["web1"], &["deploy"], 60))
        .unwrap();
    let denial = p.check_approver("bob", "bob", &grant).unwrap_err();
    assert_eq!(denial, Denial::SelfApproval);
    assert_eq!(denial.to_string(), "you cannot approve your own request");
    assert_eq!(p.eligible_approvers("bob", &grant), strings(&["carol"]));
}

#[test]
fn approver_outside_the_approvers_groups() {
    let p = policy();
    let grant = p
        .decide_request("alice", &ask(&["web1"], &["deploy"], 60))
        .unwrap();
    let denial = p.check_approver("dave", "alice", &grant).unwrap_err();
    assert_eq!(
        denial,
        Denial::NotEligible {
            approver: "dave".into(),
            rule: "dev-web".into()
        }
    );
    assert_eq!(
        denial.to_string(),
        "dave may not approve requests under rule dev-web"
    );
    assert_eq!(
        p.check_approver("mallory", "alice", &grant),
        Err(Denial::UnknownUser("mallory".into()))
    );
}

#[test]
fn approval_re_judges_the_request_under_the_current_policy() {
    let p = policy();
    let grant = p
        .decide_request("alice", &ask(&["web1"], &["deploy"], 3600))
        .unwrap();

    // The rule's max_duration shrank below the grant's duration.
    let shorter = crate::parse(
        &config_text().replace("max_duration: 2h", "max_duration: 30m"),
        Path::new("j.yaml"),
    )
    .unwrap()
    .policy;
    assert_eq!(
        shorter.check_approver("carol", "alice", &grant),
        Err(Denial::PolicyChanged)
    );
    assert!(shorter.eligible_approvers("alice", &grant).is_empty());

    // The rule gained an extension: the grant would differ.
    let wider = crate::parse(
        &config_text().replace(
            "[permit-pty, permit-agent-forwarding]",
            "[permit-pty, permit-X11-forwarding]",
        ),
        Path::new("j.yaml"),
    )
    .unwrap()
    .policy;
    assert_eq!(
        wider.check_approver("carol", "alice", &grant),
        Err(Denial::PolicyChanged)
    );

    // The requester left the config.
    let gone = crate::parse(
        &config_text().replace(
            &format!("  alice: {{ keys: [\"{ALICE}\"], groups: [dev] }}\n"),
            "",
        ),
        Path::new("j.yaml"),
    )
    .unwrap()
    .policy;
    assert_eq!(
        gone.check_approver("carol", "alice", &grant),
        Err(Denial::PolicyChanged)
    );

    // A grant that was tampered with does not match what the policy gives.
    let mut forged = grant.clone();
    forged.principals = strings(&["root@web1"]);
    assert_eq!(
        p.check_approver("carol", "alice", &forged),
        Err(Denial::PolicyChanged)
    );
    let mut fewer = grant.clone();
    fewer.approvals_needed = 0;
    assert_eq!(
        p.check_approver("carol", "alice", &fewer),
        Err(Denial::PolicyChanged)
    );

    // Unchanged policy text: still fine.
    let same = crate::parse(&config_text(), Path::new("j.yaml"))
        .unwrap()
        .policy;
    assert_eq!(
        same.check_approver("carol", "alice", &grant).map(drop),
        Ok(())
    );
}

#[test]
fn a_new_earlier_rule_that_takes_over_changes_the_grant() {
    let p = policy();
    let grant = p
        .decide_request("alice", &ask(&["web1"], &["deploy"], 60))
        .unwrap();
    let text = config_text().replace(
            "rules:\n",
            "rules:\n  - name: early\n    requesters: [dev]\n    hosts: [web]\n    logins: [deploy]\n    max_duration: 1h\n    approvals: 0\n",
        );
    let changed = crate::parse(&text, Path::new("j.yaml")).unwrap().policy;
    assert_eq!(
        changed.check_approver("carol", "alice", &grant),
        Err(Denial::PolicyChanged)
    );
}

#[test]
fn auditors() {
    let p = policy();
    assert!(p.is_auditor("dave"));
    assert!(!p.is_auditor("alice"));
    assert!(!p.is_auditor("mallory"));
    let denial = Denial::NotAuditor;
    assert_eq!(denial.to_string(), "only auditors may do this");
}

#[test]
fn who_may_view_a_request() {
    let p = policy();
    let grant = p
        .decide_request("alice", &ask(&["web1"], &["deploy"], 60))
        .unwrap();
    assert!(p.may_view("alice", "alice", &grant));
    assert!(p.may_view("carol", "alice", &grant));
    assert!(p.may_view("dave", "alice", &grant));
    assert!(!p.may_view("erin", "alice", &grant));
    assert!(!p.may_view("mallory", "alice", &grant));
    // An approver of the rule still sees a request the policy no longer allows.
    let mut stale = grant.clone();
    stale.duration = Duration::from_secs(99 * 3600);
    assert!(p.may_view("carol", "alice", &stale));
    // A rule that went away: only the requester and auditors.
    let mut orphan = grant;
    orphan.rule = "gone".into();
    assert!(p.may_view("alice", "alice", &orphan));
    assert!(p.may_view("dave", "alice", &orphan));
    assert!(!p.may_view("carol", "alice", &orphan));
}

#[test]
fn approver_groups_can_include_the_requesters_own_group() {
    let p = policy();
    // ops-db: erin (ops) requests; approvers sre, ops, dev: everyone but erin and dave.
    let grant = p
        .decide_request("erin", &ask(&["db1"], &["root"], 60))
        .unwrap();
    assert_eq!(
        p.eligible_approvers("erin", &grant),
        strings(&["alice", "bob", "carol"])
    );
    assert_eq!(
        p.check_approver("erin", "erin", &grant),
        Err(Denial::SelfApproval)
    );
    assert!(p.is_approver_of("alice", "ops-db"));
    assert!(!p.is_approver_of("dave", "ops-db"));
    assert!(!p.is_approver_of("alice", "nope"));
    assert!(!p.is_approver_of("mallory", "ops-db"));
}

#[test]
fn rules_for_whoami() {
    let p = policy();
    let names = |rules: Vec<&Rule>| rules.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(p.rules_requestable_by("alice")),
        ["dev-web", "dev-web-app", "staging"]
    );
    assert_eq!(names(p.rules_requestable_by("erin")), ["staging", "ops-db"]);
    assert!(p.rules_requestable_by("dave").is_empty());
    assert!(p.rules_requestable_by("mallory").is_empty());
    assert_eq!(
        names(p.rules_approvable_by("carol")),
        ["dev-web", "dev-web-app", "ops-db"]
    );
    assert_eq!(names(p.rules_approvable_by("alice")), ["ops-db"]);
    assert!(p.rules_approvable_by("dave").is_empty());
    assert!(p.rules_approvable_by("mallory").is_empty());
}

#[test]
fn hosts_and_logins_per_rule_and_host() {
    let p = policy();
    let rule = p.rule("dev-web").unwrap();
    assert_eq!(p.hosts_of_rule(rule), strings(&["web1", "web2", "web3"]));
    // web1 is in two host groups: listed once.
    let text = config_text().replace("hosts: [staging]", "hosts: [staging, web]");
    let p2 = crate::parse(&text, Path::new("j.yaml")).unwrap().policy;
    assert_eq!(
        p2.hosts_of_rule(p2.rule("staging").unwrap()),
        strings(&["stage1", "web1", "web2"])
    );
    assert_eq!(p.logins_for_host("web1"), strings(&["deploy", "app"]));
    assert_eq!(p.logins_for_host("db1"), strings(&["root", "postgres"]));
    assert!(p.logins_for_host("nowhere").is_empty());
}

#[test]
fn grant_round_trips_through_serde() {
    let p = policy();
    let grant = p
        .decide_request("alice", &ask(&["web1"], &["deploy", "app"], 60))
        .unwrap();
    let text = serde_yaml::to_string(&grant).unwrap();
    let back: Grant = serde_yaml::from_str(&text).unwrap();
    assert_eq!(back, grant);
    assert_eq!(grant.ask(), ask(&["web1"], &["deploy", "app"], 60));
}
