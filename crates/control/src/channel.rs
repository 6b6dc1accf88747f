//! One session channel: wait for the exec request, feed stdin to the command, write its
//! output, finish with exit status, EOF and close (in that order, or `ssh` hangs).

use std::sync::Arc;

use bytes::Bytes;
use jitca_authority::{Authority, Caller};
use russh::server::Msg;
use russh::{Channel, ChannelMsg};
use tokio::sync::{mpsc, oneshot};

use crate::commands::{self, Ctx};
use crate::gate::Activity;
use crate::io::{Output, Stdin};

/// Runs one session channel. The connection counts as active while its command runs;
/// `refusal` refuses every command (the person holds too many connections).
pub(crate) async fn run(
    channel: Channel<Msg>,
    authority: Arc<Authority>,
    caller: Caller,
    key: russh::keys::PublicKey,
    hint: Arc<str>,
    activity: Arc<Activity>,
    refusal: Option<String>,
) {
    let (mut reader, writer) = channel.split();
    let out = Output::new(writer);
    let mut pty = false;
    let command = loop {
        match reader.wait().await {
            Some(ChannelMsg::Exec { command, .. }) => break Some(command),
            Some(ChannelMsg::RequestShell { .. }) => break None,
            Some(ChannelMsg::RequestPty { .. }) => pty = true,
            // Env, subsystems and the like are refused by the connection handler.
            Some(_) => continue,
            None => return,
        }
    };
    let _busy = activity.begin();
    let refusal = match (&command, pty) {
        _ if refusal.is_some() => refusal.map(|why| format!("jitca: {why}")),
        (None, _) => Some(format!(
            "jitca: there is no shell here; run a command, e.g. `{hint} help`"
        )),
        (Some(_), true) => Some("jitca: no terminals here; run the command without -t".to_string()),
        (Some(_), false) => None,
    };
    let (Some(command), None) = (command, refusal.as_ref()) else {
        out.stderr(&refusal.unwrap_or_default()).await;
        out.finish(1).await;
        return;
    };

    let (stdin_tx, stdin_rx) = mpsc::channel::<Bytes>(16);
    let (closed_tx, closed_rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut stdin_tx = Some(stdin_tx);
        while let Some(msg) = reader.wait().await {
            match msg {
                ChannelMsg::Data { data } => {
                    if let Some(tx) = &stdin_tx
                        && tx.send(data).await.is_err()
                    {
                        // The command does not read stdin: discard the rest.
                        stdin_tx = None;
                    }
                }
                ChannelMsg::Eof => stdin_tx = None,
                _ => {}
            }
        }
        let _ = closed_tx.send(());
    });

    let mut ctx = Ctx {
        authority,
        caller,
        key,
        out,
        stdin: Some(Stdin::new(stdin_rx)),
        hint,
    };
    tokio::select! {
        status = commands::dispatch(&mut ctx, &command) => ctx.out.finish(status).await,
        // The client went away: stop waiting. State changes already started run to the end
        // on their own blocking threads.
        _ = closed_rx => {}
    }
}
