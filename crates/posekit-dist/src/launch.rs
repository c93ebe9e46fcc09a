//! `spawn_local`: run N ranks on this machine without torchrun (`posekit train --nproc N`).
//!
//! Like torchrun's local agent (torch/distributed/elastic/agent/server/local_elastic_agent.py
//! and multiprocessing/api.py): start N copies of a program with RANK, WORLD_SIZE,
//! LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT set, pass SIGINT/SIGTERM/SIGHUP
//! on to them, and when one fails stop the others and say which one failed. Unlike torchrun,
//! rank 0 hosts the store (no agent store) and nothing is restarted: a failed run is resumed
//! from its last checkpoint by running the command again with `--resume`.

use std::ffi::OsString;
use std::net::TcpListener;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use crate::error::{DistError, Result};

/// Set in the environment of every process `spawn_local` starts, so that a program that
/// re-parses its own command line does not spawn again.
pub const SPAWNED_VAR: &str = "POSEKIT_DIST_SPAWNED";

/// What to start, and how.
#[derive(Debug, Clone)]
pub struct SpawnOptions {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub master_addr: String,
    /// The store's port; `None` picks a free one.
    pub master_port: Option<u16>,
    /// How long ranks get to exit after SIGTERM before they are killed.
    pub grace: Duration,
}

impl SpawnOptions {
    /// Runs this same executable with `args` (the command line minus `--nproc`).
    pub fn current_exe(args: Vec<OsString>) -> Result<SpawnOptions> {
        let program = std::env::current_exe()
            .map_err(|e| DistError::Invalid(format!("cannot find this program's path: {e}")))?;
        Ok(SpawnOptions {
            program,
            args,
            master_addr: "127.0.0.1".into(),
            master_port: None,
            grace: Duration::from_secs(10),
        })
    }
}

/// A port that is free now on 127.0.0.1 (the OS's pick for port 0).
pub fn free_port() -> Result<u16> {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| DistError::Invalid(format!("cannot find a free port: {e}")))
}

/// The signal the launcher received last (0: none).
static RECEIVED: AtomicI32 = AtomicI32::new(0);

extern "C" fn remember_signal(signal: libc::c_int) {
    RECEIVED.store(signal, Ordering::SeqCst);
}

const FORWARDED: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Catches the forwarded signals while alive; puts the previous handlers back when dropped.
struct SignalGuard {
    previous: Vec<(libc::c_int, libc::sigaction)>,
}

impl SignalGuard {
    fn install() -> SignalGuard {
        RECEIVED.store(0, Ordering::SeqCst);
        let mut previous = Vec::new();
        for signal in FORWARDED {
            // SAFETY: plain sigaction calls with zero-initialised structs; the handler only
            // stores into an atomic, which is async-signal-safe.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = remember_signal as extern "C" fn(libc::c_int) as usize;
                libc::sigemptyset(&mut action.sa_mask);
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(signal, &action, &mut old) == 0 {
                    previous.push((signal, old));
                }
            }
        }
        SignalGuard { previous }
    }
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        for (signal, old) in &self.previous {
            // SAFETY: restores the handler saved by `install`.
            unsafe { libc::sigaction(*signal, old, std::ptr::null_mut()) };
        }
    }
}

fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        _ => return format!("signal {signal}"),
    };
    format!("{name} ({signal})")
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by {}", signal_name(signal)),
        _ => format!("ended with {status}"),
    }
}

fn send(child: &Child, signal: libc::c_int) {
    // SAFETY: kill(2) on our own child's pid (not yet reaped, so the pid is still ours).
    unsafe { libc::kill(child.id() as libc::pid_t, signal) };
}

/// Starts `nproc` ranks of `options.program` on this machine and waits for all of them.
/// `Ok` when every rank exits with status 0. When one fails, the others get SIGTERM (then
/// SIGKILL after `grace`) and the error names the first rank that failed. SIGINT, SIGTERM and
/// SIGHUP sent to the launcher are passed on to every rank. Ranks die with the launcher
/// (PR_SET_PDEATHSIG) if it is killed outright.
pub fn spawn_local(nproc: usize, options: &SpawnOptions) -> Result<()> {
    if nproc == 0 {
        return Err(DistError::Invalid("--nproc must be at least 1".into()));
    }
    if std::env::var_os(SPAWNED_VAR).is_some() {
        return Err(DistError::Invalid(format!(
            "this process is already a rank started by a launcher ({SPAWNED_VAR} is set); \
             --nproc must not be passed on to the ranks"
        )));
    }
    let port = match options.master_port {
        Some(port) => port,
        None => free_port()?,
    };
    let guard = SignalGuard::install();
    let mut children: Vec<Option<Child>> = Vec::with_capacity(nproc);
    for rank in 0..nproc {
        let mut command = Command::new(&options.program);
        command
            .args(&options.args)
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", nproc.to_string())
            .env("LOCAL_WORLD_SIZE", nproc.to_string())
            .env("GROUP_RANK", "0")
            .env("MASTER_ADDR", &options.master_addr)
            .env("MASTER_PORT", port.to_string())
            .env(SPAWNED_VAR, "1")
            .env_remove("TORCHELASTIC_USE_AGENT_STORE")
            .stdin(Stdio::null());
        // SAFETY: the closure only calls prctl(2), which is async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        match command.spawn() {
            Ok(child) => children.push(Some(child)),
            Err(e) => {
                for child in children.iter_mut().flatten() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                return Err(DistError::Spawn {
                    rank,
                    program: options.program.display().to_string(),
                    detail: e.to_string(),
                });
            }
        }
    }

    let mut failure: Option<(usize, ExitStatus)> = None;
    let mut interrupted: Option<i32> = None;
    let mut kill_at: Option<Instant> = None;
    while children.iter().any(Option::is_some) {
        let signal = RECEIVED.swap(0, Ordering::SeqCst);
        if signal != 0 {
            interrupted = Some(signal);
            children.iter().flatten().for_each(|c| send(c, signal));
            kill_at.get_or_insert(Instant::now() + options.grace);
        }
        for rank in 0..nproc {
            let Some(child) = children[rank].as_mut() else {
                continue;
            };
            let status = match child.try_wait() {
                Ok(Some(status)) => status,
                Ok(None) => continue,
                // Cannot watch it any more: treat it as failed.
                Err(_) => ExitStatus::from_raw(1 << 8),
            };
            children[rank] = None;
            if !status.success() && failure.is_none() && interrupted.is_none() {
                failure = Some((rank, status));
                children
                    .iter()
                    .flatten()
                    .for_each(|c| send(c, libc::SIGTERM));
                kill_at.get_or_insert(Instant::now() + options.grace);
            }
        }
        if kill_at.is_some_and(|t| Instant::now() >= t) {
            for child in children.iter_mut().flatten() {
                let _ = child.kill();
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(guard);

    if let Some(signal) = interrupted {
        return Err(DistError::Interrupted {
            signal: signal_name(signal),
        });
    }
    if let Some((rank, status)) = failure {
        return Err(DistError::RankFailed {
            rank,
            status: describe(status),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_as_sentences() {
        assert_eq!(
            describe(ExitStatus::from_raw(3 << 8)),
            "exited with status 3"
        );
        assert_eq!(
            describe(ExitStatus::from_raw(9)),
            "was killed by SIGKILL (9)"
        );
    }

    fn sh(script: &str) -> SpawnOptions {
        SpawnOptions {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            master_addr: "127.0.0.1".into(),
            master_port: Some(1),
            grace: Duration::from_secs(5),
        }
    }

    #[test]
    fn every_rank_gets_its_variables() {
        let script = r#"test "$WORLD_SIZE" = 3 && test "$LOCAL_RANK" = "$RANK" &&
            test "$MASTER_PORT" = 1 && test "$POSEKIT_DIST_SPAWNED" = 1"#;
        spawn_local(3, &sh(script)).unwrap();
    }

    #[test]
    fn a_failing_rank_is_named_and_the_others_are_stopped() {
        let started = Instant::now();
        // Rank 1 fails at once; ranks 0 and 2 would sleep for a minute.
        let script = r#"if [ "$RANK" = 1 ]; then exit 3; fi; exec sleep 60"#;
        let err = spawn_local(3, &sh(script)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "rank 1 exited with status 3; stopped the other ranks"
        );
        assert!(started.elapsed() < Duration::from_secs(30));
    }

    #[test]
    fn a_missing_program_is_a_clear_error() {
        let mut options = sh("true");
        options.program = "/nonexistent/posekit".into();
        let err = spawn_local(2, &options).unwrap_err().to_string();
        assert!(
            err.starts_with("starting rank 0 (/nonexistent/posekit): "),
            "{err}"
        );
    }
}
