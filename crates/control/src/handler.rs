//! One connection: authentication maps the key to a user; session channels run commands;
//! everything else is refused.

use std::net::SocketAddr;
use std::sync::Arc;

use jitca_authority::{Authority, Caller};
use russh::server::{
    Auth, ChannelOpenHandle, Handler, Msg, PublicKeyOffer, Session, VerifiedPublicKey,
};
use russh::{Channel, ChannelId, Pty};

use crate::channel;

pub(crate) struct Connection {
    authority: Arc<Authority>,
    peer: SocketAddr,
    hint: Arc<str>,
    /// Set once public-key authentication succeeds.
    caller: Option<Caller>,
}

impl Connection {
    pub(crate) fn new(authority: Arc<Authority>, peer: SocketAddr, hint: Arc<str>) -> Self {
        Self {
            authority,
            peer,
            hint,
            caller: None,
        }
    }

    fn known(&self, key: &russh::keys::PublicKey) -> Option<String> {
        self.authority
            .policy()
            .identify(key)
            .map(|user| user.name.clone())
    }
}

impl Handler for Connection {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        // Unknown keys are refused before the client spends a signature on them.
        Ok(match self.known(offer.public_key) {
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
                tracing::debug!(peer = %self.peer, %user, "authenticated");
                self.caller = Some(Caller {
                    user,
                    source: crate::server::peer_text(self.peer),
                });
                Ok(Auth::Accept)
            }
            None => {
                tracing::info!(peer = %self.peer, "refused an unknown key");
                Ok(Auth::reject())
            }
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(caller) = self.caller.clone() else {
            reply
                .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        reply.accept().await;
        tokio::spawn(channel::run(
            channel,
            self.authority.clone(),
            caller,
            self.hint.clone(),
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
