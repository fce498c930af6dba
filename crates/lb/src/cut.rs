//! Running a long-lived future until a [`CancellationToken`] fires, without touching the
//! token on every wake-up.
//!
//! `tokio::select!` polls every branch whenever the task wakes: for a proxied connection
//! that is every read and every write, and polling a token's `cancelled()` future takes
//! two locks (the token's tree node, then its `Notify`'s waiter list). The tokens here are
//! shared — a backend's drain token by every connection to that backend, the stop token by
//! every worker's accept loop — so each wake-up wrote cache lines that the other workers'
//! wake-ups write too. [`unless_cut`] instead polls the token's future with a waker of its
//! own, which notes that *it* fired before waking the task: a wake-up from the sockets
//! leaves the token alone.
//!
//! It does not decide when to cut (drain timeouts are `lib.rs`'s and `reload.rs`'s).

use futures_util::task::AtomicWaker;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

/// The waker the token's future is polled with.
struct CutWaker {
    /// The token's future asked to be polled again (set at first, to register it).
    fired: AtomicBool,
    /// The task running [`unless_cut`].
    task: AtomicWaker,
}

impl Wake for CutWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Release);
        self.task.wake();
    }
}

pin_project_lite::pin_project! {
    /// The future of [`unless_cut`]. A struct rather than an `async fn`: an `async fn`
    /// that pins its argument keeps both copies in its state, and this future is held by
    /// every open connection (608 bytes around a 224-byte future; this one is 304).
    pub(crate) struct UnlessCut<'a, F> {
        #[pin]
        work: F,
        #[pin]
        cancelled: WaitForCancellationFuture<'a>,
        flag: Arc<CutWaker>,
    }
}

/// `work`'s output, or `None` if `cut` fired first (`work` is then dropped with the
/// future).
pub(crate) fn unless_cut<F: Future>(work: F, cut: &CancellationToken) -> UnlessCut<'_, F> {
    UnlessCut {
        work,
        cancelled: cut.cancelled(),
        flag: Arc::new(CutWaker {
            fired: AtomicBool::new(true),
            task: AtomicWaker::new(),
        }),
    }
}

impl<F: Future> Future for UnlessCut<'_, F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // Uncontended: this connection's own state.
        this.flag.task.register(cx.waker());
        if this.flag.fired.swap(false, Ordering::AcqRel) {
            let waker = Waker::from(this.flag.clone());
            if this
                .cancelled
                .poll(&mut Context::from_waker(&waker))
                .is_ready()
            {
                return Poll::Ready(None);
            }
        }
        this.work.poll(cx).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn the_work_ends_first() {
        let cut = CancellationToken::new();
        let r = unless_cut(
            async {
                tokio::time::sleep(Duration::from_millis(10)).await;
                7
            },
            &cut,
        )
        .await;
        assert_eq!(r, Some(7));
    }

    #[tokio::test]
    async fn a_cut_while_the_work_waits_ends_it() {
        let cut = CancellationToken::new();
        let c = cut.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            c.cancel();
        });
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            unless_cut(std::future::pending::<()>(), &cut),
        )
        .await
        .expect("the cut did not end the work");
        assert_eq!(r, None);
    }

    #[tokio::test]
    async fn a_token_cut_before_the_start_ends_it_at_once() {
        let cut = CancellationToken::new();
        cut.cancel();
        assert_eq!(unless_cut(std::future::ready(1), &cut).await, None);
    }

    /// The work keeps being woken (a busy connection) while the cut comes: it must still
    /// end, the cut's wake-up is not lost among the others.
    #[tokio::test]
    async fn a_cut_among_many_wake_ups_ends_it() {
        let cut = CancellationToken::new();
        let c = cut.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            c.cancel();
        });
        let busy = async {
            loop {
                tokio::task::yield_now().await;
            }
        };
        let r = tokio::time::timeout(Duration::from_secs(5), unless_cut(busy, &cut))
            .await
            .expect("the cut was lost among the work's wake-ups");
        assert_eq!(r, None::<()>);
    }
}
#[cfg(test)]
mod size {
    /// Every open connection holds this future around its forwarding: it must add the
    /// token's future and a pointer, not a second copy of the work.
    #[test]
    fn it_adds_the_tokens_future_and_a_pointer_to_the_work() {
        let t = super::CancellationToken::new();
        let work = async {
            let x = [0u8; 200];
            tokio::task::yield_now().await;
            x.len()
        };
        let (w, c) = (
            std::mem::size_of_val(&work),
            std::mem::size_of_val(&t.cancelled()),
        );
        let f = super::unless_cut(work, &t);
        let size = std::mem::size_of_val(&f);
        eprintln!("unless_cut: {size} bytes around {w} + {c}");
        assert!(size <= w + c + 8, "{size} bytes around {w} + {c}");
    }
}
