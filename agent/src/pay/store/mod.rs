//! Crash-safe monotonic register log with group commit.
//!
//! Keeps, per key, the entry with the highest `value` (equal value: later write wins). A payee
//! persists the highest voucher per channel before answering; a payer persists the highest total
//! it signed before sending a voucher. Both must not lose an acknowledged write across a crash.
//!
//! # Write path (group commit)
//! [`Store::submit`] enqueues; one writer thread drains up to `max_batch` entries, appends them
//! with one `write_all`, calls `sync_data` once, publishes them to the in-memory map and only then
//! runs the callbacks. Everything queued while an fsync runs lands in the next batch, so fsync
//! cost is shared. [`Store::get`] / [`Store::entries`] only ever show durable entries.
//!
//! # On-disk format (integers little-endian)
//! ```text
//! log-<gen>.bin = header record*
//! header        = "AWVSTOR1" gen:u64
//! record        = len:u32 crc:u32 body      len = body length, crc = CRC-32C(body)
//! body          = key_len:u16 key value:u128 payload_len:u32 payload
//! ```
//! # Recovery
//! The newest `log-<gen>.bin` is scanned; the first short, oversized or CRC-failing record and
//! everything after it is truncated away. Appends are sequential and a batch is acknowledged only
//! after its fsync, so after a crash only the unacknowledged tail can be torn (even with holes:
//! a torn batch may persist later pages before earlier ones). Caveat: media corruption in the
//! middle of the log is indistinguishable from a torn tail and truncates everything after it.
//!
//! # Compaction
//! When the log exceeds `max(compact_after_bytes, 2 * last snapshot size)`, the writer writes
//! the durable map to `log-<gen+1>.bin.tmp`, fsyncs it, renames it to `log-<gen+1>.bin`, fsyncs
//! the directory and deletes the old log. Every `log-*.bin` is therefore complete; at open the
//! highest generation wins, `.tmp` files are removed and older generations deleted.
//!
//! An I/O error while appending is fatal for the handle (the file state after a failed
//! write/fsync is unknown): the batch gets `Err(Io)`, later submits `Err(Closed)`; reopen recovers.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard};
use std::thread::{self, JoinHandle};

/// Maximum key length in bytes (keys must be non-empty).
pub const MAX_KEY: usize = 256;
/// Maximum payload length in bytes.
pub const MAX_PAYLOAD: usize = 4096;
const MAGIC: &[u8; 8] = b"AWVSTOR1";
const HEADER_LEN: usize = 16;
const MIN_BODY: usize = 2 + 1 + 16 + 4;
const MAX_BODY: usize = 2 + MAX_KEY + 16 + 4 + MAX_PAYLOAD;

/// One register value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: Vec<u8>,
    pub value: u128,
    pub payload: Vec<u8>,
}

/// How hard the writer pushes data to stable storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// `sync_data` per batch (and file + directory syncs around compaction). Use for money.
    Full,
    /// No fsync at all. Only for tests/benchmarks: acknowledged writes can be lost on power
    /// failure or OS crash. NOT SAFE FOR MONEY.
    None,
}

#[derive(Clone, Copy, Debug)]
pub struct StoreConfig {
    /// Maximum entries per write+fsync batch (0 is treated as 1).
    pub max_batch: usize,
    /// Compact once the log grows beyond this many bytes.
    pub compact_after_bytes: u64,
    pub sync: SyncMode,
    /// Bound on queued, not yet written entries; beyond it `submit` fails with `Busy`.
    pub max_pending: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig { max_batch: 1024, compact_after_bytes: 64 << 20, sync: SyncMode::Full, max_pending: 65_536 }
    }
}

#[derive(Debug)]
pub enum StoreError {
    Io(io::Error),
    /// Another handle/process holds the directory lock.
    Locked,
    Corrupt {
        offset: u64,
        reason: &'static str,
    },
    /// Key empty or longer than [`MAX_KEY`], or payload longer than [`MAX_PAYLOAD`].
    TooLarge,
    /// Write queue is full (back-pressure); retry later.
    Busy,
    Closed,
}

impl Clone for StoreError {
    fn clone(&self) -> Self {
        match self {
            StoreError::Io(e) => StoreError::Io(io::Error::new(e.kind(), e.to_string())),
            StoreError::Locked => StoreError::Locked,
            StoreError::Corrupt { offset, reason } => StoreError::Corrupt { offset: *offset, reason },
            StoreError::TooLarge => StoreError::TooLarge,
            StoreError::Busy => StoreError::Busy,
            StoreError::Closed => StoreError::Closed,
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io(e) => write!(f, "store i/o error: {e}"),
            StoreError::Locked => f.write_str("store directory is locked by another handle"),
            StoreError::Corrupt { offset, reason } => {
                write!(f, "store corrupt at {offset}: {reason}")
            }
            StoreError::TooLarge => f.write_str("key must be 1..=256 bytes, payload <= 4096 bytes"),
            StoreError::Busy => f.write_str("store write queue is full"),
            StoreError::Closed => f.write_str("store is closed"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for StoreError {
    fn from(e: io::Error) -> Self {
        StoreError::Io(e)
    }
}

/// Counters since open. `entries` counts submits handled by the writer (not fast-path acks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub batches: u64,
    pub entries: u64,
    pub bytes: u64,
    pub compactions: u64,
    /// Torn-tail bytes cut off during recovery at open.
    pub truncated_bytes: u64,
}

type Done = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

struct Queue {
    items: VecDeque<(Entry, Done)>,
    closed: bool,
}

struct Shared {
    config: StoreConfig,
    durable: RwLock<HashMap<Vec<u8>, Entry>>,
    queue: Mutex<Queue>,
    wake: Condvar,
    batches: AtomicU64,
    entries: AtomicU64,
    bytes: AtomicU64,
    compactions: AtomicU64,
    truncated: u64,
}

/// Last handle dropped => flush, stop the writer; the lock is released once both are gone.
struct Inner {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
    _lock: Arc<File>,
}

/// Cloneable, `Send + Sync` handle. Dropping the last clone (or `close`) flushes and stops.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

// Poisoning only means a panic elsewhere; every critical section leaves data consistent.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn durable(&self) -> RwLockReadGuard<'_, HashMap<Vec<u8>, Entry>> {
        self.durable.read().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Store {
    /// Opens (creating if needed) the store in `dir`, taking an exclusive advisory lock on
    /// `dir/LOCK` (released by the OS even if the process dies) and recovering the log.
    pub fn open(dir: &Path, config: StoreConfig) -> Result<Store, StoreError> {
        fs::create_dir_all(dir)?;
        let lock_file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(dir.join("LOCK"))?;
        match lock_file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(StoreError::Locked),
            Err(TryLockError::Error(e)) => return Err(StoreError::Io(e)),
        }
        // Who holds it, for whoever finds it locked (`lock_holder`): the
        // lock is ours, so nobody else writes the file.
        let holder = format!("pid {}: {}\n", std::process::id(), std::env::args().collect::<Vec<_>>().join(" "));
        lock_file.set_len(0)?;
        (&lock_file).write_all(holder.as_bytes())?;
        let lock_file = Arc::new(lock_file);
        let (log, map, truncated) = recover(dir, &config, Arc::clone(&lock_file))?;
        let shared = Arc::new(Shared {
            config,
            durable: RwLock::new(map),
            queue: Mutex::new(Queue { items: VecDeque::new(), closed: false }),
            wake: Condvar::new(),
            batches: AtomicU64::new(0),
            entries: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            compactions: AtomicU64::new(0),
            truncated,
        });
        let writer_shared = Arc::clone(&shared);
        let handle =
            thread::Builder::new().name("vstore-writer".into()).spawn(move || run_writer(writer_shared, log))?;
        let inner = Inner { shared, writer: Mutex::new(Some(handle)), _lock: lock_file };
        Ok(Store { inner: Arc::new(inner) })
    }

    /// Who holds the lock of the store in `dir` (its process id and command
    /// line, as that process wrote them), if anyone says so.
    pub fn lock_holder(dir: &Path) -> Option<String> {
        let text = fs::read_to_string(dir.join("LOCK")).ok()?;
        let line = text.lines().next()?.trim();
        (!line.is_empty()).then(|| line.chars().take(512).collect())
    }

    /// Highest durable entry for `key`.
    pub fn get(&self, key: &[u8]) -> Option<Entry> {
        let map = self.inner.shared.durable();
        map.get(key).cloned()
    }

    /// All durable entries, sorted by key.
    pub fn entries(&self) -> Vec<Entry> {
        let map = self.inner.shared.durable();
        let mut all: Vec<Entry> = map.values().cloned().collect();
        all.sort_by(|a, b| a.key.cmp(&b.key));
        all
    }

    /// Enqueues `entry`; `done` runs on the writer thread after the batch holding it is durable
    /// (or right away on this thread if a higher value, or this exact entry, is already durable,
    /// or on error). `done` must not block on this store (e.g. call `put`): it would deadlock.
    pub fn submit(&self, entry: Entry, done: Done) {
        if entry.key.is_empty() || entry.key.len() > MAX_KEY || entry.payload.len() > MAX_PAYLOAD {
            return done(Err(StoreError::TooLarge));
        }
        let shared = &self.inner.shared;
        let covered = {
            let map = shared.durable();
            map.get(&entry.key)
                .is_some_and(|d| d.value > entry.value || (d.value == entry.value && d.payload == entry.payload))
        };
        if covered {
            return done(Ok(()));
        }
        let mut q = lock(&shared.queue);
        if q.closed {
            drop(q);
            return done(Err(StoreError::Closed));
        }
        if q.items.len() >= shared.config.max_pending {
            drop(q);
            return done(Err(StoreError::Busy));
        }
        q.items.push_back((entry, done));
        drop(q);
        shared.wake.notify_one();
    }

    /// Blocking `submit`: returns once the entry (or a higher one) is durable.
    pub fn put(&self, entry: Entry) -> Result<(), StoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(
            entry,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        rx.recv().unwrap_or(Err(StoreError::Closed))
    }

    pub fn stats(&self) -> StoreStats {
        let s = &self.inner.shared;
        StoreStats {
            batches: s.batches.load(Ordering::Relaxed),
            entries: s.entries.load(Ordering::Relaxed),
            bytes: s.bytes.load(Ordering::Relaxed),
            compactions: s.compactions.load(Ordering::Relaxed),
            truncated_bytes: s.truncated,
        }
    }

    /// Flushes pending writes and stops the writer; other clones then get `Closed`.
    /// The directory lock is released when the last clone is dropped.
    pub fn close(self) {
        self.inner.shutdown();
    }
}

impl Inner {
    fn shutdown(&self) {
        lock(&self.shared.queue).closed = true;
        self.shared.wake.notify_all();
        let handle = lock(&self.writer).take();
        if let Some(h) = handle {
            // Last handle dropped inside a `done` callback: joining ourselves would deadlock;
            // the writer still drains the queue and keeps its own reference to the lock.
            if h.thread().id() != thread::current().id() {
                let _ = h.join();
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Runs a user callback; a panicking callback must not kill the writer.
fn finish(done: Done, r: Result<(), StoreError>) {
    let _ = catch_unwind(AssertUnwindSafe(move || done(r)));
}

/// On writer exit (normal, fatal error or panic): refuse new work and fail what is queued.
struct FailPending(Arc<Shared>);

impl Drop for FailPending {
    fn drop(&mut self) {
        let items: Vec<_> = {
            let mut q = lock(&self.0.queue);
            q.closed = true;
            q.items.drain(..).collect()
        };
        for (_, done) in items {
            finish(done, Err(StoreError::Closed));
        }
    }
}

fn run_writer(shared: Arc<Shared>, mut log: Log) {
    let _guard = FailPending(Arc::clone(&shared));
    loop {
        let batch: Vec<(Entry, Done)> = {
            let mut q = lock(&shared.queue);
            while q.items.is_empty() && !q.closed {
                q = shared.wake.wait(q).unwrap_or_else(PoisonError::into_inner);
            }
            if q.items.is_empty() {
                return; // closed and fully flushed
            }
            let n = q.items.len().min(shared.config.max_batch.max(1));
            q.items.drain(..n).collect()
        };
        let (entries, dones): (Vec<Entry>, Vec<Done>) = batch.into_iter().unzip();
        let result = log.commit(&shared, entries);
        for done in dones {
            finish(done, result.clone());
        }
        if result.is_err() || log.maybe_compact(&shared).is_err() {
            return;
        }
    }
}

/// The open log file; owned by the writer thread after `open`.
mod log;
#[cfg(test)]
mod tests;

use log::{recover, Log};

/// Fuzz entry point: recovery's parser on arbitrary file bytes, as a whole
/// file and after a valid header. Checks that the valid prefix re-encodes
/// to the same bytes and that each key keeps its highest value.
#[doc(hidden)]
pub fn fuzz_log(data: &[u8]) {
    let _ = log::scan(data, 0);
    let mut file = log::header(7);
    file.extend_from_slice(data);
    let Ok((map, end)) = log::scan(&file, 7) else { panic!("a valid header was refused") };
    assert!((HEADER_LEN..=file.len()).contains(&end));
    let mut again = log::header(7);
    let mut pos = HEADER_LEN;
    while pos < end {
        let Some((e, used)) = log::decode_record(&file[pos..end]) else { panic!("the valid prefix does not decode") };
        assert!(map.get(&e.key).is_some_and(|kept| kept.value >= e.value), "a key lost its highest value");
        log::encode_record(&mut again, &e);
        pos += used;
    }
    assert_eq!(again, file[..end], "records are not canonical");
}

impl Store {
    /// Submits `entry` and waits, without blocking the async runtime, until
    /// it is durable (or already superseded by a durable higher value).
    pub async fn persist(&self, entry: Entry) -> Result<(), StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(
            entry,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        rx.await.unwrap_or(Err(StoreError::Closed))
    }
}
