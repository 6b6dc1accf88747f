//! Accepting connections and running each as an SSH session.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::limits::Limits;
use jitca_authority::Authority;
use russh::keys::PrivateKey;
use russh::server::Config;
use std::borrow::Cow;

use russh::keys::{Algorithm, EcdsaCurve, HashAlg};
use russh::{Disconnect, MethodKind, MethodSet, Preferred, SshId, cipher, kex, mac};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::gate::{Activity, Gate, Startup};
use crate::handler::Connection;
use crate::quickack::QuickAck;

/// What the server needs besides the authority.
pub struct ServerOptions {
    pub host_key: PrivateKey,
    /// Shown to users in help texts, e.g. `ssh -p 2222 jitca@ca.example`.
    pub ssh_hint: String,
    pub limits: Limits,
    /// Where connections and failed authentications are counted.
    pub metrics: jitca_metrics::Metrics,
}

/// Serves the control channel on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    authority: Arc<Authority>,
    options: ServerOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let config = Arc::new(Config {
        server_id: SshId::Standard("SSH-2.0-jitca".into()),
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        // OpenSSH tries "none" first: answer it at once, delay only real rejections.
        auth_rejection_time: Duration::from_secs(1),
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![options.host_key],
        // A waiting `request` is silent for up to `pending_ttl`: keepalives, not an idle
        // timeout, tell a live client from a dead one.
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 3,
        nodelay: true,
        preferred: modern_algorithms(),
        ..Default::default()
    });
    let hint: Arc<str> = options.ssh_hint.into();
    let gate = Gate::new(options.limits);
    tokio::pin!(shutdown);
    loop {
        let (socket, peer) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of descriptors and the like: say so, back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Over the limits: closed before a byte is read, at no cost but the accept.
        let startup = match gate.startup(peer.ip()) {
            Ok(startup) => startup,
            Err(why) => {
                tracing::debug!(%peer, why, "connection refused");
                continue;
            }
        };
        let authenticated = Arc::new(Notify::new());
        let activity = Activity::new();
        let handler = Connection::new(
            authority.clone(),
            peer,
            hint.clone(),
            gate.clone(),
            authenticated.clone(),
            activity.clone(),
            options.metrics.clone(),
        );
        tokio::spawn(run_connection(
            config.clone(),
            socket,
            handler,
            startup,
            authenticated,
            activity,
        ));
    }
}

/// One connection, from its first byte: authenticated within the grace time or dropped, then
/// closed when it sits idle.
async fn run_connection(
    config: Arc<Config>,
    socket: TcpStream,
    handler: Connection,
    startup: Startup,
    authenticated: Arc<Notify>,
    activity: Arc<Activity>,
) {
    let limits = *startup.limits();
    let peer = socket.peer_addr().ok();
    let _ = socket.set_nodelay(true);
    // A second handle on the socket, to cut a client off even when the SSH session behind
    // it no longer reads (a client that stalls in the middle of key exchange).
    let Ok((socket, cutter)) = with_cutter(socket) else {
        return;
    };
    let grace = tokio::time::sleep(limits.login_grace_time);
    tokio::pin!(grace);
    // The version exchange is inside the grace time too: a client trickling bytes is cut off.
    let mut session = tokio::select! {
        started = russh::server::run_stream(config, QuickAck::new(socket), handler) => match started {
            Ok(session) => session,
            Err(e) => {
                tracing::debug!(?peer, error = %e, "connection setup failed");
                return;
            }
        },
        _ = &mut grace => {
            tracing::debug!(?peer, "no SSH version exchange within the grace time");
            return;
        }
    };
    let handle = session.handle();
    let cut = |why: &'static str| {
        let handle = handle.clone();
        let cutter = &cutter;
        async move {
            let _ = handle
                .disconnect(Disconnect::ByApplication, why.into(), String::new())
                .await;
            // Give a live client the message; then close the socket regardless.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            let _ = cutter.shutdown(std::net::Shutdown::Both);
        }
    };
    tokio::select! {
        ended = &mut session => {
            if let Err(e) = ended {
                tracing::debug!(?peer, error = %e, "connection ended before authenticating");
            }
            return;
        }
        _ = authenticated.notified() => {}
        _ = &mut grace => {
            tracing::info!(?peer, "authentication took longer than login_grace_time: disconnected");
            cut("authentication took too long").await;
            return;
        }
    }
    // Authenticated: it no longer counts against the start-up limits.
    drop(startup);
    tokio::select! {
        ended = &mut session => {
            if let Err(e) = ended {
                tracing::debug!(?peer, error = %e, "connection ended with an error");
            }
        }
        _ = activity.idle_for(limits.idle_timeout) => {
            tracing::info!(?peer, "idle longer than idle_timeout: disconnected");
            cut("idle too long").await;
        }
    }
}

/// Modern algorithms only (see docs/security.md): hybrid post-quantum and X25519 key
/// exchange with OpenSSH's strict key exchange (the Terrapin fix), AEAD ciphers, no SHA-1
/// signatures, no finite-field Diffie-Hellman, no CBC or CTR modes, no compression.
fn modern_algorithms() -> Preferred {
    Preferred {
        kex: Cow::Borrowed(&[
            kex::MLKEM768X25519_SHA256,
            kex::CURVE25519,
            kex::CURVE25519_PRE_RFC_8731,
            kex::EXTENSION_SUPPORT_AS_SERVER,
            kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER,
        ]),
        key: Cow::Owned(vec![
            Algorithm::Ed25519,
            Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP256,
            },
            Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP384,
            },
            Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP521,
            },
            Algorithm::Rsa {
                hash: Some(HashAlg::Sha512),
            },
            Algorithm::Rsa {
                hash: Some(HashAlg::Sha256),
            },
        ]),
        cipher: Cow::Borrowed(&[
            cipher::CHACHA20_POLY1305,
            cipher::AES_256_GCM,
            cipher::AES_128_GCM,
        ]),
        mac: Cow::Borrowed(&[mac::HMAC_SHA512_ETM, mac::HMAC_SHA256_ETM]),
        compression: Cow::Borrowed(&[russh::compression::NONE]),
        ..Preferred::DEFAULT
    }
}

/// The socket, and a clone of its descriptor that can shut it down from outside.
fn with_cutter(socket: TcpStream) -> std::io::Result<(TcpStream, std::net::TcpStream)> {
    let std = socket.into_std()?;
    let cutter = std.try_clone()?;
    Ok((TcpStream::from_std(std)?, cutter))
}
