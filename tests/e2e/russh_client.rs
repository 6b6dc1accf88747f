//! A second SSH client, russh's, for what the OpenSSH client here cannot show: it offers
//! exactly the key exchange a test names (OpenSSH 9.2 has no ML-KEM), reports what was
//! negotiated, and asks for a reply to channel requests that OpenSSH sends without wanting
//! one (agent forwarding, env), so that a refusal can be seen on the wire.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use russh::client::{self, Handle, Msg, Session};
use russh::keys::{PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{Channel, ChannelMsg, Names, Preferred, kex};

use crate::harness::{Ca, Person};

/// What the key exchange agreed on, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub kex: String,
    pub strict_kex: bool,
}

pub struct Handler {
    /// The daemon's host key: pinned, as hosts pin the CA's.
    host_key: PublicKey,
    negotiated: Arc<Mutex<Option<Negotiated>>>,
}

impl client::Handler for Handler {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        offered: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(
            matches!(offered, PublicKeyOrCertificate::PublicKey { key, .. }
            if key.key_data() == self.host_key.key_data()),
        )
    }

    async fn kex_done(
        &mut self,
        _shared_secret: Option<&[u8]>,
        names: &Names,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        *self.negotiated.lock().unwrap() = Some(Negotiated {
            kex: names.kex.as_ref().to_string(),
            strict_kex: names.strict_kex(),
        });
        Ok(())
    }
}

/// An authenticated connection to a test daemon.
pub struct Connection {
    handle: Handle<Handler>,
    negotiated: Arc<Mutex<Option<Negotiated>>>,
}

/// What a command gave over a session channel.
#[derive(Debug)]
pub struct Ran {
    pub status: Option<u32>,
    pub stdout: String,
    pub stderr: String,
}

impl Connection {
    /// Connects to `ca`'s daemon offering only the key exchange methods `kex` (markers such
    /// as strict key exchange included), and authenticates as `who` with their key.
    pub async fn open(ca: &Ca, who: &Person, kex: &'static [kex::Name]) -> Connection {
        let (mut handle, negotiated) = handshake(ca, kex).await.expect("the handshake succeeds");
        let key = russh::keys::load_secret_key(&who.key, None).unwrap();
        let auth = handle
            .authenticate_publickey("jitca", PrivateKeyWithHashAlg::new(Arc::new(key), None))
            .await
            .unwrap();
        assert!(
            auth.success(),
            "{}'s key was not accepted: {auth:?}",
            who.name
        );
        Connection { handle, negotiated }
    }

    /// What the initial key exchange agreed on.
    pub fn negotiated(&self) -> Negotiated {
        self.negotiated
            .lock()
            .unwrap()
            .clone()
            .expect("key exchange done")
    }

    pub async fn session(&self) -> Channel<Msg> {
        self.handle.channel_open_session().await.unwrap()
    }

    /// Asks the daemon to listen for us (`ssh -R`): the port it granted, or its refusal.
    pub async fn remote_forward(&self) -> Result<u32, russh::Error> {
        self.handle.tcpip_forward("127.0.0.1", 0).await
    }
}

/// The key exchange with `ca`'s daemon, offering only the methods `kex`: the connection and
/// what was agreed on, or why the handshake failed.
pub async fn handshake(
    ca: &Ca,
    kex: &'static [kex::Name],
) -> Result<(Handle<Handler>, Arc<Mutex<Option<Negotiated>>>), russh::Error> {
    let host_key = russh::keys::load_public_key(ca.dir.path().join("host_ed25519.pub")).unwrap();
    let config = client::Config {
        preferred: Preferred {
            kex: Cow::Borrowed(kex),
            ..Preferred::DEFAULT
        },
        ..Default::default()
    };
    let negotiated = Arc::default();
    let handler = Handler {
        host_key,
        negotiated: Arc::clone(&negotiated),
    };
    let handle = client::connect(Arc::new(config), ("127.0.0.1", ca.port), handler).await?;
    Ok((handle, negotiated))
}

/// The daemon's answer to the last request sent with `want_reply`: true for success.
pub async fn reply(channel: &mut Channel<Msg>) -> bool {
    loop {
        match channel.wait().await {
            Some(ChannelMsg::Success) => return true,
            Some(ChannelMsg::Failure) => return false,
            // Window adjustments and the like say nothing about the request.
            Some(_) => continue,
            None => panic!("the channel closed without answering"),
        }
    }
}

/// Runs `command` on `channel` and reads until the daemon closes it.
pub async fn exec(mut channel: Channel<Msg>, command: &str) -> Ran {
    channel.exec(true, command).await.unwrap();
    assert!(reply(&mut channel).await, "exec {command:?} was refused");
    let mut ran = Ran {
        status: None,
        stdout: String::new(),
        stderr: String::new(),
    };
    while let Some(msg) = channel.wait().await {
        match msg {
            ChannelMsg::Data { data } => ran.stdout.push_str(&String::from_utf8_lossy(&data)),
            ChannelMsg::ExtendedData { data, ext: 1 } => {
                ran.stderr.push_str(&String::from_utf8_lossy(&data))
            }
            ChannelMsg::ExitStatus { exit_status } => ran.status = Some(exit_status),
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    ran
}
