//! The second factor with the real OpenSSH client: enrolment over the control channel, the
//! one-time code asked by keyboard-interactive after the key (answered through `SSH_ASKPASS`),
//! rules that need it for requests and approvals, replays, wrong codes, operator resets.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use jitca_mfa::{Secret, step_of};

use crate::harness::{Ca, Out, Person, Team, id_of, run, ssh_answering};

/// The team's config with `dev-web` needing a code from requester and approver, `dev-pair`
/// from its approvers, and sre as operators.
fn config(team: &Team) -> String {
    let config = team.config("1h");
    let web = "  - name: dev-web\n    requesters: [dev]\n";
    let pair = "  - name: dev-pair\n    requesters: [dev]\n";
    assert!(config.contains(web) && config.contains(pair));
    config
        .replace(
            web,
            &format!("{web}    requester_mfa: totp\n    approver_mfa: totp\n"),
        )
        .replace(pair, &format!("{pair}    approver_mfa: totp\n"))
        + "operators: [sre]\n"
}

/// A script printing `answer`, for `SSH_ASKPASS`; it keeps the prompt it was given in
/// `last-prompt` beside it.
fn askpass(dir: &Path, answer: &str) -> PathBuf {
    let n = std::fs::read_dir(dir).unwrap().count();
    let path = dir.join(format!("askpass-{n}.sh"));
    let prompt = dir.join("last-prompt");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nprintf '%s' \"$1\" > '{}'\nprintf '%s\\n' '{answer}'\n",
            prompt.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
    path
}

/// `ssh` as `who` that answers the code prompt with `answer` (empty: skip), as a script would.
fn ssh_code(ca: &Ca, who: &Person, answer: &str, command: &str, stdin: Option<&[u8]>) -> Out {
    let scripts = ca.dir.path().join("askpass");
    std::fs::create_dir_all(&scripts).unwrap();
    let script = askpass(&scripts, answer);
    ssh_answering(ca.port, who, &script, command, stdin)
}

/// Enrols `who` and confirms with the current code: their secret and the step confirmed.
fn enrol(ca: &Ca, who: &Person) -> (Secret, u64) {
    let out = ca.ssh(who, "mfa enroll", None);
    out.ok();
    let uri = out.stdout.trim();
    assert!(
        uri.starts_with(&format!("otpauth://totp/jitca:{}?secret=", who.name)),
        "{out:?}"
    );
    assert!(uri.ends_with("&issuer=jitca&algorithm=SHA1&digits=6&period=30"));
    assert!(out.stderr.contains("mfa confirm CODE"), "{out:?}");
    let secret = jitca_mfa::secret_of_uri(uri).expect("a secret in the URI");
    assert!(
        ca.ssh(who, "mfa status", None)
            .ok()
            .stdout
            .starts_with("unconfirmed")
    );
    // A wrong code does not confirm.
    let step = step_of(jitca_mfa::now());
    let wrong = wrong_code(&secret, step);
    ca.ssh(who, &format!("mfa confirm {wrong}"), None)
        .refused("that code is wrong");
    let step = step_of(jitca_mfa::now());
    ca.ssh(who, &format!("mfa confirm {}", secret.code(step)), None)
        .ok();
    (secret, step)
}

/// A six-digit code no step near `step` has.
fn wrong_code(secret: &Secret, step: u64) -> String {
    let near: Vec<String> = (step - 3..=step + 3).map(|s| secret.code(s)).collect();
    (0..)
        .map(|n: u32| format!("{:06}", (n * 7919 + 123_457) % 1_000_000))
        .find(|c| !near.contains(c))
        .unwrap()
}

/// The audit records `filters` selects, without their hash members (so that searching
/// them for a code cannot hit a hash).
fn audit(ca: &Ca, team: &Team, filters: &str) -> Vec<serde_json::Value> {
    ca.audit_json(&team.ivy, filters)
        .into_iter()
        .map(|mut r| {
            let o = r.as_object_mut().unwrap();
            o.remove("hash");
            o.remove("prev");
            r
        })
        .collect()
}

#[test]
fn requests_and_approvals_on_mfa_rules_need_a_fresh_code() {
    let team = Team::new();
    let ca = Ca::start(&config(&team));
    let key = team.alice.public_key();
    let key = Some(key.as_bytes());
    let web = "web1 --as root --for 1h --reason INC-7 disk full --no-wait";

    // Not enrolled: never asked, in batch mode as before; the rule says how to get a factor.
    assert_eq!(
        ca.ssh(&team.alice, "mfa status", None).ok().stdout.trim(),
        "none"
    );
    ca.request(&team.alice, web)
        .refused("rule dev-web needs a one-time code (TOTP) for requests: you have no second factor enrolled; enrol with the command mfa enroll");

    let (alice, confirmed) = enrol(&ca, &team.alice);
    assert!(
        ssh_code(&ca, &team.alice, "", "mfa status", None)
            .ok()
            .stdout
            .starts_with("active since ")
    );
    let prompt = std::fs::read_to_string(ca.dir.path().join("askpass/last-prompt")).unwrap();
    // OpenSSH puts "(jitca@127.0.0.1) " before a keyboard-interactive prompt.
    assert!(
        prompt.ends_with(") jitca one-time code for alice (empty to skip): "),
        "{prompt:?}"
    );
    ssh_code(&ca, &team.alice, "", "mfa enroll", None)
        .refused("you have a second factor already; an operator can reset it: mfa reset alice");

    // Enrolled people are asked for the code after their key; OpenSSH in batch mode does no
    // keyboard-interactive, so it cannot answer and gets no further (docs/security.md).
    let batch = ca.ssh(&team.alice, "whoami", None);
    assert_eq!(batch.status, 255, "{batch:?}");
    assert!(batch.stderr.contains("Permission denied"), "{batch:?}");

    // No code, a wrong code, then a fresh one.
    ssh_code(&ca, &team.alice, "", &format!("request {web}"), key).refused(
        "rule dev-web needs a one-time code (TOTP) for requests: connect again and enter the code",
    );
    let wrong = wrong_code(&alice, step_of(jitca_mfa::now()));
    ssh_code(&ca, &team.alice, &wrong, &format!("request {web}"), key)
        .refused("the one-time code was wrong; connect again with a new code");
    // The step after the one confirmed: within the skew window now, and never used.
    let fresh = alice.code(confirmed + 1);
    let id = id_of(&ssh_code(
        &ca,
        &team.alice,
        &fresh,
        &format!("request {web}"),
        key,
    ));
    // The same code on another connection: refused, also for commands that need none.
    ssh_code(&ca, &team.alice, &fresh, &format!("request {web}"), key)
        .refused("that one-time code was used already; wait for the next one");
    // Any code opens the connection; only the rule asks for a good one.
    ssh_code(&ca, &team.alice, &wrong, "whoami", None).ok();

    // Approvals: bob has no factor, frank has one.
    ca.ssh(&team.bob, &format!("approve {id}"), None).refused(
        "rule dev-web needs a one-time code (TOTP) for approvals: you have no second factor enrolled",
    );
    let (frank, frank_step) = enrol(&ca, &team.frank);
    ssh_code(&ca, &team.frank, "", &format!("approve {id}"), None)
        .refused("needs a one-time code (TOTP) for approvals: connect again and enter the code");
    let frank_code = frank.code(frank_step + 1);
    ssh_code(
        &ca,
        &team.frank,
        &frank_code,
        &format!("approve {id}"),
        None,
    )
    .ok();
    assert_eq!(ca.show_json(&team.ivy, &id)["state"], "issued");

    // Approvals on a rule that needs the approver's code only: the requester is not asked.
    let pair = id_of(&ssh_code(
        &ca,
        &team.alice,
        "",
        "request pair1 --as root --for 1h --reason INC-8 --no-wait",
        key,
    ));
    let (bob, bob_step) = enrol(&ca, &team.bob);
    let bob_code = bob.code(bob_step + 1);
    ssh_code(&ca, &team.bob, &bob_code, &format!("approve {pair}"), None).ok();
    // bob's code again, as carol would not have it: refused as a replay, before anything else.
    ssh_code(&ca, &team.bob, &bob_code, &format!("approve {pair}"), None)
        .refused("that one-time code was used already");
    ca.ssh(&team.carol, &format!("approve {pair}"), None)
        .refused("you have no second factor enrolled");

    // The audit log says whether the factor was used, records failures, never a code.
    let requested = audit(&ca, &team, &format!("--request {id}"));
    let event = |records: &[serde_json::Value], kind: &str| -> Vec<serde_json::Value> {
        records
            .iter()
            .filter(|r| r["event"] == kind)
            .cloned()
            .collect()
    };
    assert_eq!(event(&requested, "requested")[0]["details"]["mfa"], true);
    assert_eq!(event(&requested, "approved")[0]["details"]["mfa"], true);
    assert_eq!(event(&requested, "approved")[0]["actor"], "frank");
    let paired = audit(&ca, &team, &format!("--request {pair}"));
    assert_eq!(event(&paired, "requested")[0]["details"]["mfa"], false);
    assert_eq!(event(&paired, "approved")[0]["details"]["mfa"], true);
    let alices = audit(&ca, &team, "--user alice");
    assert_eq!(event(&alices, "mfa_enrolled").len(), 1);
    assert_eq!(event(&alices, "mfa_confirmed").len(), 1);
    let failed = event(&alices, "mfa_failed");
    let whys: Vec<&str> = failed
        .iter()
        .map(|r| r["details"]["why"].as_str().unwrap())
        .collect();
    assert!(whys.contains(&"wrong code at confirmation"), "{whys:?}");
    assert!(whys.contains(&"wrong code"), "{whys:?}");
    assert!(whys.contains(&"code used already"), "{whys:?}");
    assert!(failed.iter().all(|r| r["source"].is_string()));
    let everything = serde_json::to_string(&audit(&ca, &team, "")).unwrap();
    for code in [&wrong, &fresh, &frank_code, &bob_code] {
        assert!(
            !everything.contains(code.as_str()),
            "{code} in the audit log"
        );
    }
    assert!(everything.contains("mfa confirm [code not recorded]"));

    // Resets: operators only, never their own; then the person is not asked any more.
    ca.ssh(&team.dave, "mfa reset alice", None)
        .refused("only operators");
    ssh_code(&ca, &team.bob, "", "mfa reset bob", None)
        .refused("you may not reset your own second factor");
    ssh_code(&ca, &team.bob, "", "mfa reset alice", None).ok();
    assert_eq!(
        ca.ssh(&team.alice, "mfa status", None).ok().stdout.trim(),
        "none"
    );
    let reset = event(&audit(&ca, &team, "--user alice"), "mfa_reset");
    assert_eq!(reset.len(), 1);
    assert_eq!(reset[0]["actor"], "bob");
    assert_eq!(reset[0]["details"]["user"], "alice");
}

#[test]
fn wrong_codes_are_limited_and_the_key_is_made_at_first_enrolment() {
    let team = Team::new();
    let mut ca = Ca::start(&config(&team));
    // A CA set up before second factors existed: no key until someone enrols.
    ca.stop();
    let key_file = ca.dir.path().join("mfa.key");
    std::fs::remove_file(&key_file).unwrap();
    ca.start_again();
    let (alice, step) = enrol(&ca, &team.alice);
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o400);

    // A key file others may read stops the daemon at start.
    ca.stop();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let check = run(
        Command::new(crate::harness::JITCA)
            .arg("serve")
            .arg("--config")
            .arg(&ca.config)
            .arg("--listen")
            .arg("127.0.0.1:0"),
        None,
    );
    assert_ne!(check.status, 0);
    assert!(
        check.stderr.contains("UNPROTECTED SECOND-FACTOR KEY FILE!"),
        "{check:?}"
    );
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o400)).unwrap();
    ca.start_again();

    // The last step used survives the restart: the confirmation's code is still refused.
    let key = team.alice.public_key();
    let web = "request web1 --as root --for 1h --reason INC-9 --no-wait";
    ssh_code(
        &ca,
        &team.alice,
        &alice.code(step),
        web,
        Some(key.as_bytes()),
    )
    .refused("that one-time code was used already");
    let wrong = wrong_code(&alice, step_of(jitca_mfa::now()));
    for _ in 0..4 {
        ssh_code(&ca, &team.alice, &wrong, web, Some(key.as_bytes()))
            .refused("the one-time code was wrong");
    }
    // Five wrong (the replay above counts): the right code is not even looked at.
    ssh_code(
        &ca,
        &team.alice,
        &alice.code(step + 1),
        web,
        Some(key.as_bytes()),
    )
    .refused("too many wrong codes; try again in 5 minutes");
}
