//! Telling which rank is gone when a collective fails.
//!
//! Gloo only knows that a connection closed ("Connection closed by peer [addr]:port") or that
//! an operation timed out; on loopback every peer has the same address, and the address of a
//! connection is not the rank. So each rank keeps a counter in the store ticking from a thread
//! of its own (its heartbeat), and writes a note under its rank when it leaves the group on its
//! own. A rank whose collective failed reads every counter, waits a few heartbeats, and reads
//! them again: a rank that left a note left (with its reason); a rank whose counter stood still
//! is lost (killed, crashed, or hung as a whole process). When the store itself no longer
//! answers and rank 0 hosted it, rank 0 is the one lost.

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::{Loss, LostRank};
use crate::store::Store;

/// How many heartbeat intervals a live rank gets to show a tick before it is called lost.
const SILENCE_INTERVALS: u32 = 3;

pub(crate) fn heartbeat_key(prefix: &str, rank: usize) -> String {
    format!("{prefix}heartbeat/{rank}")
}

pub(crate) fn exit_key(prefix: &str, rank: usize) -> String {
    format!("{prefix}exit/{rank}")
}

/// The ticking thread of this rank; stops when dropped.
pub(crate) struct Heartbeat {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Heartbeat {
    /// Starts ticking `prefix/heartbeat/<rank>` every `interval` on its own store connection.
    /// A tick that fails (the store host is gone) ends the thread quietly: the failure that
    /// matters is reported by the collective that notices it.
    pub fn start(store: Store, prefix: &str, rank: usize, interval: Duration) -> Heartbeat {
        let key = heartbeat_key(prefix, rank);
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("posekit-dist-heartbeat-{rank}"))
            .spawn(move || loop {
                if store.add(&key, 1).is_err() {
                    return;
                }
                match stopped.recv_timeout(interval) {
                    Err(RecvTimeoutError::Timeout) => continue,
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
            })
            .ok();
        Heartbeat {
            stop: Some(stop),
            thread,
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What the store says about the other ranks after this one saw a collective fail.
pub(crate) struct Diagnosis {
    pub lost: Vec<LostRank>,
    /// Set when the store could not be read (then `lost` holds rank 0 if it hosted it).
    pub store_error: Option<String>,
}

/// Finds the ranks that are gone. Takes about `SILENCE_INTERVALS` heartbeat intervals.
/// `store_host_rank` is the rank whose process hosts the store (None: torchrun's agent).
pub(crate) fn diagnose(
    store: &Store,
    prefix: &str,
    me: usize,
    world_size: usize,
    interval: Duration,
    store_host_rank: Option<usize>,
) -> Diagnosis {
    let others: Vec<usize> = (0..world_size).filter(|r| *r != me).collect();
    let store_lost = |error: String| Diagnosis {
        lost: store_host_rank
            .filter(|host| *host != me)
            .map(|rank| {
                vec![LostRank {
                    rank,
                    loss: Loss::StoreHost,
                }]
            })
            .unwrap_or_default(),
        store_error: Some(error),
    };
    let read_ticks = || -> Result<Vec<i64>, String> {
        // `add(key, 0)` reads a counter without waiting for it to exist.
        others
            .iter()
            .map(|r| store.add(&heartbeat_key(prefix, *r), 0))
            .collect()
    };
    let before = match read_ticks() {
        Ok(ticks) => ticks,
        Err(e) => return store_lost(e),
    };
    let wait = interval * SILENCE_INTERVALS;
    std::thread::sleep(wait);
    let after = match read_ticks() {
        Ok(ticks) => ticks,
        Err(e) => return store_lost(e),
    };
    let mut lost = Vec::new();
    for (i, rank) in others.iter().enumerate() {
        let note = match store.try_get(&exit_key(prefix, *rank)) {
            Ok(note) => note,
            Err(e) => return store_lost(e),
        };
        if let Some(note) = note {
            let reason = String::from_utf8_lossy(&note).into_owned();
            lost.push(LostRank {
                rank: *rank,
                loss: Loss::Left { reason },
            });
        } else if after[i] == before[i] {
            lost.push(LostRank {
                rank: *rank,
                loss: Loss::NoHeartbeat { silent_for: wait },
            });
        }
    }
    Diagnosis {
        lost,
        store_error: None,
    }
}
