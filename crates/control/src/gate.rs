//! What the control channel lets clients hold: connections that have not authenticated yet
//! (overall and per source address, like sshd's `MaxStartups`), authenticated connections per
//! person, and how long a connection may sit idle.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::limits::Limits;

/// The counters shared by all connections.
#[derive(Debug)]
pub(crate) struct Gate {
    limits: Limits,
    startups: Mutex<Startups>,
    sessions: Mutex<HashMap<String, u32>>,
}

#[derive(Debug, Default)]
struct Startups {
    total: u32,
    per_source: HashMap<IpAddr, u32>,
}

/// One connection counted as not yet authenticated, until dropped.
#[derive(Debug)]
pub(crate) struct Startup {
    gate: Arc<Gate>,
    source: IpAddr,
}

/// One authenticated connection of a person, until dropped.
#[derive(Debug)]
pub(crate) struct Session {
    gate: Arc<Gate>,
    user: String,
}

impl Gate {
    pub(crate) fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            startups: Mutex::default(),
            sessions: Mutex::default(),
        })
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Admits a new connection, or says why not.
    pub(crate) fn startup(self: &Arc<Self>, source: IpAddr) -> Result<Startup, &'static str> {
        let mut s = self.startups.lock().expect("startups lock");
        if s.total >= self.limits.max_startups {
            return Err("too many unauthenticated connections");
        }
        let mine = s.per_source.entry(source).or_insert(0);
        if *mine >= self.limits.max_startups_per_source {
            return Err("too many unauthenticated connections from this source");
        }
        *mine += 1;
        s.total += 1;
        Ok(Startup {
            gate: self.clone(),
            source,
        })
    }

    /// Counts an authenticated connection of `user`; `Err` with a message when they hold too
    /// many already (the connection is then refused at its first command).
    pub(crate) fn session(self: &Arc<Self>, user: &str) -> Result<Session, String> {
        let mut sessions = self.sessions.lock().expect("sessions lock");
        let open = sessions.entry(user.to_string()).or_insert(0);
        if *open >= self.limits.max_sessions_per_user {
            return Err(format!(
                "{user} has {open} connections open already (at most {}); close some and try again",
                self.limits.max_sessions_per_user
            ));
        }
        *open += 1;
        Ok(Session {
            gate: self.clone(),
            user: user.to_string(),
        })
    }

    #[cfg(test)]
    fn startups_now(&self) -> u32 {
        self.startups.lock().unwrap().total
    }
}

impl Startup {
    pub(crate) fn limits(&self) -> &Limits {
        self.gate.limits()
    }
}

impl Drop for Startup {
    fn drop(&mut self) {
        let mut s = self.gate.startups.lock().expect("startups lock");
        s.total -= 1;
        if let Some(n) = s.per_source.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                s.per_source.remove(&self.source);
            }
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let mut sessions = self.gate.sessions.lock().expect("sessions lock");
        if let Some(n) = sessions.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                sessions.remove(&self.user);
            }
        }
    }
}

/// Whether a connection is doing something: commands running, and when the last ended.
#[derive(Debug)]
pub(crate) struct Activity {
    running: AtomicUsize,
    last: Mutex<Instant>,
}

/// One running command, until dropped.
pub(crate) struct Busy(Arc<Activity>);

impl Activity {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            running: AtomicUsize::new(0),
            last: Mutex::new(Instant::now()),
        })
    }

    pub(crate) fn begin(self: &Arc<Self>) -> Busy {
        self.running.fetch_add(1, Ordering::SeqCst);
        Busy(self.clone())
    }

    /// Completes when the connection has had no command running for `timeout`.
    pub(crate) async fn idle_for(&self, timeout: Duration) {
        loop {
            let wait = if self.running.load(Ordering::SeqCst) > 0 {
                timeout
            } else {
                let since = self.last.lock().expect("activity lock").elapsed();
                match timeout.checked_sub(since) {
                    None => return,
                    Some(left) if left.is_zero() => return,
                    Some(left) => left,
                }
            };
            tokio::time::sleep(wait).await;
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        *self.0.last.lock().expect("activity lock") = Instant::now();
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_startups: 3,
            max_startups_per_source: 2,
            max_sessions_per_user: 1,
            ..Limits::default()
        }
    }

    #[test]
    fn startups_are_capped_per_source_and_overall_and_released() {
        let gate = Gate::new(limits());
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let a1 = gate.startup(a).unwrap();
        let _a2 = gate.startup(a).unwrap();
        assert!(gate.startup(a).unwrap_err().contains("this source"));
        let _b1 = gate.startup(b).unwrap();
        assert_eq!(
            gate.startup(b).err(),
            Some("too many unauthenticated connections")
        );
        drop(a1);
        assert_eq!(gate.startups_now(), 2);
        let _a3 = gate.startup(a).unwrap();
    }

    #[test]
    fn sessions_per_user_are_capped_and_released() {
        let gate = Gate::new(limits());
        let first = gate.session("alice").unwrap();
        assert!(
            gate.session("alice")
                .unwrap_err()
                .contains("alice has 1 connections open")
        );
        let _bob = gate.session("bob").unwrap();
        drop(first);
        gate.session("alice").unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn idle_means_no_command_running_for_the_timeout() {
        let activity = Activity::new();
        let busy = activity.begin();
        let idle = activity.idle_for(Duration::from_secs(10));
        tokio::pin!(idle);
        // A long command is not idleness.
        assert!(
            tokio::time::timeout(Duration::from_secs(60), &mut idle)
                .await
                .is_err()
        );
        drop(busy);
        let started = tokio::time::Instant::now();
        idle.await;
        assert!(started.elapsed() >= Duration::from_secs(9));
    }
}
