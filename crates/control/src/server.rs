//! Accepting connections and running each as an SSH session.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use jitca_authority::Authority;
use russh::keys::PrivateKey;
use russh::server::Config;
use russh::{MethodKind, MethodSet, SshId};
use tokio::net::TcpListener;

use crate::handler::Connection;

/// What the server needs besides the authority.
pub struct ServerOptions {
    pub host_key: PrivateKey,
    /// Shown to users in help texts, e.g. `ssh -p 2222 jitca@ca.example`.
    pub ssh_hint: String,
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
        ..Default::default()
    });
    let hint: Arc<str> = options.ssh_hint.into();
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
        let config = config.clone();
        let handler = Connection::new(authority.clone(), peer, hint.clone());
        tokio::spawn(async move {
            let _ = socket.set_nodelay(true);
            match russh::server::run_stream(config, socket, handler).await {
                Ok(session) => {
                    if let Err(e) = session.await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                Err(e) => tracing::debug!(%peer, error = %e, "connection setup failed"),
            }
        });
    }
}

/// For log lines.
pub(crate) fn peer_text(peer: SocketAddr) -> String {
    peer.to_string()
}
