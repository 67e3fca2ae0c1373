//! Explicit shutdown: SIGINT or SIGTERM fires a [`Shutdown`] that every task watches; the
//! task then finishes its current step, cleans up (revokes its lease) and returns.

use std::time::Duration;

use tokio::sync::watch;

/// A cheap, clonable "stop now" flag that tasks can wait on.
#[derive(Clone, Debug)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// Fires the [`Shutdown`]s made with it.
#[derive(Debug)]
pub struct Trigger {
    tx: watch::Sender<bool>,
}

/// The sleep was cut short by a shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger { tx }, Shutdown { rx })
}

impl Trigger {
    pub fn fire(&self) {
        self.tx.send_replace(true);
    }
}

impl Shutdown {
    /// A shutdown that never fires (one-shot CLI commands).
    pub fn never() -> Self {
        let (trigger, shutdown) = channel();
        std::mem::forget(trigger);
        shutdown
    }

    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Returns once the shutdown has fired.
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        // An error means every trigger was dropped: treat it as "never fires".
        if rx.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Sleeps for `duration`, or less if the shutdown fires (then `Err(Stopped)`).
    pub async fn sleep(&self, duration: Duration) -> Result<(), Stopped> {
        tokio::select! {
            _ = tokio::time::sleep(duration) => Ok(()),
            _ = self.wait() => Err(Stopped),
        }
    }
}

/// Fires the returned [`Shutdown`] on the first SIGINT or SIGTERM. Must be called inside
/// a tokio runtime.
pub fn on_signals() -> std::io::Result<Shutdown> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let (trigger, shutdown) = channel();
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        };
        tracing::info!("{name} received: shutting down");
        trigger.fire();
    });
    Ok(shutdown)
}
