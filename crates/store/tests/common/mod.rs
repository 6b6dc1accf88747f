//! What the store's integration tests share: a request as the lifecycle would store it.

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use jitca_store::{Request, State};

/// The time every sample request is made at.
pub fn t0() -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000, 0).unwrap()
}

/// A pending request `id` of alice's for deploy@web1, lapsing an hour after [`t0`].
pub fn request(id: &str) -> Request {
    Request {
        id: id.into(),
        requester: "alice".into(),
        public_key: "ssh-ed25519 AAAA".into(),
        fingerprint: "SHA256:x".into(),
        hosts: vec!["web1".into()],
        logins: vec!["deploy".into()],
        principals: vec!["deploy@web1".into()],
        duration_secs: 3600,
        reason: "INC-1".into(),
        rule: "dev-web".into(),
        approvals_needed: 1,
        extensions: vec!["permit-pty".into()],
        critical_options: Default::default(),
        source: "127.0.0.1:1".into(),
        created_at: t0(),
        lapses_at: t0() + TimeDelta::hours(1),
        approvals: vec![],
        state: State::Pending,
        break_glass: false,
        review_required: false,
        requester_mfa: false,
        review: None,
        review_due_announced: false,
        usage: None,
    }
}
