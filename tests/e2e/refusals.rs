//! Bad input of every kind: one clear line, exit 1 (2 for usage errors), nothing stored, and
//! the daemon keeps serving.

use crate::harness::*;

const OK_ARGS: &str = "--as root --for 1h --reason INC-1 check";

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let team = Team::new();
    let ca = Ca::start(&team.config("1h"));
    let alice = &team.alice;
    let key = alice.public_key();
    let req = |args: &str| ca.request(alice, args);

    // Unknown key: SSH authentication itself fails.
    let out = ca.ssh(&team.mallory, "whoami", None);
    assert_eq!(out.status, 255, "{out:?}");
    assert!(
        out.stderr.contains("Permission denied (publickey)"),
        "{out:?}"
    );

    // No shell, no terminal.
    ca.ssh(alice, "", None).refused("no shell here");
    ca.ssh_with(alice, &["-tt"], "", None)
        .refused("no shell here");
    ca.ssh_with(alice, &["-tt"], "whoami", None)
        .refused("no terminals here");

    // Usage errors.
    ca.ssh(alice, "frobnicate", None)
        .usage("unknown command \"frobnicate\"");
    ca.ssh(alice, "request", Some(key.as_bytes()))
        .usage("missing HOSTS");
    ca.ssh(
        alice,
        "request web1 --as root --for 1h",
        Some(key.as_bytes()),
    )
    .usage("missing --reason");
    ca.ssh(
        alice,
        "request web1 --as --for 1h --reason x",
        Some(key.as_bytes()),
    )
    .usage("--as needs a value");
    ca.ssh(
        alice,
        &format!("request web1 web2 {OK_ARGS}"),
        Some(key.as_bytes()),
    )
    .usage("unexpected argument");
    ca.ssh(
        alice,
        &format!("request web1 --when now {OK_ARGS}"),
        Some(key.as_bytes()),
    )
    .usage("unknown option \"--when\"");
    ca.ssh(alice, "approve", None).usage("missing ID");
    ca.ssh(alice, "show a b", None).usage("unexpected argument");
    ca.ssh(alice, "deny abc", None).usage("missing --reason");
    ca.ssh(alice, "list --all", None).usage("unknown option");
    ca.ssh(alice, "whoami 'unbalanced", None)
        .usage("unbalanced");

    // Hosts.
    req(&format!("web9 {OK_ARGS}")).refused("web9");
    req(&format!("'' {OK_ARGS}")).refused("empty");
    req(&format!("web1,,web2 {OK_ARGS}")).refused("empty");
    for bad in [
        "'web*'",
        "'web?'",
        "'web 1'",
        "-web1",
        "'web1;id'",
        "web\u{1}1",
        "'web\u{7f}'",
    ] {
        req(&format!("{bad} {OK_ARGS}")).refused("host");
    }
    req(&format!("{} {OK_ARGS}", "a".repeat(254))).refused("253");
    req(&format!("web1,db1 {OK_ARGS}")).refused("no single rule");

    // Logins.
    req("web1 --as admin --for 1h --reason x").refused("no rule");
    req("web1 --as 'root nobody' --for 1h --reason x").refused("login");

    // Durations.
    req("web1 --as root --for 0s --reason x").refused("more than zero");
    req("web1 --as root --for -1h --reason x").refused("duration");
    req("web1 --as root --for forever --reason x").refused("duration");
    req("web1 --as root --for 3h --reason x").refused("2h");

    // Reasons.
    req("web1 --as root --for 1h --reason ''").refused("reason");
    req(&format!(
        "web1 --as root --for 1h --reason {}",
        "x".repeat(513)
    ))
    .refused("512");
    req("web1 --as root --for 1h --reason 'evil\u{1b}[2J\r\nforged'").refused("control");
    req("web1 --as root --for 1h --reason 'right-to-left \u{202e}dlrow'").refused("reason");

    // The key on stdin.
    ca.ssh(alice, &format!("request web1 {OK_ARGS}"), None)
        .refused("no public key on stdin");
    ca.ssh(alice, &format!("request web1 {OK_ARGS}"), Some(b""))
        .refused("no public key on stdin");
    let private = std::fs::read(&alice.key).unwrap();
    let out = ca.ssh(alice, &format!("request web1 {OK_ARGS}"), Some(&private));
    out.refused("that is a private key");
    assert!(
        !out.stderr.contains("BEGIN"),
        "the private key is never echoed"
    );
    ca.ssh(
        alice,
        &format!("request web1 {OK_ARGS}"),
        Some(b"ssh-ed25519 AAAA-not-base64"),
    )
    .refused("not an OpenSSH public key");
    let huge = vec![b'A'; 17 * 1024];
    ca.ssh(alice, &format!("request web1 {OK_ARGS}"), Some(&huge))
        .refused("16 KiB");
    let cert = ca.request(alice, "lab1 --as root --for 10m --reason get a cert");
    cert.ok(); // the one request this test makes on purpose
    ca.ssh(
        alice,
        &format!("request web1 {OK_ARGS}"),
        Some(cert.stdout.as_bytes()),
    )
    .refused("that is a certificate");

    // Approvals.
    let id = id_of(&ca.request(
        alice,
        &format!("pair1 {OK_ARGS} --no-wait").replace("1h", "30m"),
    ));
    ca.ssh(alice, &format!("approve {id}"), None).refused("own");
    ca.ssh(&team.dave, &format!("approve {id}"), None)
        .refused("dave");
    ca.ssh(&team.bob, &format!("approve {id}"), None).ok();
    ca.ssh(&team.bob, &format!("approve {id}"), None)
        .refused("already approved");
    ca.ssh(&team.bob, "approve zzzzzzzzzz", None)
        .refused("no request zzzzzzzzzz");
    ca.ssh(&team.bob, "approve '../../etc'", None)
        .refused("not a request id");
    ca.ssh(&team.carol, &format!("deny {id} --reason ''"), None)
        .refused("reason");
    assert_eq!(
        ca.show_json(&team.alice, &id)["state"],
        "pending",
        "failed denial changed nothing"
    );

    // Nothing stored for any refusal: exactly the two requests made on purpose.
    let all = ca.list_json(&team.ivy);
    assert_eq!(all.len(), 2, "{all:#?}");
    assert_eq!(all[0]["id"], id.as_str());
    assert_eq!(all[0]["approvals"], serde_json::json!(["bob"]));

    // And the daemon still serves.
    ca.ssh(alice, "whoami", None).ok();
}

#[test]
fn whoami_help_and_ca_key() {
    let team = Team::new();
    let ca = Ca::start(&team.config("1h"));
    let who = ca.ssh(&team.alice, "whoami", None);
    who.ok();
    assert!(who.stdout.contains("user     alice"), "{who:?}");
    assert!(
        who.stdout
            .contains("dev-web: root,nobody on web1,web2 for up to 2h, 1 approval from sre"),
        "{who:?}"
    );
    let bob = ca.ssh(&team.bob, "whoami", None);
    assert!(bob.stdout.contains("may approve:\n  dev-web"), "{bob:?}");
    let help = ca.ssh(&team.alice, "help", None);
    help.ok();
    assert!(
        help.stdout
            .contains("request HOSTS --as LOGIN --for DURATION --reason TEXT")
    );
    let key = ca.ssh(&team.alice, "ca-key", None);
    key.ok();
    assert_eq!(
        key.stdout.split_whitespace().nth(1),
        std::fs::read_to_string(ca.ca_pub())
            .unwrap()
            .split_whitespace()
            .nth(1)
    );
}
