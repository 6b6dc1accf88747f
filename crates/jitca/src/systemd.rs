//! systemd's readiness protocol for `Type=notify` (sd_notify(3)): what the daemon tells the
//! service manager, and the watchdog's keep-alive. Without `NOTIFY_SOCKET` every call here
//! does nothing.

use std::time::Duration;

use sd_notify::NotifyState;

/// Sends `states` in one datagram; a failure is logged, never fatal (the daemon serves anyway).
fn send(states: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(error = %e, "cannot notify systemd (NOTIFY_SOCKET)");
    }
}

/// Accepting connections.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload starts (SIGHUP). systemd 253 and later want the monotonic time with it.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[
            NotifyState::Reloading,
            now,
            NotifyState::Status("reloading the config"),
        ]),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the monotonic clock for systemd");
            send(&[NotifyState::Reloading, NotifyState::Status("reloading")]);
        }
    }
}

/// Shutting down.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, when systemd set it for this
/// process (`WATCHDOG_PID` absent or ours, as sd_watchdog_enabled(3) reads them).
pub fn watchdog_interval() -> Option<Duration> {
    std::env::var_os("NOTIFY_SOCKET")?;
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.trim().parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// Sends `WATCHDOG=1` every `interval`, for as long as the runtime (and so the daemon) is
/// responsive enough to run this task.
pub async fn keep_alive(interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    loop {
        tick.tick().await;
        send(&[NotifyState::Watchdog]);
    }
}
