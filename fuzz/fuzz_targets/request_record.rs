//! The stored records the sled backend decodes: a request (`requests` tree), the audit chain's
//! head and the KRL state (`meta` tree). A damaged or hostile store must give an error, never a
//! panic, and whatever decodes must survive the store's own write-read cycle unchanged, and the
//! accessors every reader calls (`state_name`, `issuance`, `approvers`) must not panic on it.

#![no_main]

use chrono::{DateTime, Utc};
use jitca_store::{Head, KrlState, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = serde_json::from_slice::<Request>(data) {
        let bytes = serde_json::to_vec(&request).expect("a decoded request serialises");
        let again: Request = serde_json::from_slice(&bytes).expect("and decodes again");
        assert_eq!(request, again, "request changed in a write-read cycle");
        for now in [
            DateTime::<Utc>::MIN_UTC,
            Utc::now(),
            DateTime::<Utc>::MAX_UTC,
        ] {
            let _ = request.state_name(now);
        }
        let _ = request.issuance().map(|i| i.serial);
        let _ = request.approvers().count();
    }
    if let Ok(head) = serde_json::from_slice::<Head>(data) {
        let bytes = serde_json::to_vec(&head).expect("a decoded head serialises");
        assert_eq!(serde_json::from_slice::<Head>(&bytes).ok(), Some(head));
    }
    if let Ok(krl) = serde_json::from_slice::<KrlState>(data) {
        let bytes = serde_json::to_vec(&krl).expect("a decoded KRL state serialises");
        assert_eq!(serde_json::from_slice::<KrlState>(&bytes).ok(), Some(krl));
    }
});
