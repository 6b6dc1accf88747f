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

/// Sends `WATCHDOG=1` every `interval` while the daemon can still do its work: the runtime
/// runs this task, and `alive` (the store completing a flush, on a blocking thread) answers
/// within the interval. A storage engine stuck inside itself (sled 0.34 can deadlock under
/// sustained writes, spacejam/sled#1412; docs/benchmarks.md) stops the pings, and systemd
/// restarts the daemon after `WatchdogSec`: every write that let a certificate leave was
/// flushed, and the store recovers it at the next start.
pub async fn keep_alive<F>(interval: Duration, alive: F)
where
    F: Fn() -> Result<(), String> + Clone + Send + 'static,
{
    watch(interval, alive, || send(&[NotifyState::Watchdog])).await
}

/// [`keep_alive`] with the ping given. One probe at a time: a probe still running at the
/// next tick is waited for again, not joined by another.
async fn watch<F>(interval: Duration, alive: F, ping: impl Fn())
where
    F: Fn() -> Result<(), String> + Clone + Send + 'static,
{
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut running: Option<tokio::task::JoinHandle<Result<(), String>>> = None;
    let mut stuck = false;
    loop {
        tick.tick().await;
        let mut probe = running
            .take()
            .unwrap_or_else(|| tokio::task::spawn_blocking(alive.clone()));
        match tokio::time::timeout(interval, &mut probe).await {
            Err(_) => {
                tracing::error!(
                    waited = ?interval,
                    "the store has not completed a flush: not telling systemd the daemon is \
                     alive (it restarts the daemon after WatchdogSec)"
                );
                stuck = true;
                running = Some(probe);
            }
            Ok(Err(panicked)) => {
                tracing::error!(error = %panicked, "the store's liveness check failed");
            }
            Ok(Ok(outcome)) => {
                if let Err(e) = outcome {
                    // A flush that fails (a full disk) is not a hang: what needs it is refused
                    // with the reason, and the daemon still answers.
                    tracing::error!(error = %e, "the store cannot flush");
                }
                if std::mem::take(&mut stuck) {
                    tracing::info!("the store completes flushes again");
                }
                ping();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;

    /// Pings and probes counted while the store answers, hangs, and answers again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_watchdog_is_pinged_only_while_the_store_completes_a_flush() {
        /// Lets every probe return when the test ends, also by a failed assertion (the
        /// runtime waits for its blocking threads).
        struct Release(Arc<AtomicBool>);
        impl Drop for Release {
            fn drop(&mut self) {
                self.0.store(false, Ordering::SeqCst);
            }
        }
        let hung = Arc::new(AtomicBool::new(false));
        let _release = Release(hung.clone());
        let probes = Arc::new(AtomicUsize::new(0));
        let pings = Arc::new(AtomicUsize::new(0));
        let alive = {
            let (hung, probes) = (hung.clone(), probes.clone());
            move || {
                probes.fetch_add(1, Ordering::SeqCst);
                while hung.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(())
            }
        };
        let task = tokio::spawn(watch(Duration::from_millis(20), alive, {
            let pings = pings.clone();
            move || {
                pings.fetch_add(1, Ordering::SeqCst);
            }
        }));
        let settle = || tokio::time::sleep(Duration::from_millis(300));
        settle().await;
        assert!(
            pings.load(Ordering::SeqCst) >= 3,
            "pinged while the store answers"
        );

        hung.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(60)).await;
        let (pings_hung, probes_hung) =
            (pings.load(Ordering::SeqCst), probes.load(Ordering::SeqCst));
        settle().await;
        assert_eq!(
            pings.load(Ordering::SeqCst),
            pings_hung,
            "no ping while a flush hangs"
        );
        assert_eq!(
            probes.load(Ordering::SeqCst),
            probes_hung,
            "a hung probe is waited for, not joined by more"
        );

        hung.store(false, Ordering::SeqCst);
        settle().await;
        assert!(
            pings.load(Ordering::SeqCst) >= pings_hung + 3,
            "pinged again once the store answers"
        );
        task.abort();
    }
}
