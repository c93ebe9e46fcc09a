//! Where this process stands in a group, from the variables torchrun (and `spawn_local`) set.
//!
//! torchrun's local elastic agent (torch/distributed/elastic/agent/server/
//! local_elastic_agent.py, `_start_workers`) gives each worker RANK, WORLD_SIZE, LOCAL_RANK,
//! LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT, plus TORCHELASTIC_* variables. With
//! TORCHELASTIC_USE_AGENT_STORE=True the agent itself hosts the TCPStore at
//! MASTER_ADDR:MASTER_PORT and every rank is a client (rendezvous.py `_create_c10d_store`);
//! otherwise rank 0 hosts it.

use crate::error::{DistError, Result};

/// The variables that make a process one rank of a group; all of them or none must be set.
pub const REQUIRED_VARS: [&str; 4] = ["RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"];

/// Who hosts the rendezvous store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreHost {
    /// Rank 0 hosts it (plain launches, `spawn_local`).
    Rank0,
    /// torchrun's agent hosts it; every rank connects as a client.
    Agent,
}

/// This process's place in a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistEnv {
    pub rank: usize,
    pub world_size: usize,
    /// Rank among the processes of this machine: the CUDA device to use.
    pub local_rank: usize,
    pub local_world_size: usize,
    pub master_addr: String,
    pub master_port: u16,
    pub store_host: StoreHost,
    /// torchrun's run id ("none" outside torchrun): keeps two jobs sharing a store apart.
    pub run_id: String,
    /// How many times torchrun restarted the group: each attempt gets fresh store keys.
    pub restart_count: u32,
}

impl DistEnv {
    /// Reads the process environment. `Ok(None)` when none of RANK, WORLD_SIZE, MASTER_ADDR,
    /// MASTER_PORT is set (a plain single-process run); an error when only some are, or when
    /// they contradict each other.
    pub fn from_env() -> Result<Option<DistEnv>> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// As `from_env`, reading variables through `lookup` (for tests, or a launcher that builds
    /// the environment itself).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<DistEnv>> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let present: Vec<&str> = REQUIRED_VARS
            .iter()
            .copied()
            .filter(|v| get(v).is_some())
            .collect();
        if present.is_empty() {
            return Ok(None);
        }
        if let Some(missing) = REQUIRED_VARS.iter().find(|v| get(v).is_none()) {
            return Err(env_error(
                missing,
                format!(
                    "not set, but {} {} set (set all of {} to run as one rank of a group, or none)",
                    present.join(", "),
                    if present.len() == 1 { "is" } else { "are" },
                    REQUIRED_VARS.join(", ")
                ),
            ));
        }
        let var = |name: &str| get(name).unwrap_or_default();

        let world_size = parse_count("WORLD_SIZE", &var("WORLD_SIZE"))?;
        if world_size == 0 {
            return Err(env_error("WORLD_SIZE", "must be at least 1".into()));
        }
        let rank = parse_count("RANK", &var("RANK"))?;
        if rank >= world_size {
            return Err(env_error(
                "RANK",
                format!("{rank} is not below WORLD_SIZE={world_size}"),
            ));
        }
        let master_addr = var("MASTER_ADDR").trim().to_string();
        let port = parse_count("MASTER_PORT", &var("MASTER_PORT"))?;
        let master_port = u16::try_from(port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| env_error("MASTER_PORT", format!("{port} is not a port (1-65535)")))?;

        let local_world_size = match get("LOCAL_WORLD_SIZE") {
            Some(v) => parse_count("LOCAL_WORLD_SIZE", &v)?,
            None => world_size,
        };
        if local_world_size == 0 || local_world_size > world_size {
            return Err(env_error(
                "LOCAL_WORLD_SIZE",
                format!("{local_world_size} must be between 1 and WORLD_SIZE={world_size}"),
            ));
        }
        let local_rank = match get("LOCAL_RANK") {
            Some(v) => parse_count("LOCAL_RANK", &v)?,
            None if local_world_size == world_size => rank,
            None => {
                return Err(env_error(
                    "LOCAL_RANK",
                    "not set, and ranks span several machines (LOCAL_WORLD_SIZE < WORLD_SIZE)"
                        .into(),
                ))
            }
        };
        if local_rank >= local_world_size {
            return Err(env_error(
                "LOCAL_RANK",
                format!("{local_rank} is not below LOCAL_WORLD_SIZE={local_world_size}"),
            ));
        }

        let store_host = match get("TORCHELASTIC_USE_AGENT_STORE").as_deref() {
            Some("True") => StoreHost::Agent,
            _ => StoreHost::Rank0,
        };
        let restart_count = match get("TORCHELASTIC_RESTART_COUNT") {
            Some(v) => {
                u32::try_from(parse_count("TORCHELASTIC_RESTART_COUNT", &v)?).map_err(|_| {
                    env_error("TORCHELASTIC_RESTART_COUNT", format!("{v} is too large"))
                })?
            }
            None => 0,
        };
        let run_id = get("TORCHELASTIC_RUN_ID").unwrap_or_else(|| "none".into());

        Ok(Some(DistEnv {
            rank,
            world_size,
            local_rank,
            local_world_size,
            master_addr,
            master_port,
            store_host,
            run_id,
            restart_count,
        }))
    }

    /// A group of one: what a plain run is, for code that wants a `DistEnv` either way.
    pub fn single(master_port: u16) -> DistEnv {
        DistEnv {
            rank: 0,
            world_size: 1,
            local_rank: 0,
            local_world_size: 1,
            master_addr: "127.0.0.1".into(),
            master_port,
            store_host: StoreHost::Rank0,
            run_id: "none".into(),
            restart_count: 0,
        }
    }

    /// Whether this rank hosts the rendezvous store.
    pub fn hosts_store(&self) -> bool {
        self.store_host == StoreHost::Rank0 && self.rank == 0
    }

    /// Whether this rank is the one that writes checkpoints, logs and progress (rank 0).
    pub fn is_writer(&self) -> bool {
        self.rank == 0
    }

    /// The store key prefix of this attempt of this run: a torchrun restart, or another job on
    /// the same agent store, never reads this attempt's keys.
    pub fn key_prefix(&self) -> String {
        format!("posekit/{}/{}/", self.run_id, self.restart_count)
    }
}

fn env_error(var: &str, problem: String) -> DistError {
    DistError::Env {
        var: var.to_string(),
        problem,
    }
}

fn parse_count(var: &str, value: &str) -> Result<usize> {
    value
        .trim()
        .parse::<usize>()
        .map_err(|_| env_error(var, format!("'{value}' is not a non-negative integer")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<Option<DistEnv>> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        DistEnv::from_lookup(|name| map.get(name).cloned())
    }

    const TORCHRUN_RANK1: [(&str, &str); 11] = [
        ("RANK", "1"),
        ("WORLD_SIZE", "2"),
        ("LOCAL_RANK", "1"),
        ("LOCAL_WORLD_SIZE", "2"),
        ("GROUP_RANK", "0"),
        ("MASTER_ADDR", "127.0.0.1"),
        ("MASTER_PORT", "29500"),
        ("TORCHELASTIC_USE_AGENT_STORE", "True"),
        ("TORCHELASTIC_RESTART_COUNT", "2"),
        ("TORCHELASTIC_RUN_ID", "abc"),
        ("TORCHELASTIC_MAX_RESTARTS", "3"),
    ];

    #[test]
    fn no_variables_is_a_single_process_run() {
        assert_eq!(env(&[]).unwrap(), None);
        assert_eq!(env(&[("RANK", "")]).unwrap(), None);
    }

    #[test]
    fn reads_what_torchrun_sets() {
        let e = env(&TORCHRUN_RANK1).unwrap().unwrap();
        assert_eq!(
            (e.rank, e.world_size, e.local_rank, e.local_world_size),
            (1, 2, 1, 2)
        );
        assert_eq!(
            (e.master_addr.as_str(), e.master_port),
            ("127.0.0.1", 29500)
        );
        assert_eq!(e.store_host, StoreHost::Agent);
        assert!(!e.hosts_store() && !e.is_writer());
        assert_eq!(e.key_prefix(), "posekit/abc/2/");
    }

    #[test]
    fn plain_launch_has_rank0_host_the_store() {
        let e = env(&[
            ("RANK", "0"),
            ("WORLD_SIZE", "3"),
            ("MASTER_ADDR", "node1"),
            ("MASTER_PORT", "1234"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(e.store_host, StoreHost::Rank0);
        assert!(e.hosts_store() && e.is_writer());
        assert_eq!((e.local_rank, e.local_world_size), (0, 3));
        assert_eq!(e.key_prefix(), "posekit/none/0/");
    }

    fn problem(pairs: &[(&str, &str)]) -> String {
        env(pairs).unwrap_err().to_string()
    }

    #[test]
    fn half_set_variables_name_the_missing_one() {
        let msg = problem(&[("RANK", "0"), ("WORLD_SIZE", "2")]);
        assert!(
            msg.contains("MASTER_ADDR: not set, but RANK, WORLD_SIZE are set"),
            "{msg}"
        );
        let msg = problem(&[("MASTER_PORT", "1")]);
        assert!(
            msg.contains("RANK: not set, but MASTER_PORT is set"),
            "{msg}"
        );
    }

    #[test]
    fn inconsistent_values_are_refused() {
        let base = [("MASTER_ADDR", "h"), ("MASTER_PORT", "1234")];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut all = base.to_vec();
            all.extend_from_slice(extra);
            problem(&all)
        };
        assert!(with(&[("RANK", "2"), ("WORLD_SIZE", "2")]).contains("RANK: 2 is not below"));
        assert!(with(&[("RANK", "0"), ("WORLD_SIZE", "0")]).contains("WORLD_SIZE: must be"));
        assert!(with(&[("RANK", "x"), ("WORLD_SIZE", "2")]).contains("RANK: 'x' is not"));
        assert!(with(&[("RANK", "-1"), ("WORLD_SIZE", "2")]).contains("'-1' is not"));
        assert!(with(&[
            ("RANK", "0"),
            ("WORLD_SIZE", "4"),
            ("LOCAL_WORLD_SIZE", "2")
        ])
        .contains("LOCAL_RANK: not set"));
        assert!(with(&[
            ("RANK", "0"),
            ("WORLD_SIZE", "4"),
            ("LOCAL_WORLD_SIZE", "2"),
            ("LOCAL_RANK", "2")
        ])
        .contains("LOCAL_RANK: 2 is not below LOCAL_WORLD_SIZE=2"));
        assert!(with(&[
            ("RANK", "0"),
            ("WORLD_SIZE", "2"),
            ("LOCAL_WORLD_SIZE", "3")
        ])
        .contains("LOCAL_WORLD_SIZE: 3 must be between 1 and WORLD_SIZE=2"));
        let port = problem(&[
            ("RANK", "0"),
            ("WORLD_SIZE", "1"),
            ("MASTER_ADDR", "h"),
            ("MASTER_PORT", "70000"),
        ]);
        assert!(port.contains("MASTER_PORT: 70000 is not a port"), "{port}");
    }
}
