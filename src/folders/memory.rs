//! A synced folder in memory, for tests: it behaves like an object store, and can be as
//! slow to list what changed as some object stores are ([`Lag`]).

use std::collections::BTreeMap;
use std::io;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{check_path, Created, Entry, Folder};

/// How late a [`Memory`] folder's listings are: a file created shows in listings only after
/// up to `listings` more listings, and a file removed stays in them as long (reading it then
/// finds nothing). Each file's lag is drawn from a seeded generator, so a test that fails
/// fails again with the same seed. Reads are never late (read-after-write).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lag {
    /// At most this many listings late (0: listings are exact).
    pub listings: u32,
    /// The generator's seed.
    pub seed: u64,
}

/// A folder in memory. Clones share the same files (one folder seen by several devices).
/// Like an object store, it has no empty folders: a folder exists while a file is in it.
#[derive(Debug, Clone, Default)]
pub struct Memory {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    /// What reads see: path → (bytes, version).
    files: BTreeMap<String, (Arc<[u8]>, u64)>,
    /// Files created that listings do not show yet: path → listings left.
    unlisted: BTreeMap<String, u32>,
    /// Files removed that listings still show: path → (length, version, listings left).
    ghosts: BTreeMap<String, (u64, u64, u32)>,
    lag: Lag,
    rng: u64,
    versions: u64,
}

impl State {
    /// A lag for one file: 0 to `lag.listings` (xorshift64*).
    fn draw(&mut self) -> u32 {
        if self.lag.listings == 0 {
            return 0;
        }
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32 % (self.lag.listings + 1)
    }

    fn version(&mut self) -> u64 {
        self.versions += 1;
        self.versions
    }

    /// One listing passes: every lag is one shorter.
    fn tick(&mut self) {
        self.unlisted.retain(|_, left| {
            *left = left.saturating_sub(1);
            *left > 0
        });
        self.ghosts.retain(|_, (_, _, left)| {
            *left = left.saturating_sub(1);
            *left > 0
        });
    }

    fn put(&mut self, path: &str, bytes: &[u8]) {
        let version = self.version();
        let new = !self.files.contains_key(path);
        self.files
            .insert(path.to_string(), (Arc::from(bytes), version));
        self.ghosts.remove(path);
        if new {
            let lag = self.draw();
            if lag > 0 {
                self.unlisted.insert(path.to_string(), lag);
            }
        }
    }
}

impl Memory {
    /// An empty folder whose listings are exact.
    pub fn new() -> Memory {
        Memory::default()
    }

    /// An empty folder whose listings are late by up to `lag`.
    pub fn lagging(lag: Lag) -> Memory {
        let memory = Memory::default();
        {
            let mut state = memory.state();
            state.lag = lag;
            state.rng = lag.seed | 1;
        }
        memory
    }

    /// Every lag ends now: listings show exactly what is there.
    pub fn settle(&self) {
        let mut state = self.state();
        state.unlisted.clear();
        state.ghosts.clear();
    }

    /// The paths of every file, sorted (what reads see, not what listings say).
    pub fn paths(&self) -> Vec<String> {
        self.state().files.keys().cloned().collect()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn not_found(path: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{path}: no such file"))
}

impl Folder for Memory {
    fn describe(&self) -> String {
        "memory".to_string()
    }

    fn list(&self, dir: &str) -> io::Result<Vec<Entry>> {
        if !dir.is_empty() {
            check_path(dir)?;
        }
        let mut state = self.state();
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let mut out: BTreeMap<String, Entry> = BTreeMap::new();
        let listed = state
            .files
            .range(prefix.clone()..)
            .take_while(|(p, _)| p.starts_with(&prefix))
            .filter(|(p, _)| !state.unlisted.contains_key(*p))
            .map(|(p, (bytes, v))| (p.clone(), bytes.len() as u64, *v))
            .chain(
                state
                    .ghosts
                    .range(prefix.clone()..)
                    .take_while(|(p, _)| p.starts_with(&prefix))
                    .map(|(p, (len, v, _))| (p.clone(), *len, *v)),
            )
            .collect::<Vec<_>>();
        for (path, len, version) in listed {
            let rest = &path[prefix.len()..];
            let entry = match rest.split_once('/') {
                Some((sub, _)) => Entry::dir(sub),
                None => Entry::file(rest, Some(len), Some(version.to_string())),
            };
            out.entry(entry.name.clone()).or_insert(entry);
        }
        state.tick();
        if out.is_empty() {
            return Err(not_found(dir));
        }
        Ok(out.into_values().collect())
    }

    fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        check_path(path)?;
        let state = self.state();
        let (bytes, _) = state.files.get(path).ok_or_else(|| not_found(path))?;
        Ok(bytes.to_vec())
    }

    fn read_range(&self, path: &str, range: Range<u64>) -> io::Result<Vec<u8>> {
        check_path(path)?;
        let state = self.state();
        let (bytes, _) = state.files.get(path).ok_or_else(|| not_found(path))?;
        let len = bytes.len() as u64;
        let (start, end) = (
            range.start.min(len),
            range.end.min(len).max(range.start.min(len)),
        );
        Ok(bytes[start as usize..end as usize].to_vec())
    }

    fn stat(&self, path: &str) -> io::Result<Option<Entry>> {
        check_path(path)?;
        let state = self.state();
        let name = path.rsplit('/').next().unwrap_or(path).to_string();
        if let Some((bytes, version)) = state.files.get(path) {
            return Ok(Some(Entry::file(
                name,
                Some(bytes.len() as u64),
                Some(version.to_string()),
            )));
        }
        let prefix = format!("{path}/");
        let is_dir = state
            .files
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(p, _)| p.starts_with(&prefix));
        Ok(is_dir.then(|| Entry::dir(name)))
    }

    fn create(&self, path: &str, bytes: &[u8], _owner: &str) -> io::Result<Created> {
        check_path(path)?;
        let mut state = self.state();
        if state.files.contains_key(path) {
            return Ok(Created::Existed);
        }
        state.put(path, bytes);
        Ok(Created::New)
    }

    fn replace(&self, path: &str, bytes: &[u8], _owner: &str) -> io::Result<()> {
        check_path(path)?;
        self.state().put(path, bytes);
        Ok(())
    }

    fn remove(&self, path: &str) -> io::Result<()> {
        check_path(path)?;
        let mut state = self.state();
        if let Some((bytes, version)) = state.files.remove(path) {
            let was_listed = state.unlisted.remove(path).is_none();
            let lag = state.draw();
            if was_listed && lag > 0 {
                state
                    .ghosts
                    .insert(path.to_string(), (bytes.len() as u64, version, lag));
            }
        }
        Ok(())
    }
}
