//! How a started scheduler learns every secret's due state with the fewest requests: one LIST
//! (paged) per folder of state records, then one read of each record the LIST showed, at most
//! [`SchedulerOptions::max_concurrent`] at a time. A secret whose record a complete LIST did
//! not show has never been rotated: it is due now, and its first attempt claims the record
//! without reading it first ([`KnownState::Absent`]; the claim is a check-and-set create, so a
//! record another replica wrote since the LIST makes it stand back).
//!
//! Nothing here decides a rotation. What the LIST and the reads say only chooses *when* each
//! secret's task first asks its rotator; the rotator decides under check-and-set as always.
//! So a wrong or hostile LIST reply costs requests, never a double rotation: a key it omits
//! makes the claim fail (the record exists), a key it invents costs a read of a missing
//! record (due, as it is).

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

use super::{Entry, SchedulerOptions};
use crate::rotator::KnownState;
use crate::state::{Listing, Snapshot, StateStore, MAX_LISTED_KEY};

/// At most this many keys of one folder are looked at, beyond ten for each secret scheduled in
/// it; a folder with more (records of other schedulers) is read record by record instead.
const LIST_KEY_BASE: usize = 10_000;

/// What the start learnt about one secret.
pub(super) enum Start {
    /// Absent from a complete LIST: never rotated, due now.
    Absent {
        /// Vault's clock at the LIST.
        listed_at: Option<SystemTime>,
    },
    /// Its record, read at start.
    Loaded {
        snapshot: Box<Snapshot<Value>>,
        /// When it was read (to age Vault's clock of the read).
        at: Instant,
    },
    /// Nothing (no state store, a LIST refused or incomplete, a read that failed): the first
    /// run reads the record itself, as every run does.
    Unknown,
}

impl Start {
    /// What the first attempt may tell the rotator.
    pub(super) fn known(&self) -> KnownState {
        match self {
            Start::Absent { listed_at } => KnownState::Absent {
                listed_at: *listed_at,
            },
            _ => KnownState::Unknown,
        }
    }

    /// `true` when the start learnt the secret's due state.
    pub(super) fn is_known(&self) -> bool {
        !matches!(self, Start::Unknown)
    }

    /// The record as the first step should see it: a loaded one with Vault's clock moved on by
    /// the time since the read, an absent one as a load would have returned it.
    pub(super) fn snapshot(self, key: &str) -> Option<Snapshot<Value>> {
        match self {
            Start::Loaded { mut snapshot, at } => {
                let aged = |t| crate::state::vault_time::later(t, at.elapsed());
                snapshot.vault_now = snapshot.vault_now.map(aged);
                Some(*snapshot)
            }
            Start::Absent { listed_at } => Some(Snapshot::absent(key, listed_at)),
            Start::Unknown => None,
        }
    }
}

/// The counts of a start, for [`SchedulerProgress`](super::SchedulerProgress).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct StartCounts {
    pub(super) list_requests: u64,
    pub(super) reads: u64,
    pub(super) absent: u64,
}

/// Where the tasks of a starting scheduler wait for what the start learnt.
pub(super) struct Board {
    starts: Mutex<Vec<Option<Start>>>,
    done: watch::Receiver<bool>,
}

impl Board {
    /// A board for `n` secrets and the sender that says the start is done (dropping it
    /// unanswered, e.g. on a panic, lets every task go on as if nothing was learnt).
    pub(super) fn new(n: usize) -> (Arc<Board>, watch::Sender<bool>) {
        let (tx, rx) = watch::channel(false);
        let board = Board {
            starts: Mutex::new((0..n).map(|_| None).collect()),
            done: rx,
        };
        (Arc::new(board), tx)
    }

    /// Waits until the start is done (or shutdown), then takes secret `i`'s [`Start`].
    pub(super) async fn take(&self, i: usize, shutdown: &mut watch::Receiver<bool>) -> Start {
        let mut done = self.done.clone();
        tokio::select! {
            _ = done.wait_for(|d| *d) => {}
            _ = shutdown.wait_for(|s| *s) => {}
        }
        self.starts
            .lock()
            .ok()
            .and_then(|mut s| s.get_mut(i).and_then(Option::take))
            .unwrap_or(Start::Unknown)
    }

    fn put(&self, i: usize, start: Start) {
        if let Ok(mut s) = self.starts.lock() {
            if let Some(slot) = s.get_mut(i) {
                *slot = Some(start);
            }
        }
    }
}

/// One folder of state records: where to LIST and which secrets live there.
struct Folder {
    store: StateStore,
    folder: String,
    /// (entry index, key of its record, leaf name in the folder)
    members: Vec<(usize, String, String)>,
}

/// `key` as (folder, leaf) when a LIST of the folder would show it as `leaf`: non-empty
/// segments that are not `.` or `..`, a leaf of at most [`MAX_LISTED_KEY`] bytes. Other keys
/// are read, never inferred.
fn split_key(key: &str) -> Option<(&str, &str)> {
    let key = key.trim_matches('/');
    if key
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return None;
    }
    let (folder, leaf) = key.rsplit_once('/').unwrap_or(("", key));
    (leaf.len() <= MAX_LISTED_KEY).then_some((folder, leaf))
}

/// Learns what it can about every entry and puts it on `board`; returns the counts.
pub(super) async fn survey(
    entries: &[Arc<Entry>],
    board: &Arc<Board>,
    options: &SchedulerOptions,
    mut shutdown: watch::Receiver<bool>,
) -> StartCounts {
    tokio::select! {
        counts = learn(entries, board, options) => counts,
        _ = shutdown.wait_for(|s| *s) => StartCounts::default(),
    }
}

async fn learn(
    entries: &[Arc<Entry>],
    board: &Arc<Board>,
    options: &SchedulerOptions,
) -> StartCounts {
    let mut counts = StartCounts::default();
    if !options.start_list {
        return counts;
    }
    // Group by rotator (its client), store and folder.
    let mut folders: BTreeMap<(usize, String, String, String), Folder> = BTreeMap::new();
    for (i, entry) in entries.iter().enumerate() {
        let Some((store, key)) = &entry.store else {
            continue;
        };
        let Some((folder, leaf)) = split_key(key) else {
            continue;
        };
        let rotator = Arc::as_ptr(&entry.rotator) as *const () as usize;
        let id = (
            rotator,
            store.mount().to_string(),
            store.prefix().to_string(),
            folder.to_string(),
        );
        folders
            .entry(id)
            .or_insert_with(|| Folder {
                store: store.clone(),
                folder: folder.to_string(),
                members: Vec::new(),
            })
            .members
            .push((i, key.trim_matches('/').to_string(), leaf.to_string()));
    }
    let limit = options.max_concurrent.max(1);
    // 1. One LIST (paged) per folder.
    let listings: Vec<(Folder, Option<Listing>)> =
        futures_util::stream::iter(folders.into_values())
            .map(|f| async move {
                let wanted: HashSet<&str> = f.members.iter().map(|m| m.2.as_str()).collect();
                let max_keys = LIST_KEY_BASE.saturating_add(f.members.len().saturating_mul(10));
                // One page for all the keys looked at (see `list_folder` on OpenBao's cost).
                let listed = f
                    .store
                    .list_folder(&f.folder, &|k| wanted.contains(k), max_keys, max_keys)
                    .await;
                let listing = match listed {
                    Ok(l) => Some(l),
                    Err(e) => {
                        tracing::info!(
                            mount = f.store.mount(),
                            folder = %f.store.path(&f.folder),
                            error = %e,
                            "cannot LIST the rotation state records (is `list` granted on them?); reading each record instead"
                        );
                        None
                    }
                };
                (f, listing)
            })
            .buffer_unordered(limit)
            .collect()
            .await;
    // 2. Read what the LISTs showed, at most `max_concurrent` at a time.
    let mut reads = Vec::new();
    for (folder, listing) in listings {
        let Some(listing) = listing else { continue };
        counts.list_requests += u64::from(listing.pages);
        for (i, key, leaf) in folder.members {
            if listing.keys.contains(&leaf) {
                reads.push((i, folder.store.clone(), key));
            } else if listing.complete {
                counts.absent += 1;
                board.put(
                    i,
                    Start::Absent {
                        listed_at: listing.vault_now,
                    },
                );
            }
        }
    }
    counts.reads = reads.len() as u64;
    // Each worker its own task, so the reads (and the decoding of their replies) spread over
    // the runtime's threads; dropping the set (shutdown) aborts them.
    let reads = Arc::new(reads);
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = JoinSet::new();
    for _ in 0..limit.min(reads.len()) {
        let (reads, next, board) = (reads.clone(), next.clone(), board.clone());
        workers.spawn(
            async move {
                while let Some((i, store, key)) = reads.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let start = match store.load::<Value>(key).await {
                        Ok(snapshot) => Start::Loaded {
                            snapshot: Box::new(snapshot),
                            at: Instant::now(),
                        },
                        // The first run reads it again and reports what is wrong.
                        Err(_) => Start::Unknown,
                    };
                    board.put(*i, start);
                }
            }
            .in_current_span(),
        );
    }
    while workers.join_next().await.is_some() {}
    counts
}

/// When a loaded, idle record of a periodic secret is next due, if that is later than Vault's
/// clock of the read (else `None`: due, pending or unreadable, the rotator decides).
pub(super) fn not_due_until(snapshot: &Snapshot<Value>, every: Duration) -> Option<SystemTime> {
    if !snapshot.is_idle() || snapshot.is_due(every) {
        return None;
    }
    snapshot.due_at(every).map(crate::api_key::ceil_second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_into_folder_and_leaf_or_are_read() {
        assert_eq!(split_key("stripe"), Some(("", "stripe")));
        assert_eq!(split_key("/api-keys/stripe/"), Some(("api-keys", "stripe")));
        assert_eq!(split_key("a/b/c"), Some(("a/b", "c")));
        for bad in ["a//b", "a/../b", "./a", "a/.", ""] {
            assert_eq!(split_key(bad), None, "{bad:?}");
        }
        let long = "x".repeat(MAX_LISTED_KEY + 1);
        assert_eq!(split_key(&long), None);
    }
}
