//! What a command reads and writes: the client's stdin, and the channel's stdout and stderr.
//!
//! Apart from the channel that feeds them, so that the commands and the channel each depend on
//! this and not on one another.

use bytes::Bytes;
use russh::ChannelWriteHalf;
use russh::server::Msg;
use tokio::sync::mpsc;

/// Where a command writes. stdout is for programs, stderr for people.
pub(crate) struct Output {
    writer: ChannelWriteHalf<Msg>,
}

impl Output {
    pub(crate) fn new(writer: ChannelWriteHalf<Msg>) -> Self {
        Self { writer }
    }

    pub(crate) async fn stdout(&self, bytes: impl Into<Bytes>) {
        // A client that went away cannot be written to; the command finishes regardless.
        let _ = self.writer.data_bytes(bytes.into()).await;
    }

    /// One line for a person, on stderr.
    pub(crate) async fn stderr(&self, line: &str) {
        let text = format!("{}\n", line.trim_end_matches('\n'));
        let _ = self.writer.extended_data_bytes(1, Bytes::from(text)).await;
    }

    /// Exit status, EOF and close, in that order (or `ssh` hangs).
    pub(crate) async fn finish(&self, status: u32) {
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
    pub(crate) fn new(rx: mpsc::Receiver<Bytes>) -> Self {
        Self { rx }
    }

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
