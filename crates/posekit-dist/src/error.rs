//! posekit-dist's errors: each says which rank, address or variable is at fault, in one line.

use std::fmt;
use std::time::Duration;

/// Why a rank is considered gone, as the survivors' diagnosis found it (see `heartbeat`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loss {
    /// Its heartbeat in the store stopped: the process died (kill -9, crash, OOM killer) or
    /// hangs as a whole.
    NoHeartbeat { silent_for: Duration },
    /// It left the group on its own and said why (its error, or that it finished).
    Left { reason: String },
    /// It hosted the rendezvous store, which no longer answers.
    StoreHost,
}

/// A rank that the other ranks lost, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostRank {
    pub rank: usize,
    pub loss: Loss,
}

impl fmt::Display for LostRank {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.loss {
            Loss::NoHeartbeat { silent_for } => write!(
                f,
                "rank {} is lost (no heartbeat for {:.1} s: its process died or hangs)",
                self.rank,
                silent_for.as_secs_f64()
            ),
            Loss::Left { reason } => write!(f, "rank {} left the group: {reason}", self.rank),
            Loss::StoreHost => write!(
                f,
                "rank {} is lost (it hosted the rendezvous store, which no longer answers)",
                self.rank
            ),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DistError {
    /// A torchrun-style variable is missing, malformed or inconsistent with the others.
    #[error("environment variable {var}: {problem}")]
    Env { var: String, problem: String },

    /// The rendezvous store could not be reached, hosted or completed in time.
    #[error("rendezvous at {addr}:{port} (timeout {:.0} s): {detail}", timeout.as_secs_f64())]
    Rendezvous {
        addr: String,
        port: u16,
        timeout: Duration,
        detail: String,
    },

    /// The process group could not be created.
    #[error("creating the {backend} process group of rank {rank}: {detail}")]
    GroupInit {
        backend: &'static str,
        rank: usize,
        detail: String,
    },

    /// A collective failed because one or more ranks are gone.
    #[error("{op} failed: {}; {detail}", join(lost))]
    PeerLost {
        op: String,
        lost: Vec<LostRank>,
        detail: String,
    },

    /// A collective failed and every other rank still answers (a rank may be stuck, or the
    /// ranks called different collectives).
    #[error("{op} failed: {detail}")]
    Collective { op: String, detail: String },

    /// The caller asked for something the group cannot do (mismatched tensors, ...).
    #[error("{0}")]
    Invalid(String),

    /// `spawn_local`: a rank exited with an error, and the others were stopped.
    #[error("rank {rank} {status}; stopped the other ranks")]
    RankFailed { rank: usize, status: String },

    /// `spawn_local`: the launcher was told to stop, and passed the signal on to every rank.
    #[error("interrupted by {signal}; passed it on to every rank")]
    Interrupted { signal: String },

    /// `spawn_local`: a rank could not be started.
    #[error("starting rank {rank} ({program}): {detail}")]
    Spawn {
        rank: usize,
        program: String,
        detail: String,
    },
}

fn join(lost: &[LostRank]) -> String {
    lost.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl DistError {
    /// The ranks this error names as lost (empty for other errors).
    pub fn lost_ranks(&self) -> Vec<usize> {
        match self {
            DistError::PeerLost { lost, .. } => lost.iter().map(|l| l.rank).collect(),
            DistError::RankFailed { rank, .. } => vec![*rank],
            _ => Vec::new(),
        }
    }
}

pub type Result<T, E = DistError> = std::result::Result<T, E>;
