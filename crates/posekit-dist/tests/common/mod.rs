//! Starting the harness binary as the ranks of a group, with deadlines so that a test can
//! fail but never hang.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use tch::Tensor;

pub mod inputs;

pub fn harness() -> &'static str {
    env!("CARGO_BIN_EXE_posekit-dist-harness")
}

/// A rank being run: its process, and its stdout and stderr lines as they come.
pub struct Rank {
    pub rank: usize,
    pub child: Child,
    pub lines: Receiver<String>,
}

/// Starts `world` ranks of `harness MODE ARGS...` with the variables a plain launch sets.
pub fn launch(world: usize, port: u16, mode: &str, args: &[&str]) -> Vec<Rank> {
    (0..world)
        .map(|rank| launch_rank(rank, world, port, mode, args))
        .collect()
}

pub fn launch_rank(rank: usize, world: usize, port: u16, mode: &str, args: &[&str]) -> Rank {
    let mut command = Command::new(harness());
    command
        .arg(mode)
        .args(args)
        .env("RANK", rank.to_string())
        .env("WORLD_SIZE", world.to_string())
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string())
        .env_remove("TORCHELASTIC_USE_AGENT_STORE")
        .env_remove("POSEKIT_DIST_SPAWNED");
    start(rank, command)
}

/// Starts `command`, with its output collected line by line (stdout and stderr mixed).
pub fn start(rank: usize, mut command: Command) -> Rank {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the harness");
    let (tx, lines) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .for_each(|l| {
                let _ = tx.send(l);
            })
    });
    std::thread::spawn(move || {
        BufReader::new(err)
            .lines()
            .map_while(Result::ok)
            .for_each(|l| {
                let _ = tx2.send(l);
            })
    });
    Rank { rank, child, lines }
}

/// How a rank ended: exit code (None: killed) and everything it printed.
pub struct Ended {
    pub code: Option<i32>,
    pub output: String,
    pub after: Duration,
}

impl Rank {
    /// Waits for the rank to exit; kills it and panics past `deadline`.
    pub fn finish(mut self, deadline: Duration) -> Ended {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                let after = start.elapsed();
                // The reader threads end with the pipes; give them a moment to drain.
                std::thread::sleep(Duration::from_millis(100));
                let output: Vec<String> = self.lines.try_iter().collect();
                return Ended {
                    code: status.code(),
                    output: output.join("\n"),
                    after,
                };
            }
            if start.elapsed() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let output: Vec<String> = self.lines.try_iter().collect();
                panic!(
                    "rank {} did not exit within {deadline:?}; its output:\n{}",
                    self.rank,
                    output.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the rank prints a line containing `text` (panics past `deadline`).
    pub fn wait_for_line(&mut self, text: &str, deadline: Duration) {
        let start = Instant::now();
        let mut seen = Vec::new();
        while start.elapsed() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) if line.contains(text) => return,
                Ok(line) => seen.push(line),
                Err(_) => {
                    if let Ok(Some(status)) = self.child.try_wait() {
                        panic!(
                            "rank {} exited ({status}) before printing '{text}':\n{}",
                            self.rank,
                            seen.join("\n")
                        );
                    }
                }
            }
        }
        let _ = self.child.kill();
        panic!(
            "rank {} did not print '{text}' within {deadline:?}:\n{}",
            self.rank,
            seen.join("\n")
        );
    }
}

/// Runs all ranks to the end and asserts that each exited with status 0.
pub fn finish_ok(ranks: Vec<Rank>, deadline: Duration) {
    for rank in ranks {
        let r = rank.rank;
        let ended = rank.finish(deadline);
        assert_eq!(ended.code, Some(0), "rank {r} failed:\n{}", ended.output);
    }
}

pub fn read(dir: &Path, rank: usize) -> Vec<(String, Tensor)> {
    let mut named = Tensor::read_safetensors(dir.join(format!("rank{rank}.safetensors")))
        .expect("read the rank's output");
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named
}

pub fn out_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary directory")
}
