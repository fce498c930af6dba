//! The workers: one thread each, with its own current-thread runtime (its own epoll,
//! timers and task queue) and its own listening socket. A connection lives its whole life
//! on the worker that accepted it: no work stealing, no wake-ups across threads.
//!
//! It does not decide anything about connections (that is `conn.rs`) and does not drain:
//! [`Lb::run`](crate::Lb::run) stops the workers' accept loops, drains, and joins them.

use crate::Shared;
use std::io;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// One accepting and forwarding thread.
pub(crate) struct Worker {
    /// Fires when the worker's accept loop has ended and its listening socket is closed.
    listener_closed: Option<tokio::sync::oneshot::Receiver<()>>,
    /// Fires when the thread is about to end (its connections are all over).
    done: tokio::sync::oneshot::Receiver<()>,
}

impl Worker {
    /// Builds the worker's runtime and registers its sockets here (one per listening
    /// address: the node-local preset listens on `127.0.0.1` and `[::1]`), so that both
    /// can fail before anything is served; then starts the thread.
    pub(crate) fn start(
        index: usize,
        shared: &Arc<Shared>,
        listeners: Vec<std::net::TcpListener>,
        stop: CancellationToken,
    ) -> io::Result<Worker> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let listeners = {
            let _in_runtime = runtime.enter();
            listeners
                .into_iter()
                .map(TcpListener::from_std)
                .collect::<io::Result<Vec<_>>>()?
        };
        let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let shared = shared.clone();
        std::thread::Builder::new()
            .name(format!("cpe-lb-{index}"))
            .spawn(move || {
                runtime.block_on(async {
                    // One accept loop per address, all on this thread's event loop.
                    let mut loops = tokio::task::JoinSet::new();
                    for listener in listeners {
                        let (shared, stop) = (shared.clone(), stop.clone());
                        loops.spawn(async move { shared.accept_loop(listener, stop).await });
                    }
                    while loops.join_next().await.is_some() {}
                    let _ = closed_tx.send(());
                    // The connections this worker accepted run on this runtime: it
                    // lives until they have all ended (drained or cut by `run`).
                    shared.connections.wait().await;
                });
                // Its epoll and wake-up descriptors are closed before `run` hears that
                // the worker is done.
                drop(runtime);
                let _ = done_tx.send(());
            })?;
        Ok(Worker {
            listener_closed: Some(closed_rx),
            done: done_rx,
        })
    }

    pub(crate) async fn listener_closed(&mut self) {
        if let Some(rx) = self.listener_closed.take() {
            // An error means the thread ended (panicked): its socket is closed too.
            let _ = rx.await;
        }
    }

    pub(crate) async fn join(self) {
        let _ = self.done.await;
    }
}

/// Should [`Lb::run`](crate::Lb::run)'s future be dropped before it finishes, the workers
/// must not outlive it: they stop accepting and cut their connections. (On the normal
/// path both have already happened when the guard fires.)
pub(crate) struct RunGuard {
    pub(crate) stop_accepting: CancellationToken,
    pub(crate) shared: Arc<Shared>,
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        self.stop_accepting.cancel();
        self.shared.connections.close();
        self.shared.hard_stop.cancel();
        // The checkers are stopped by `Lb`'s own drop, which the dropped future runs too.
    }
}
