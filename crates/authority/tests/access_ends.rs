//! Access ends when it must, at the authority's level (no sshd, no network): decisions judged
//! again after a reload, reloads racing issuance, the requester's own key only, and a KRL
//! that is always published. The end-to-end tests show the same through ssh and sshd.

use std::path::Path;
use std::sync::Arc;

use jitca_authority::{Authority, AuthorityError, Caller, Factor, NewRequest, Settings, State};
use jitca_signer::CertAuthority;
use jitca_store::SledStore;
use ssh_key::{PrivateKey, PublicKey};

struct World {
    _dir: tempfile::TempDir,
    authority: Arc<Authority>,
    /// alice (dev), bob, carol and frank (sre), ivy (audit).
    keys: Vec<(&'static str, PrivateKey)>,
    ca: PrivateKey,
    host: PrivateKey,
}

const NAMES: [(&str, &str); 5] = [
    ("alice", "dev"),
    ("bob", "sre"),
    ("carol", "sre"),
    ("frank", "sre"),
    ("ivy", "audit"),
];

fn key(comment: &str) -> PrivateKey {
    jitca_signer::generate_ed25519(comment).unwrap()
}

fn line(key: &PrivateKey) -> String {
    key.public_key().to_openssh().unwrap()
}

impl World {
    fn new(krl_path: Option<&Path>) -> World {
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<_> = NAMES.iter().map(|(n, _)| (*n, key(n))).collect();
        let ca = key("ca");
        let host = key("host");
        let world_policy = policy(&keys, &[], "");
        let store = Arc::new(SledStore::open(&dir.path().join("data")).unwrap());
        let authority = Authority::new(
            world_policy,
            Settings {
                pending_ttl: std::time::Duration::from_secs(3600),
                audit_log: None,
                krl_path: krl_path.map(Path::to_path_buf),
                earlier_cas: Vec::new(),
                notify: None,
                host_key: Some(host.public_key().clone()),
                metrics: Default::default(),
            },
            store,
            CertAuthority::from_key(ca.clone()).unwrap(),
        )
        .unwrap();
        World {
            _dir: dir,
            authority: Arc::new(authority),
            keys,
            ca,
            host,
        }
    }

    fn key_of(&self, who: &str) -> &PrivateKey {
        &self.keys.iter().find(|(n, _)| *n == who).unwrap().1
    }

    /// Puts in force the config without `removed`, with `rule_extra` added to both rules.
    fn reload(&self, removed: &[&str], rule_extra: &str) {
        self.authority
            .reload(
                policy(&self.keys, removed, rule_extra),
                Path::new("test.yaml"),
            )
            .unwrap();
    }

    fn request(&self, hosts: &str, reason: &str) -> Result<String, AuthorityError> {
        self.request_with(hosts, reason, self.key_of("alice").public_key().clone())
    }

    fn request_with(
        &self,
        hosts: &str,
        reason: &str,
        public_key: PublicKey,
    ) -> Result<String, AuthorityError> {
        let request = self.authority.submit(
            &caller("alice", Factor::NotEnrolled),
            NewRequest {
                hosts: vec![hosts.to_string()],
                logins: vec!["root".into()],
                duration: std::time::Duration::from_secs(1800),
                reason: reason.into(),
                public_key,
                break_glass: false,
            },
        )?;
        Ok(request.id)
    }

    fn approve(&self, who: &str, id: &str, factor: Factor) -> Result<State, AuthorityError> {
        Ok(self.authority.approve(&caller(who, factor), id)?.state)
    }

    fn state(&self, id: &str) -> jitca_store::Request {
        self.authority.current(id).unwrap()
    }
}

fn caller(user: &str, factor: Factor) -> Caller {
    Caller {
        user: user.into(),
        source: "127.0.0.1:1".into(),
        factor,
    }
}

/// `pair` needs two approvals from sre, `web` one; `lab` none.
fn policy(keys: &[(&str, PrivateKey)], removed: &[&str], rule_extra: &str) -> jitca_policy::Policy {
    let mut users = String::new();
    for ((name, group), (_, key)) in NAMES.iter().zip(keys) {
        if !removed.contains(name) {
            users.push_str(&format!(
                "  {name}:\n    keys: [\"{}\"]\n    groups: [{group}]\n",
                line(key)
            ));
        }
    }
    let text = format!(
        "users:\n{users}hosts:\n  pairs: [pair1]\n  web: [web1]\n  lab: [lab1]\nrules:\n\
         \x20 - name: dev-pair\n    requesters: [dev]\n    hosts: [pairs]\n    logins: [root]\n    max_duration: 1h\n    approvals: 2\n    approvers: [sre]\n{rule_extra}\
         \x20 - name: dev-web\n    requesters: [dev]\n    hosts: [web]\n    logins: [root]\n    max_duration: 1h\n    approvals: 1\n    approvers: [sre]\n{rule_extra}\
         \x20 - name: dev-lab\n    requesters: [dev]\n    hosts: [lab]\n    logins: [root]\n    max_duration: 1h\n    approvals: 0\n\
         auditors: [audit]\n"
    );
    jitca_policy::parse(&text, Path::new("/etc/jitca/jitca.yaml"))
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
        .policy
}

#[test]
fn an_approval_of_someone_removed_no_longer_counts() {
    let w = World::new(None);
    let id = w.request("pair1", "INC-1").unwrap();
    assert!(matches!(
        w.approve("bob", &id, Factor::NotEnrolled).unwrap(),
        State::Pending
    ));
    w.reload(&["bob"], "");
    assert!(matches!(
        w.approve("carol", &id, Factor::NotEnrolled).unwrap(),
        State::Pending
    ));
    let approvers: Vec<_> = w.state(&id).approvers().map(String::from).collect();
    assert_eq!(approvers, ["carol"]);
    let State::Issued(issuance) = w.approve("frank", &id, Factor::NotEnrolled).unwrap() else {
        panic!("the second counted approval issues");
    };
    assert!(
        issuance.key_id.ends_with("approvers=carol,frank"),
        "{}",
        issuance.key_id
    );
    // Bob himself is refused now, and cannot approve anything.
    assert!(
        w.approve("bob", &w.request("web1", "x").unwrap(), Factor::NotEnrolled)
            .is_err()
    );
}

#[test]
fn approvals_without_a_code_stop_counting_when_the_rule_asks_for_one() {
    let w = World::new(None);
    let id = w.request("pair1", "INC-2").unwrap();
    w.approve("bob", &id, Factor::NotEnrolled).unwrap();
    w.reload(&[], "    approver_mfa: totp\n");
    // Without a code: refused outright.
    let refused = w.approve("carol", &id, Factor::NotEnrolled).unwrap_err();
    assert!(refused.to_string().contains("one-time code"), "{refused}");
    // With one: counts, but bob's earlier approval (no code) does not.
    assert!(matches!(
        w.approve("carol", &id, Factor::Verified).unwrap(),
        State::Pending
    ));
    assert!(matches!(
        w.approve("frank", &id, Factor::Verified).unwrap(),
        State::Issued(_)
    ));
}

#[test]
fn a_pending_request_is_held_to_the_rule_as_it_is_when_decided() {
    let w = World::new(None);
    let untitled = w.request("web1", "disk full").unwrap();
    let ticketed = w.request("web1", "INC-42 disk full").unwrap();
    w.reload(&[], "    reason_pattern: \"^INC-[0-9]+\"\n");
    let refused = w
        .approve("carol", &untitled, Factor::NotEnrolled)
        .unwrap_err();
    assert!(
        refused.to_string().contains("no longer meets rule dev-web"),
        "{refused}"
    );
    assert!(matches!(w.state(&untitled).state, State::Pending));
    assert!(matches!(
        w.approve("carol", &ticketed, Factor::NotEnrolled).unwrap(),
        State::Issued(_)
    ));

    w.reload(&[], "    requester_mfa: totp\n");
    let no_code = w.request("web1", "INC-43").err();
    assert!(no_code.is_some(), "a request without a code is refused now");
    let refused = w
        .approve("carol", &untitled, Factor::NotEnrolled)
        .unwrap_err();
    assert!(refused.to_string().contains("one-time code"), "{refused}");
}

#[test]
fn only_the_requesters_own_key_is_certified() {
    let w = World::new(None);
    let ca = w.ca.public_key().clone();
    let host = w.host.public_key().clone();
    let bobs = w.key_of("bob").public_key().clone();
    for (key, why) in [
        (ca, "the CA's key"),
        (host, "host key"),
        (bobs, "registered to another person"),
    ] {
        let refused = w.request_with("lab1", "mine", key).unwrap_err();
        assert!(refused.to_string().contains(why), "{refused}");
    }
    let fresh = key("alice-laptop").public_key().clone();
    assert!(w.request_with("lab1", "mine", fresh).is_ok());
    assert!(w.request("lab1", "registered").is_ok());
}

#[test]
fn a_connection_is_identified_again_after_a_reload() {
    let w = World::new(None);
    let alice = w.key_of("alice").public_key().clone();
    w.authority.identify_again(&alice, "alice").unwrap();
    assert!(w.authority.identify_again(&alice, "bob").is_err());
    let changes = w.authority.policy_changes();
    w.reload(&["alice"], "");
    assert!(changes.has_changed().unwrap());
    let refused = w.authority.identify_again(&alice, "alice").unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("no longer registered to alice"),
        "{refused}"
    );
}

#[test]
fn issuance_racing_a_reload_is_refused_or_revoked() {
    for _round in 0..5 {
        let w = World::new(None);
        let pending: Vec<String> = (0..40)
            .map(|i| w.request("web1", &format!("INC-{i}")).unwrap())
            .collect();
        let w = Arc::new(w);
        // Carol approves alice's requests (and alice asks for more that need no approval)
        // while a reload removes alice.
        let racer = {
            let w = w.clone();
            std::thread::spawn(move || {
                let mut issued = 0;
                for id in &pending {
                    if let Ok(State::Issued(_)) = w.approve("carol", id, Factor::NotEnrolled) {
                        issued += 1;
                    }
                    if w.request("lab1", "race").is_ok() {
                        issued += 1;
                    }
                }
                issued
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(5));
        w.reload(&["alice"], "");
        let issued = racer.join().unwrap();
        let all = w
            .authority
            .list(&caller("ivy", Factor::NotEnrolled), Default::default())
            .unwrap();
        let revoked = all
            .iter()
            .filter(|r| matches!(r.state, State::Revoked { .. }))
            .count();
        for request in &all {
            assert!(
                !matches!(request.state, State::Issued(_)),
                "{} was issued to alice, whom the reload removed, and not revoked",
                request.id
            );
        }
        assert_eq!(revoked, issued, "every certificate issued is revoked");
    }
}

#[test]
fn the_krl_is_served_and_krl_path_rewritten_when_writing_it_failed() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("blocker");
    std::fs::write(&blocker, "a file where a folder should be").unwrap();
    let path = blocker.join("krl");
    let w = World::new(Some(&path));
    w.authority.krl_changed().unwrap();
    let id = w.request("lab1", "to revoke").unwrap();
    let State::Issued(issuance) = w.state(&id).state else {
        panic!("lab needs no approval");
    };
    w.authority
        .done(&caller("alice", Factor::NotEnrolled), &id)
        .unwrap();
    let served = jitca_krl::decode(&w.authority.krl().unwrap()).unwrap();
    assert!(
        served.certificates[0]
            .serial_ranges
            .iter()
            .any(|r| r.contains(&issuance.serial)),
        "the served KRL revokes it"
    );
    assert!(!path.exists());
    let status = w.authority.krl_status().unwrap();
    let (_, failing) = status.path.unwrap();
    assert!(failing.unwrap().attempts >= 2);

    std::fs::remove_file(&blocker).unwrap();
    std::fs::create_dir(&blocker).unwrap();
    w.authority.upkeep().unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), w.authority.krl().unwrap());
    assert!(w.authority.krl_status().unwrap().path.unwrap().1.is_none());
}
