//! For async apps, on any runtime (feature `async`, on by default): a watcher's events as a
//! [`Stream`](futures_core::Stream), and the blocking calls as futures that run them on a
//! thread pool (the `blocking` crate's), so an async task never blocks on the folder.
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! use crdtdir::{Options, PatchOp, Store, WatchOptions};
//! let store = Store::init(dir.path().join("todo"),
//!                         Options::new().state_dir(dir.path().join("state")), None)?;
//! let events = store.watch_stream(WatchOptions::new())?; // a futures_core::Stream
//! let nonblocking = store.nonblocking();
//! futures_lite::future::block_on(async {
//!     nonblocking.apply_patch(vec![PatchOp::set("/title", "Groceries".into())]).await?;
//!     assert_eq!(nonblocking.read_json().await?.0, r#"{"title":"Groceries"}"#);
//!     Ok::<(), crdtdir::Error>(())
//! })?;
//! drop(events); // stops the watcher
//! # Ok::<(), crdtdir::Error>(())
//! ```

use std::pin::Pin;
use std::task::{Context, Poll};

use serde_json::Value as Json;

use crate::error::Result;
use crate::patch::PatchOp;
use crate::repo::{DocId, DocInfo, Repo};
use crate::store::{Status, Store, WriteOutcome};
use crate::watch::{DocEvent, WatchHandle, WatchOptions};
use crate::{PackOutcome, Repaired, View};

/// A watcher's events as a [`Stream`](futures_core::Stream) ([`Store::watch_stream`],
/// [`Repo::watch_stream`]). Dropping it stops the watcher.
pub struct WatchStream<E> {
    events: Pin<Box<async_channel::Receiver<E>>>,
    // Stops the watching thread when the stream goes.
    _handle: WatchHandle,
}

impl<E> std::fmt::Debug for WatchStream<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchStream").finish_non_exhaustive()
    }
}

impl<E> futures_core::Stream for WatchStream<E> {
    type Item = E;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<E>> {
        self.events.as_mut().poll_next(cx)
    }
}

impl<E: Clone + Send + 'static> WatchStream<E> {
    /// A stream whose events a watcher started by `start` (given where to put them) sends.
    pub(crate) fn start(
        start: impl FnOnce(Box<dyn FnMut(&E) -> bool + Send>) -> Result<WatchHandle>,
    ) -> Result<WatchStream<E>> {
        let (tx, rx) = async_channel::unbounded();
        // An unbounded channel never refuses a send while the stream is there.
        let handle = start(Box::new(move |e: &E| tx.try_send(e.clone()).is_ok()))?;
        Ok(WatchStream {
            events: Box::pin(rx),
            _handle: handle,
        })
    }
}

impl Repo {
    /// [`Repo::watch`] as a [`Stream`](futures_core::Stream) of [`DocEvent`]s, for any
    /// async runtime. Dropping the stream stops the watcher.
    pub fn watch_stream(&self, options: WatchOptions) -> Result<WatchStream<DocEvent>> {
        WatchStream::start(|on_event| self.watch_with(options, None, on_event))
    }

    /// [`Repo::create`], on the `blocking` crate's thread pool.
    pub async fn create_nonblocking(&self, initial: Option<Json>) -> Result<DocId> {
        let repo = self.clone();
        blocking::unblock(move || repo.create(initial.as_ref())).await
    }

    /// [`Repo::find`], on the `blocking` crate's thread pool.
    pub async fn find_nonblocking(&self, id: DocId) -> Result<Store> {
        let repo = self.clone();
        blocking::unblock(move || repo.find(&id)).await
    }

    /// [`Repo::docs`], on the `blocking` crate's thread pool.
    pub async fn docs_nonblocking(&self) -> Result<Vec<DocInfo>> {
        let repo = self.clone();
        blocking::unblock(move || repo.docs()).await
    }
}

/// A [`Store`]'s blocking calls as futures ([`Store::nonblocking`]): each runs the call on
/// the `blocking` crate's thread pool, so it works under any runtime (tokio, async-std,
/// smol) and never blocks the task that awaits it.
#[derive(Debug, Clone)]
pub struct NonBlocking {
    pub(crate) store: Store,
}

impl NonBlocking {
    /// [`Store::read`].
    pub async fn read(&self) -> Result<View> {
        let store = self.store.clone();
        blocking::unblock(move || store.read()).await
    }

    /// [`Store::read_json`].
    pub async fn read_json(&self) -> Result<(String, crate::MergeReport)> {
        let store = self.store.clone();
        blocking::unblock(move || store.read_json()).await
    }

    /// [`Store::apply_patch`].
    pub async fn apply_patch(&self, ops: Vec<PatchOp>) -> Result<WriteOutcome> {
        let store = self.store.clone();
        blocking::unblock(move || store.apply_patch(&ops)).await
    }

    /// [`Store::status`].
    pub async fn status(&self) -> Result<Status> {
        let store = self.store.clone();
        blocking::unblock(move || store.status()).await
    }

    /// [`Store::pack`].
    pub async fn pack(&self) -> Result<PackOutcome> {
        let store = self.store.clone();
        blocking::unblock(move || store.pack()).await
    }

    /// [`Store::repair`].
    pub async fn repair(&self) -> Result<Repaired> {
        let store = self.store.clone();
        blocking::unblock(move || store.repair()).await
    }

    /// [`Store::history`].
    pub async fn history(&self) -> Result<Vec<crate::ChangeInfo>> {
        let store = self.store.clone();
        blocking::unblock(move || store.history()).await
    }
}
