//! The `LISTEN` connection: one per queue handle (shared by its clones),
//! outside the pool, since its notifications arrive on the connection
//! itself. It wakes the claiming loop on `<table>_new` and `result`
//! waiters on `<table>_done`, and reconnects after a failure.

use std::future::poll_fn;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, oneshot, Notify};
use tokio_postgres::{AsyncMessage, NoTls};

use crate::trace::trace_event;

/// Sent on [`Hub::done`] after a (re)connect: every waiter looks again.
pub(super) const RECHECK: i64 = -1;

/// Where notifications go.
#[derive(Debug)]
pub(super) struct Hub {
    /// Something may be ready to claim (one permit is kept if nobody waits).
    pub(super) new: Notify,
    /// The id of a task that reached a terminal status, or [`RECHECK`].
    pub(super) done: broadcast::Sender<i64>,
}

impl Hub {
    pub(super) fn new() -> Hub {
        Hub {
            new: Notify::new(),
            done: broadcast::channel(1024).0,
        }
    }
}

/// Keeps the listener task alive; dropping it ends the task and closes its
/// connection.
#[derive(Debug)]
pub(super) struct Listener {
    _stop: oneshot::Sender<()>,
}

/// Starts the listener task and waits (at most `wait`) until it listens, so
/// that a waiter subscribing right after misses nothing.
pub(super) async fn start(
    config: tokio_postgres::Config,
    channels: [String; 2],
    hub: Arc<Hub>,
    wait: Duration,
) -> Listener {
    let (stop_tx, stop) = oneshot::channel();
    let (ready_tx, ready) = oneshot::channel();
    tokio::spawn(run(config, channels, hub, stop, ready_tx));
    let _ = tokio::time::timeout(wait, ready).await;
    Listener { _stop: stop_tx }
}

async fn run(
    config: tokio_postgres::Config,
    [new, done]: [String; 2],
    hub: Arc<Hub>,
    mut stop: oneshot::Receiver<()>,
    ready: oneshot::Sender<()>,
) {
    let mut ready = Some(ready);
    let listen_sql = format!("LISTEN {new}; LISTEN {done}");
    loop {
        let connected = tokio::select! {
            _ = &mut stop => return,
            c = config.connect(NoTls) => c,
        };
        match connected {
            Ok((client, mut conn)) => {
                let listen = client.batch_execute(&listen_sql);
                tokio::pin!(listen);
                let mut listening = false;
                loop {
                    tokio::select! {
                        _ = &mut stop => return,
                        r = &mut listen, if !listening => {
                            if r.is_err() {
                                break;
                            }
                            listening = true;
                            // Anything sent while we were not listening: look again.
                            hub.new.notify_one();
                            let _ = hub.done.send(RECHECK);
                            if let Some(tx) = ready.take() {
                                let _ = tx.send(());
                            }
                        }
                        m = poll_fn(|cx| conn.poll_message(cx)) => match m {
                            Some(Ok(AsyncMessage::Notification(n))) => {
                                if n.channel() == done {
                                    if let Ok(id) = n.payload().parse::<i64>() {
                                        let _ = hub.done.send(id);
                                    }
                                } else {
                                    hub.new.notify_one();
                                }
                            }
                            Some(Ok(_)) => {}
                            Some(Err(_e)) => {
                                trace_event!(WARN, error = %_e, "queue: listener connection failed");
                                break;
                            }
                            None => break,
                        }
                    }
                }
            }
            Err(_e) => {
                trace_event!(WARN, error = %_e, "queue: listener could not connect");
            }
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}
