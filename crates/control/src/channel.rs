//! One session channel: wait for the exec request, feed stdin to the command, write its
//! output, finish with exit status, EOF and close (in that order, or `ssh` hangs).

use std::sync::Arc;

use bytes::Bytes;
use jitca_authority::{Authority, Caller};
use russh::server::Msg;
use russh::{Channel, ChannelMsg, ChannelWriteHalf};
use tokio::sync::{mpsc, oneshot};

use crate::commands::{self, Ctx};
use crate::gate::Activity;

/// Where a command writes. stdout is for programs, stderr for people.
pub(crate) struct Output {
    writer: ChannelWriteHalf<Msg>,
}

impl Output {
    pub(crate) async fn stdout(&self, bytes: impl Into<Bytes>) {
        // A client that went away cannot be written to; the command finishes regardless.
        let _ = self.writer.data_bytes(bytes.into()).await;
    }

    /// One line for a person, on stderr.
    pub(crate) async fn stderr(&self, line: &str) {
        let text = format!("{}\n", line.trim_end_matches('\n'));
        let _ = self.writer.extended_data_bytes(1, Bytes::from(text)).await;
    }

    async fn finish(&self, status: u32) {
        let _ = self.writer.exit_status(status).await;
        let _ = self.writer.eof().await;
        let _ = self.writer.close().await;
    }
}

/// The client's stdin: chunks until EOF. Dropping it discards whatever else arrives.
pub(crate) struct Stdin {
    rx: mpsc::Receiver<Bytes>,
}

/// What reading stdin gave.
pub(crate) enum StdinRead {
    Complete(Vec<u8>),
    TooLong,
}

impl Stdin {
    /// Reads until EOF, giving up as soon as more than `limit` bytes arrive.
    pub(crate) async fn read_to_end(&mut self, limit: usize) -> StdinRead {
        let mut all = Vec::new();
        while let Some(chunk) = self.rx.recv().await {
            if all.len() + chunk.len() > limit {
                return StdinRead::TooLong;
            }
            all.extend_from_slice(&chunk);
        }
        StdinRead::Complete(all)
    }
}

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
    let out = Output { writer };
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
        stdin: Some(Stdin { rx: stdin_rx }),
        hint,
    };
    tokio::select! {
        status = commands::dispatch(&mut ctx, &command) => ctx.out.finish(status).await,
        // The client went away: stop waiting. State changes already started run to the end
        // on their own blocking threads.
        _ = closed_rx => {}
    }
}
