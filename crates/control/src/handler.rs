//! One connection: authentication maps the key to a user; session channels run commands;
//! everything else is refused.

use std::net::SocketAddr;
use std::sync::Arc;

use jitca_authority::{AuthFailure, Authority, Caller, Factor};
use russh::server::{
    Auth, ChannelOpenHandle, Handler, Msg, PublicKeyOffer, Response, Session, VerifiedPublicKey,
};
use russh::{Channel, ChannelId, MethodKind, MethodSet, Pty};

use crate::channel;
use crate::gate::{Activity, Gate, Session as Held};

/// The longest the login waits to learn whether the caller has a second factor.
const MFA_READ_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

pub(crate) struct Connection {
    authority: Arc<Authority>,
    peer: SocketAddr,
    hint: Arc<str>,
    /// Set once authentication succeeds.
    caller: Option<Caller>,
    /// The key that identified the caller: checked again before every command, so a reload
    /// that removes it (or its person) ends what this connection may do.
    key: Option<russh::keys::PublicKey>,
    /// A person identified by their key who has a second factor: the one-time code is asked
    /// next (keyboard-interactive), and the connection is authenticated whatever the answer.
    awaiting_code: Option<String>,
    /// What an unauthenticated peer tried, for the audit record if it never succeeds.
    tried: Option<AuthFailure>,
    gate: Arc<Gate>,
    /// Told when authentication succeeds (the grace-time watch stops then).
    authenticated: Arc<tokio::sync::Notify>,
    activity: Arc<Activity>,
    /// This person's slot among their connections, or why there is none.
    held: Option<Result<Held, String>>,
    metrics: jitca_metrics::Metrics,
    /// Counts this connection in `jitca_control_connections` while it lives.
    _open: jitca_metrics::ConnectionGuard,
}

/// Keys of one failed connection worth recording.
const MAX_KEYS_RECORDED: usize = 8;

impl Connection {
    pub(crate) fn new(
        authority: Arc<Authority>,
        peer: SocketAddr,
        hint: Arc<str>,
        gate: Arc<Gate>,
        authenticated: Arc<tokio::sync::Notify>,
        activity: Arc<Activity>,
        metrics: jitca_metrics::Metrics,
    ) -> Self {
        Self {
            _open: metrics.connection_opened(),
            metrics,
            authority,
            peer,
            hint,
            caller: None,
            key: None,
            awaiting_code: None,
            tried: None,
            gate,
            authenticated,
            activity,
            held: None,
        }
    }

    fn attempt(&mut self, user: &str) -> &mut AuthFailure {
        let peer = self.peer;
        self.tried.get_or_insert_with(|| AuthFailure {
            source: peer.to_string(),
            user: user.chars().take(64).collect(),
            keys: Vec::new(),
        })
    }

    fn known(&self, key: &russh::keys::PublicKey) -> Option<String> {
        self.authority.identify(key)
    }

    /// Authentication succeeded: `user`, with what their second factor proved.
    fn authenticated(&mut self, user: String, factor: Factor) -> Auth {
        tracing::debug!(peer = %self.peer, %user, ?factor, "authenticated");
        self.awaiting_code = None;
        self.held = Some(self.gate.session(&user));
        self.authenticated.notify_one();
        self.caller = Some(Caller {
            user,
            source: self.peer.to_string(),
            factor,
        });
        Auth::Accept
    }
}

/// The keyboard-interactive prompt for the one-time code.
fn code_prompt(user: &str) -> Auth {
    Auth::Partial {
        name: "jitca".into(),
        instructions: "".into(),
        prompts: vec![(
            format!("jitca one-time code for {user} (empty to skip): ").into(),
            false,
        )]
        .into(),
    }
}

/// The longest answer to the code prompt looked at (a code is six digits).
const MAX_ANSWER: usize = 64;

impl Handler for Connection {
    type Error = russh::Error;

    async fn auth_none(&mut self, user: &str) -> Result<Auth, Self::Error> {
        self.attempt(user);
        Ok(Auth::reject())
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        let known = self.known(offer.public_key);
        if known.is_none() {
            let fingerprint = offer
                .public_key
                .fingerprint(russh::keys::HashAlg::Sha256)
                .to_string();
            let tried = self.attempt(user);
            if tried.keys.len() < MAX_KEYS_RECORDED {
                tried.keys.push(fingerprint);
            }
        }
        // Unknown keys are refused before the client spends a signature on them.
        Ok(match known {
            Some(_) => Auth::Accept,
            None => Auth::reject(),
        })
    }

    async fn auth_publickey(
        &mut self,
        _user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        match self.known(key.public_key) {
            Some(user) => {
                self.key = Some(key.public_key.clone());
                // A failed read only means no code is asked: the factor is then not proved,
                // and rules that ask for one refuse. On a blocking thread, and for at most
                // MFA_READ_LIMIT: a shared store answers over the network, and a database
                // that does not answer must not hold the login as well as the command.
                let authority = self.authority.clone();
                let whose = user.clone();
                let read = match tokio::time::timeout(
                    MFA_READ_LIMIT,
                    tokio::task::spawn_blocking(move || authority.mfa_active(&whose)),
                )
                .await
                {
                    Ok(Ok(read)) => read.map_err(|e| e.to_string()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("the store did not answer in time".to_string()),
                };
                let active = read.unwrap_or_else(|e| {
                    tracing::error!(%user, error = %e, "cannot read a second factor");
                    false
                });
                if !active {
                    return Ok(self.authenticated(user, Factor::NotEnrolled));
                }
                // The key is right; the code comes next. Partial success, so OpenSSH asks it.
                tracing::debug!(peer = %self.peer, %user, "key accepted, asking the one-time code");
                self.awaiting_code = Some(user);
                Ok(Auth::Reject {
                    proceed_with_methods: Some(MethodSet::from(
                        &[MethodKind::KeyboardInteractive][..],
                    )),
                    partial_success: true,
                })
            }
            None => {
                tracing::info!(peer = %self.peer, "refused an unknown key");
                Ok(Auth::reject())
            }
        }
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        response: Option<Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        // Only ever a second step, after a key that names someone with a second factor.
        let Some(who) = self.awaiting_code.clone() else {
            self.attempt(user);
            return Ok(Auth::reject());
        };
        let Some(mut response) = response else {
            return Ok(code_prompt(&who));
        };
        let answer: String = response
            .next()
            .map(|bytes| {
                String::from_utf8_lossy(&bytes)
                    .chars()
                    .take(MAX_ANSWER)
                    .collect()
            })
            .unwrap_or_default();
        let authority = self.authority.clone();
        let source = self.peer.to_string();
        let checked = who.clone();
        let factor =
            tokio::task::spawn_blocking(move || authority.mfa_check(&checked, &source, &answer))
                .await
                .unwrap_or_else(|_| {
                    Factor::Failed("the one-time code could not be checked".into())
                });
        // Accepted whatever the answer: the key alone authenticates; the factor only gates
        // the rules that ask for it, whose refusal then says why in one line.
        Ok(self.authenticated(who, factor))
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let (Some(caller), Some(key)) = (self.caller.clone(), self.key.clone()) else {
            reply
                .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        reply.accept().await;
        let refusal = match &self.held {
            Some(Err(why)) => Some(why.clone()),
            _ => None,
        };
        tokio::spawn(channel::run(
            channel,
            self.authority.clone(),
            caller,
            key,
            self.hint.clone(),
            self.activity.clone(),
            refusal,
        ));
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // The channel task reads the command itself.
        session.channel_success(channel)?;
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Accepted only so that the channel task can say, in one line, why there is no shell.
        session.channel_success(channel)?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Acknowledged only so that the channel task can refuse the command with exit status 1
        // and one line saying why; no terminal is ever allocated.
        session.channel_success(channel)?;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        _value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _protocol: &str,
        _cookie: &str,
        _screen: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn agent_request(
        &mut self,
        _channel: ChannelId,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        Ok(false)
    }
}

impl Drop for Connection {
    /// A connection that tried to authenticate and never did is recorded (rate-limited).
    fn drop(&mut self) {
        if self.caller.is_some() {
            return;
        }
        let Some(failure) = self.tried.take() else {
            return;
        };
        self.metrics.auth_failed();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let authority = self.authority.clone();
        runtime.spawn_blocking(move || {
            if let Err(e) = authority.record_auth_failure(Some(&failure)) {
                tracing::error!(error = %e, "cannot record a failed authentication");
            }
        });
    }
}
