//! The sled backend: one tree of requests keyed by id, one tree of counters.

use std::path::Path;

use crate::{Request, Store, StoreError, Swap, Versioned};

const SERIAL_KEY: &[u8] = b"serial";

/// The store on a local sled database. One process at a time: sled locks its folder.
pub struct SledStore {
    db: sled::Db,
    requests: sled::Tree,
    meta: sled::Tree,
}

fn io(e: sled::Error) -> StoreError {
    StoreError::Io(e.to_string())
}

fn encode(request: &Request) -> Vec<u8> {
    serde_json::to_vec(request).expect("a request always serialises")
}

fn decode(key: &[u8], bytes: &[u8]) -> Result<Request, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

impl SledStore {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let open_err = |reason: String| StoreError::Open {
            path: dir.display().to_string(),
            reason,
        };
        let db = sled::Config::new().path(dir).open().map_err(|e| match e {
            sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                open_err("another process (a running jitca?) holds its lock".into())
            }
            other => open_err(other.to_string()),
        })?;
        let requests = db.open_tree("requests").map_err(io)?;
        let meta = db.open_tree("meta").map_err(io)?;
        Ok(Self { db, requests, meta })
    }
}

impl Store for SledStore {
    fn create_request(&self, request: &Request) -> Result<(), StoreError> {
        let outcome = self
            .requests
            .compare_and_swap(
                request.id.as_bytes(),
                None as Option<&[u8]>,
                Some(encode(request)),
            )
            .map_err(io)?;
        outcome.map_err(|_| StoreError::Exists(request.id.clone()))
    }

    fn request(&self, id: &str) -> Result<Option<Versioned>, StoreError> {
        match self.requests.get(id.as_bytes()).map_err(io)? {
            None => Ok(None),
            Some(bytes) => Ok(Some(Versioned::new(
                decode(id.as_bytes(), &bytes)?,
                bytes.to_vec(),
            ))),
        }
    }

    fn requests(&self) -> Result<Vec<Request>, StoreError> {
        let mut all = self
            .requests
            .iter()
            .map(|item| {
                let (key, bytes) = item.map_err(io)?;
                decode(&key, &bytes)
            })
            .collect::<Result<Vec<_>, _>>()?;
        all.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        Ok(all)
    }

    fn replace_request(&self, current: &Versioned, next: &Request) -> Result<Swap, StoreError> {
        let id = current.request.id.as_bytes();
        let outcome = self
            .requests
            .compare_and_swap(id, Some(current.token()), Some(encode(next)))
            .map_err(io)?;
        match outcome {
            Ok(()) => Ok(Swap::Done),
            Err(cas) if cas.current.is_none() => {
                Err(StoreError::Missing(current.request.id.clone()))
            }
            Err(_) => Ok(Swap::Conflict),
        }
    }

    fn next_serial(&self) -> Result<u64, StoreError> {
        let mut exhausted = false;
        let value = self
            .meta
            .update_and_fetch(SERIAL_KEY, |old| {
                let last = old
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(u64::from_be_bytes)
                    .unwrap_or(0);
                match last.checked_add(1) {
                    Some(next) => Some(next.to_be_bytes().to_vec()),
                    None => {
                        exhausted = true;
                        old.map(<[u8]>::to_vec)
                    }
                }
            })
            .map_err(io)?;
        if exhausted {
            return Err(StoreError::SerialsExhausted);
        }
        let bytes = value.ok_or(StoreError::SerialsExhausted)?;
        let serial = <[u8; 8]>::try_from(bytes.as_ref())
            .map(u64::from_be_bytes)
            .map_err(|_| StoreError::Corrupt {
                key: "serial".into(),
                reason: "not an 8-byte counter".into(),
            })?;
        Ok(serial)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(|_| ()).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Approval, State};
    use chrono::{TimeZone, Utc};

    fn request(id: &str) -> Request {
        let t = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
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
            created_at: t,
            lapses_at: t,
            approvals: vec![],
            state: State::Pending,
        }
    }

    #[test]
    fn create_is_unique_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            store.create_request(&request("a")).unwrap();
            assert!(matches!(
                store.create_request(&request("a")),
                Err(StoreError::Exists(_))
            ));
            assert_eq!(store.next_serial().unwrap(), 1);
            assert_eq!(store.next_serial().unwrap(), 2);
            store.flush().unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(store.request("a").unwrap().unwrap().request, request("a"));
        assert_eq!(store.next_serial().unwrap(), 3);
        assert!(store.request("b").unwrap().is_none());
    }

    #[test]
    fn second_open_is_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let _first = SledStore::open(dir.path()).unwrap();
        let err = SledStore::open(dir.path()).err().unwrap();
        assert!(err.to_string().contains("cannot open the store"), "{err}");
    }

    #[test]
    fn compare_and_swap_changes_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        store.create_request(&request("a")).unwrap();
        let seen_by_bob = store.request("a").unwrap().unwrap();
        let seen_by_carol = store.request("a").unwrap().unwrap();
        let mut bob = seen_by_bob.request.clone();
        bob.approvals.push(Approval {
            by: "bob".into(),
            at: bob.created_at,
        });
        let mut carol = seen_by_carol.request.clone();
        carol.approvals.push(Approval {
            by: "carol".into(),
            at: carol.created_at,
        });
        assert!(matches!(
            store.replace_request(&seen_by_bob, &bob).unwrap(),
            Swap::Done
        ));
        assert!(matches!(
            store.replace_request(&seen_by_carol, &carol).unwrap(),
            Swap::Conflict
        ));
        assert_eq!(store.request("a").unwrap().unwrap().request, bob);
    }

    #[test]
    fn newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let mut old = request("z");
        old.created_at -= chrono::Duration::seconds(10);
        store.create_request(&old).unwrap();
        store.create_request(&request("a")).unwrap();
        let ids: Vec<_> = store
            .requests()
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, ["a", "z"]);
    }
}
