//! Process groups for real: the harness binary runs as 2 or 3 ranks (separate processes) on
//! loopback with Gloo, and these tests check what each rank ended with against what they
//! compute locally. No GPU. Each test takes a few seconds (most of it loading libtorch).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::inputs;
use posekit_dist::free_port;
use tch::{Kind, Tensor};

const DEADLINE: Duration = Duration::from_secs(120);

fn out_arg(dir: &tempfile::TempDir) -> String {
    dir.path().display().to_string()
}

fn assert_same(got: &Tensor, want: &Tensor, what: &str) {
    assert_eq!(got.size(), want.size(), "{what}: shape");
    assert_eq!(got.kind(), want.kind(), "{what}: dtype");
    assert!(got.equal(want), "{what}: values differ");
}

fn assert_close(got: &Tensor, want: &Tensor, what: &str) {
    assert_eq!(got.size(), want.size(), "{what}: shape");
    let diff = (got - want).abs().max().double_value(&[]);
    let scale = want.abs().max().double_value(&[]).max(1e-6);
    assert!(
        diff <= 1e-5 * scale,
        "{what}: max difference {diff:e} (scale {scale:e})"
    );
}

/// Checks what `allreduce` mode wrote: every rank holds the mean of all ranks' inputs.
fn check_allreduce_means(dir: &Path, world: usize, exact: bool) {
    let inputs: Vec<Vec<Tensor>> = (0..world).map(inputs::rank_tensors).collect();
    for rank in 0..world {
        let got = common::read(dir, rank);
        assert_eq!(got.len(), inputs::SHAPES.len());
        for (i, (name, tensor)) in got.iter().enumerate() {
            // Sum in the tensor's own dtype, then divide: what all_reduce(Mean) does.
            let sum = inputs[1..]
                .iter()
                .fold(inputs[0][i].copy(), |acc, t| acc + &t[i]);
            let mean = sum / world as f64;
            let what = format!("rank {rank} {name}");
            if exact {
                assert_same(tensor, &mean, &what);
            } else {
                assert_close(tensor, &mean, &what);
            }
        }
    }
}

#[test]
fn broadcast_gives_every_rank_the_roots_tensors() {
    let dir = common::out_dir();
    let ranks = common::launch(
        2,
        free_port().unwrap(),
        "broadcast",
        &["--out", &out_arg(&dir)],
    );
    common::finish_ok(ranks, DEADLINE);
    let want = inputs::rank_tensors_with_ints(0);
    assert!(want.iter().any(|t| t.kind() == Kind::Int64) && want.len() > 10);
    for rank in 0..2 {
        let got = common::read(dir.path(), rank);
        assert_eq!(got.len(), want.len());
        for ((name, g), w) in got.iter().zip(&want) {
            assert_same(g, w, &format!("rank {rank} {name}"));
        }
    }
}

#[test]
fn bucketed_all_reduce_mean_equals_the_local_mean() {
    // 11 tensors of f32 and f64 from 1 to 40,000 values in 64 KiB buckets: several buckets per
    // dtype, two tensors larger than a bucket. With two ranks the sum has one rounding, so
    // the result must match the local mean bit for bit.
    let dir = common::out_dir();
    let ranks = common::launch(
        2,
        free_port().unwrap(),
        "allreduce",
        &["--out", &out_arg(&dir)],
    );
    common::finish_ok(ranks, DEADLINE);
    check_allreduce_means(dir.path(), 2, true);
}

/// The differentiable all-reduce (SyncBatchNorm's building block): the forward sums the ranks'
/// tensors, the backward sums the ranks' incoming gradients (see the harness's `autograd`).
#[test]
fn autograd_all_reduce_sums_values_forward_and_gradients_backward() {
    let dir = common::out_dir();
    let ranks = common::launch(
        2,
        free_port().unwrap(),
        "autograd",
        &["--out", &out_arg(&dir)],
    );
    common::finish_ok(ranks, DEADLINE);
    let arange = Tensor::arange(6, (Kind::Float, tch::Device::Cpu));
    let sum = &arange * 2.0 + 10.0;
    let grad = (&arange * 1.0 - 1.0) + (&arange * 2.0 - 1.0);
    for rank in 0..2 {
        let got = common::read(dir.path(), rank);
        assert_same(&got[0].1, &sum, &format!("rank {rank} sum"));
        assert_same(&got[1].1, &grad, &format!("rank {rank} gradient"));
    }
}

#[test]
fn all_gather_collects_values_of_different_lengths_from_three_ranks() {
    let dir = common::out_dir();
    let ranks = common::launch(
        3,
        free_port().unwrap(),
        "gather",
        &["--out", &out_arg(&dir)],
    );
    common::finish_ok(ranks, DEADLINE);
    let want = "[[0.25], [10.25, 11.25], [20.25, 21.25, 22.25]]\n[[-1], [99], [199]]\n";
    for rank in 0..3 {
        let got = std::fs::read_to_string(dir.path().join(format!("rank{rank}.txt"))).unwrap();
        assert_eq!(got, want, "rank {rank}");
    }
}

#[test]
fn grad_averaging_equals_the_average_of_two_local_gradient_sets() {
    let dir = common::out_dir();
    let ranks = common::launch(2, free_port().unwrap(), "grads", &["--out", &out_arg(&dir)]);
    common::finish_ok(ranks, DEADLINE);

    // Locally: rank 0's initial weights, each rank's batch on its own, then the mean.
    let (vs, net) = inputs::tiny_net(0);
    let mut weights: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(n, v)| (n, v.copy()))
        .collect();
    weights.sort_by(|a, b| a.0.cmp(&b.0));
    let mut per_rank = Vec::new();
    for rank in 0..2 {
        inputs::backward(&vs, &net, &inputs::rank_batch(rank));
        let mut grads: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, v)| v.requires_grad())
            .map(|(n, v)| (n, v.grad().copy()))
            .collect();
        grads.sort_by(|a, b| a.0.cmp(&b.0));
        per_rank.push(grads);
    }

    for rank in 0..2 {
        let got = common::read(dir.path(), rank);
        let lookup = |key: &str| {
            got.iter()
                .find(|(n, _)| n == key)
                .map(|(_, t)| t.shallow_clone())
                .unwrap_or_else(|| panic!("rank {rank} wrote no {key}"))
        };
        // The broadcast replaced rank 1's own initial variables (seed 1) with rank 0's,
        // BatchNorm's running statistics included.
        for (name, w) in &weights {
            assert_same(
                &lookup(&format!("weight.{name}")),
                w,
                &format!("rank {rank} weight {name}"),
            );
        }
        for (i, (name, g0)) in per_rank[0].iter().enumerate() {
            let (_, g1) = &per_rank[1][i];
            let mean = (g0 + g1) / 2.0;
            assert_close(
                &lookup(&format!("grad.{name}")),
                &mean,
                &format!("rank {rank} grad {name}"),
            );
        }
    }
    // Rank 1 never used the auxiliary head: it counted as a zero gradient, so the average is
    // half of rank 0's.
    let aux = per_rank[0].iter().find(|(n, _)| n == "aux.weight").unwrap();
    let (_, aux1) = per_rank[1].iter().find(|(n, _)| n == "aux.weight").unwrap();
    assert_eq!(aux1.abs().sum(Kind::Float).double_value(&[]), 0.0);
    assert!(aux.1.abs().sum(Kind::Float).double_value(&[]) > 0.0);
}

#[test]
fn ranks_with_different_models_are_refused_by_name() {
    let ranks = common::launch(2, free_port().unwrap(), "mismatch", &[]);
    for rank in ranks {
        let r = rank.rank;
        let ended = rank.finish(DEADLINE);
        assert_eq!(ended.code, Some(1), "rank {r}:\n{}", ended.output);
        assert!(
            ended
                .output
                .contains("the ranks do not hold the same trainable variables")
                && ended.output.contains("rank 1 has 9 tensors"),
            "rank {r}:\n{}",
            ended.output
        );
    }
}

#[test]
fn spawn_local_runs_the_ranks_of_a_group() {
    let dir = common::out_dir();
    let mut command = Command::new(common::harness());
    command.args(["spawn", "2", "allreduce", "--out", &out_arg(&dir)]);
    for var in [
        "RANK",
        "WORLD_SIZE",
        "MASTER_ADDR",
        "MASTER_PORT",
        "POSEKIT_DIST_SPAWNED",
    ] {
        command.env_remove(var);
    }
    let ended = common::start(0, command).finish(DEADLINE);
    assert_eq!(ended.code, Some(0), "launcher:\n{}", ended.output);
    check_allreduce_means(dir.path(), 2, true);
}

/// Runs two ranks of the all-reduce loop, kills `victim` with SIGKILL mid-loop, and returns
/// how the survivor ended.
fn kill_mid_loop(victim: usize) -> common::Ended {
    // Collective timeout 20 s: the survivor must not need it (the closed connection shows at
    // once), but it bounds the test if it did.
    let args = ["--heartbeat-ms", "300", "--timeout-s", "20"];
    let mut ranks = common::launch(2, free_port().unwrap(), "loop", &args);
    for rank in ranks.iter_mut() {
        rank.wait_for_line("step 3", DEADLINE);
    }
    let survivor = ranks.remove(1 - victim);
    let mut killed = ranks.remove(0);
    killed.child.kill().expect("SIGKILL the victim");
    let _ = killed.child.wait();
    survivor.finish(Duration::from_secs(60))
}

#[test]
fn a_killed_rank_is_named_by_the_survivor_within_the_bound() {
    for victim in [1, 0] {
        let ended = kill_mid_loop(victim);
        assert_eq!(
            ended.code,
            Some(1),
            "survivor of rank {victim}:\n{}",
            ended.output
        );
        let named = if victim == 0 {
            "rank 0 is lost (it hosted the rendezvous store, which no longer answers)"
        } else {
            "rank 1 is lost (no heartbeat for 0.9 s"
        };
        assert!(
            ended.output.contains("all_reduce failed: ") && ended.output.contains(named),
            "survivor of rank {victim}:\n{}",
            ended.output
        );
        // Bounded well inside the 20 s collective timeout: the connection closes at once, and
        // the diagnosis waits three 0.3 s heartbeats.
        assert!(
            ended.after < Duration::from_secs(15),
            "took {:?}",
            ended.after
        );
    }
}

#[test]
fn an_unreachable_rendezvous_is_a_clear_error_within_its_timeout() {
    // Nobody listens on this port: rank 1 gives up after its 2 s rendezvous timeout.
    let port = free_port().unwrap();
    let started = Instant::now();
    let client = common::launch_rank(1, 2, port, "join", &["--rendezvous-s", "2"]);
    let ended = client.finish(Duration::from_secs(60));
    assert_eq!(ended.code, Some(1), "{}", ended.output);
    let want = format!("rank 1: error: rendezvous at 127.0.0.1:{port} (timeout 2 s): ");
    assert!(ended.output.contains(&want), "{}", ended.output);
    assert!(ended.output.contains("timed out"), "{}", ended.output);
    // One line: c10d's retry messages and C++ backtraces are not shown.
    assert_eq!(ended.output.trim().lines().count(), 1, "{}", ended.output);
    assert!(started.elapsed() < Duration::from_secs(30));

    // Rank 0 hosts the store, but rank 1 never comes.
    let host = common::launch_rank(0, 2, port, "join", &["--rendezvous-s", "2"]);
    let ended = host.finish(Duration::from_secs(60));
    assert_eq!(ended.code, Some(1), "{}", ended.output);
    assert!(
        ended.output.contains("1/2 clients joined"),
        "{}",
        ended.output
    );
    assert!(
        ended.output.contains("this rank (0) hosts the store"),
        "{}",
        ended.output
    );
}

/// The wheel's torchrun, from the repository's .venv (scripts/setup.sh installs it).
fn torchrun() -> Option<std::path::PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/torchrun");
    path.is_file().then_some(path)
}

#[test]
fn ranks_launched_by_torchrun_form_a_group() {
    let Some(torchrun) = torchrun() else {
        eprintln!("SKIPPED: .venv/bin/torchrun is missing (run scripts/setup.sh)");
        return;
    };
    let dir = common::out_dir();
    let port = free_port().unwrap().to_string();
    let mut command = Command::new(torchrun);
    command
        .args([
            "--no-python",
            "--nproc-per-node",
            "2",
            "--master-addr",
            "127.0.0.1",
        ])
        .args([
            "--master-port",
            &port,
            common::harness(),
            "allreduce",
            "--out",
            &out_arg(&dir),
        ])
        // Off the test's own settings: torchrun sets these for its workers.
        .env_remove("RANK")
        .env_remove("WORLD_SIZE")
        .env("OMP_NUM_THREADS", "1");
    let ended = common::start(0, command).finish(Duration::from_secs(240));
    assert_eq!(ended.code, Some(0), "torchrun:\n{}", ended.output);
    check_allreduce_means(dir.path(), 2, true);
}
