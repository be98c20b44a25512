//! The one prelude of every operation that writes to the folder, validated once and then
//! passed along: the store is writable here, this device's name, the writer lock held for
//! the whole operation, and the writer record as it stands under that lock.

use crate::error::Result;
use crate::local::{WriterLock, WriterRecord};
use crate::store::Store;

/// How a session treats this device's display name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Name {
    /// Resolve it, making and keeping a default name if there is none.
    Resolve,
    /// Only check a name given: a default is made later, once there is something to write
    /// (a refused patch leaves the local state as it was).
    Check,
}

/// An operation's right to write to the folder; the writer lock goes when it is dropped.
pub(crate) struct Session {
    /// This device's display name (`None` with [`Name::Check`]).
    pub(crate) device: Option<String>,
    /// The writer record under the lock (`None` before this device's first write).
    pub(crate) record: Option<WriterRecord>,
    _lock: WriterLock,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("device", &self.device)
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens a session: refuses a store this device must not write to, resolves or checks
    /// the device name, takes the writer lock (waiting for another writer of this device),
    /// and reads the writer record.
    /// A document's first writer record on this device: the root document's actor, when it
    /// has no change to this document in the folder (a seq is per actor and document), so a
    /// device's changes to every document share its actor folders (a device that never
    /// wrote gets its root record first, as its first heartbeat would). `None` for the root
    /// document, and when the root's actor cannot be used: a fresh actor then.
    pub(crate) fn adopted_record(&self) -> Option<WriterRecord> {
        self.inner.doc.as_ref()?;
        let root = match self.inner.state.root_record() {
            Some(record) => record,
            None => {
                let record = crate::store::write::fresh_record(None);
                self.inner.state.for_doc(None).write_record(&record).ok()?;
                record
            }
        };
        (self.actor_max_seq(&root.actor) == 0).then(|| WriterRecord {
            actor: root.actor,
            seq: 0,
            hash: String::new(),
            retired: Vec::new(),
        })
    }

    pub(crate) fn session(&self, name: Name) -> Result<Session> {
        self.check_writable()?;
        let explicit = self.inner.device.as_deref();
        let device = match name {
            Name::Resolve => Some(self.inner.state.device_name(explicit)?),
            Name::Check => {
                self.inner.state.check_device_name(explicit)?;
                None
            }
        };
        let lock = self.inner.state.lock()?;
        let record = self
            .inner
            .state
            .read_record()
            .or_else(|| self.adopted_record());
        Ok(Session {
            device,
            record,
            _lock: lock,
        })
    }
}
