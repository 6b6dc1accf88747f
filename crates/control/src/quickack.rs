//! Immediate TCP acknowledgements while a connection sets up.
//!
//! During key exchange the OpenSSH client writes two packets back to back (KEXINIT, then its
//! key-exchange init) before it has set `TCP_NODELAY`; Nagle holds the second until the first
//! is acknowledged, and Linux delays that acknowledgement by up to 40 ms because the server has
//! nothing to send meanwhile. Every fresh connection then waited about 40 ms for nothing.
//! Asking for a quick acknowledgement after each read (the kernel turns `TCP_QUICKACK` off
//! again by itself) sends it at once. Only the first reads need it: after authentication the
//! client runs with `TCP_NODELAY` and acknowledgements may ride on replies again.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Reads after which delayed acknowledgements are left alone: more than the version
/// exchange, key exchange and authentication take.
const SETUP_READS: u8 = 32;

/// A TCP stream that acknowledges at once for its first [`SETUP_READS`] reads.
pub(crate) struct QuickAck {
    inner: TcpStream,
    reads_left: u8,
}

impl QuickAck {
    pub(crate) fn new(inner: TcpStream) -> Self {
        let _ = inner.set_quickack(true);
        Self {
            inner,
            reads_left: SETUP_READS,
        }
    }
}

impl AsyncRead for QuickAck {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.reads_left > 0
            && matches!(polled, Poll::Ready(Ok(())))
            && buf.filled().len() > before
        {
            self.reads_left -= 1;
            // Best effort: a failure only means the old 40 ms wait.
            let _ = self.inner.set_quickack(true);
        }
        polled
    }
}

impl AsyncWrite for QuickAck {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
