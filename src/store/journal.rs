//! The journal of what happened to the document in memory while watchers run (each watcher
//! turns it into its events); shared by a store and its clones.

use automerge::ChangeHash;

use crate::patch::json::JsonPatch;

/// What happened to the document in memory while watchers run: each merge or write that
/// extended it, from which heads to which, with its patches when Automerge logged them. A
/// watcher chains the entries from the heads of its last event to the current ones; where
/// the chain breaks (a merge from scratch, a fork), it asks Automerge for a diff instead.
#[derive(Debug, Default)]
pub(crate) struct Journal {
    /// Watchers running (any kind): the journal records only while there are some.
    watchers: usize,
    entries: std::collections::VecDeque<Entry>,
}

#[derive(Debug)]
struct Entry {
    before: Vec<ChangeHash>,
    after: Vec<ChangeHash>,
    patches: Option<Vec<JsonPatch>>,
}

/// Entries kept at most; a watcher that falls further behind asks for a diff.
const JOURNAL_LEN: usize = 4096;

impl Journal {
    /// A watcher starts: the journal records from now on.
    pub(crate) fn watcher_started(&mut self) {
        self.watchers += 1;
    }

    /// A watcher stops: with the last one, the journal stops recording and forgets.
    pub(crate) fn watcher_stopped(&mut self) {
        self.watchers = self.watchers.saturating_sub(1);
        if self.watchers == 0 {
            self.entries.clear();
        }
    }

    /// True while a watcher runs: merges and writes then log their patches.
    pub(crate) fn recording(&self) -> bool {
        self.watchers > 0
    }

    /// Records that the document went from `before` to `after`, with these patches (`None`:
    /// not known).
    pub(crate) fn push(
        &mut self,
        before: Vec<ChangeHash>,
        after: Vec<ChangeHash>,
        patches: Option<Vec<JsonPatch>>,
    ) {
        if !self.recording() || before == after {
            return;
        }
        if self.entries.len() == JOURNAL_LEN {
            self.entries.pop_front();
        }
        self.entries.push_back(Entry {
            before: sorted(before),
            after: sorted(after),
            patches,
        });
    }

    /// The patches from `from` to `to`, when the entries chain them.
    pub(crate) fn chain(&self, from: &[ChangeHash], to: &[ChangeHash]) -> Option<Vec<JsonPatch>> {
        let (mut at, to) = (sorted(from.to_vec()), sorted(to.to_vec()));
        let mut out = Vec::new();
        let mut steps = 0;
        while at != to {
            let e = self.entries.iter().rev().find(|e| e.before == at)?;
            out.extend(e.patches.iter().flatten().cloned());
            e.patches.as_ref()?;
            at.clone_from(&e.after);
            steps += 1;
            if steps > JOURNAL_LEN {
                return None;
            }
        }
        Some(out)
    }
}

fn sorted(mut heads: Vec<ChangeHash>) -> Vec<ChangeHash> {
    heads.sort_unstable();
    heads
}
