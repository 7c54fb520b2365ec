//! How SQLite connections run their blocking work: on tokio's blocking pool, counting the jobs
//! still running on each connection, so keel never asks a busy connection anything.
//!
//! diesel-async's SQLite wrapper runs every operation on a blocking thread that holds the
//! connection. If the operation's future is dropped, the thread runs on; asking the wrapper for
//! its transaction state meanwhile panics ("Cannot access shared transaction state",
//! diesel_async#281), and its own spawner blocks the dropping thread until the job ends (and
//! panics on a current-thread runtime). [`KeelBlocking`] replaces that spawner: dropping the
//! future detaches the job, the connection's [`Busy`] count says it is still running, and the
//! checkout's drop guard waits for [`Busy::idle`] on a task before the connection is looked at
//! or handed out again.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;

/// Blocking jobs running on one SQLite connection.
#[derive(Debug, Default)]
pub struct Busy {
    running: AtomicUsize,
    idle: tokio::sync::Notify,
}

impl Busy {
    /// True while a job started on the connection has not finished.
    pub fn is_busy(&self) -> bool {
        self.running.load(Ordering::Acquire) != 0
    }

    /// Waits until no job runs on the connection.
    pub async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            if !self.is_busy() {
                return;
            }
            notified.await;
        }
    }

    fn finished(&self) {
        if self.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }
}

thread_local! {
    /// Hands the [`Busy`] of the connection being built to [`KeelBlocking::get_runtime`], which
    /// diesel-async calls from `SyncConnectionWrapper::new` with no arguments.
    static NEXT: RefCell<Option<Arc<Busy>>> = const { RefCell::new(None) };
}

/// Builds a SQLite wrapper whose blocking jobs are counted by the returned [`Busy`].
pub(crate) fn wrap(conn: diesel::SqliteConnection) -> (crate::conn::SqliteConnection, Arc<Busy>) {
    let busy = Arc::new(Busy::default());
    NEXT.with(|next| *next.borrow_mut() = Some(Arc::clone(&busy)));
    let wrapped = crate::conn::SqliteConnection::new(conn);
    NEXT.with(|next| next.borrow_mut().take());
    (wrapped, busy)
}

/// diesel-async's `SpawnBlocking` for keel's SQLite connections (see the module docs).
pub struct KeelBlocking {
    handle: Option<tokio::runtime::Handle>,
    busy: Arc<Busy>,
}

impl diesel_async::sync_connection_wrapper::SpawnBlocking for KeelBlocking {
    fn spawn_blocking<'a, R>(
        &mut self,
        task: impl FnOnce() -> R + Send + 'static,
    ) -> BoxFuture<'a, Result<R, Box<dyn std::error::Error + Send + Sync + 'static>>>
    where
        R: Send + 'static,
    {
        let handle = match self.handle.clone().or_else(|| tokio::runtime::Handle::try_current().ok()) {
            Some(h) => h,
            None => return std::future::ready(Err("SQLite work needs a tokio runtime".into())).boxed(),
        };
        self.busy.running.fetch_add(1, Ordering::AcqRel);
        let busy = Arc::clone(&self.busy);
        // `task` owns the wrapper's handle on the connection and drops it when it returns, so
        // once the count is back to zero nothing but the wrapper holds the connection.
        // The count drops even if the job panics.
        struct Finished(Arc<Busy>);
        impl Drop for Finished {
            fn drop(&mut self) {
                self.0.finished();
            }
        }
        let job = handle.spawn_blocking(move || {
            let _finished = Finished(busy);
            task()
        });
        job.map(|r| r.map_err(Box::from)).boxed()
    }

    fn get_runtime() -> Self {
        let busy = NEXT.with(|next| next.borrow_mut().take()).unwrap_or_default();
        KeelBlocking { handle: tokio::runtime::Handle::try_current().ok(), busy }
    }
}
