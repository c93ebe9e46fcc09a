//! Test harness for posekit-dist: run as the ranks of a group by the crate's tests (started by
//! hand, by `spawn_local` or by torchrun). Each mode does one thing and writes what it got
//! under `--out` for the test to check; errors go to stderr as "rank R: error: ..." with exit
//! status 1. Not an end-user program.
//!
//! posekit-dist-harness MODE [--out DIR] [--timeout-s S] [--rendezvous-s S] [--heartbeat-ms MS]
//! posekit-dist-harness spawn N MODE \[options]     (the same, as N local ranks)
//!
//! Modes: broadcast, allreduce, grads, mismatch, gather, loop (all-reduce until killed), join.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use posekit_dist::{
    broadcast_var_store, spawn_local, DistEnv, GlooDevice, GradAverager, GroupOptions,
    ProcessGroup, ReduceOp, SpawnOptions,
};
use tch::{Device, Kind, Tensor};

#[path = "../../tests/common/inputs.rs"]
mod inputs;

struct Args {
    mode: String,
    out: Option<PathBuf>,
    options: GroupOptions,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mode = args.first().ok_or("missing MODE")?.clone();
    let mut options = GroupOptions {
        bucket_bytes: inputs::TEST_BUCKET_BYTES,
        gloo_device: GlooDevice::Hostname("127.0.0.1".into()),
        ..GroupOptions::default()
    };
    let mut out = None;
    let mut rest = args[1..].iter();
    while let Some(flag) = rest.next() {
        let mut value = || rest.next().cloned().ok_or(format!("{flag} needs a value"));
        let seconds = |v: String| {
            v.parse::<f64>()
                .map(Duration::from_secs_f64)
                .map_err(|e| e.to_string())
        };
        match flag.as_str() {
            "--out" => out = Some(PathBuf::from(value()?)),
            "--timeout-s" => options.collective_timeout = seconds(value()?)?,
            "--rendezvous-s" => options.rendezvous_timeout = seconds(value()?)?,
            "--heartbeat-ms" => {
                options.heartbeat_interval =
                    Duration::from_millis(value()?.parse().map_err(|e| format!("{e}"))?)
            }
            "--default-device" => options.gloo_device = GlooDevice::FromEnv,
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(Args { mode, out, options })
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some("spawn") {
        let n: usize = argv.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
        let rest = argv.iter().skip(2).map(Into::into).collect();
        let result = SpawnOptions::current_exe(rest).and_then(|o| spawn_local(n, &o));
        if let Err(e) = result {
            eprintln!("launcher: error: {e}");
            std::process::exit(1);
        }
        return;
    }
    let rank = std::env::var("RANK").unwrap_or_else(|_| "?".into());
    if let Err(e) = run(&argv) {
        eprintln!("rank {rank}: error: {e}");
        std::process::exit(1);
    }
}

fn run(argv: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let args = parse(argv)?;
    let env = DistEnv::from_env()?.ok_or("not started as a rank (RANK etc. unset)")?;
    let group = ProcessGroup::init(&env, &args.options)?;
    let rank = group.rank();
    let save = |tensors: &[Tensor]| -> Result<(), Box<dyn std::error::Error>> {
        let dir = args.out.as_ref().ok_or("--out is required")?;
        let named: Vec<(String, &Tensor)> = tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("t{i:02}"), t))
            .collect();
        Tensor::write_safetensors(&named, dir.join(format!("rank{rank}.safetensors")))?;
        Ok(())
    };
    match args.mode.as_str() {
        "join" => {}
        "broadcast" => {
            let tensors = inputs::rank_tensors_with_ints(rank);
            group.broadcast(&tensors, 0)?;
            save(&tensors)?;
        }
        "allreduce" => {
            let tensors = inputs::rank_tensors(rank);
            group.all_reduce(&tensors, ReduceOp::Mean)?;
            save(&tensors)?;
        }
        "grads" => {
            // Rank r starts from its own seed; the broadcast must give it rank 0's weights.
            let (vs, net) = inputs::tiny_net(rank as i64);
            broadcast_var_store(&group, &vs, 0)?;
            // Every variable as broadcast (the forward below changes BatchNorm's buffers).
            let mut out: Vec<(String, Tensor)> = vs
                .variables()
                .into_iter()
                .map(|(n, v)| (format!("weight.{n}"), v.copy()))
                .collect();
            let averager = GradAverager::new(&group, &vs)?;
            inputs::backward(&vs, &net, &inputs::rank_batch(rank));
            averager.average(&group)?;
            for (name, v) in vs.variables() {
                if v.requires_grad() {
                    out.push((format!("grad.{name}"), v.grad()));
                }
            }
            let dir = args.out.as_ref().ok_or("--out is required")?;
            Tensor::write_safetensors(&out, dir.join(format!("rank{rank}.safetensors")))?;
        }
        "autograd" => {
            // y = sum over ranks of x; loss_r = sum(y * w_r); so every rank's dL/dx must be
            // the sum over ranks of w_r (the backward all-reduces the gradient).
            let x = (Tensor::arange(6, (Kind::Float, Device::Cpu)) + rank as f64 * 10.0)
                .set_requires_grad(true);
            let y = group.all_reduce_sum_autograd(&x)?;
            let w = Tensor::arange(6, (Kind::Float, Device::Cpu)) * (rank as f64 + 1.0) - 1.0;
            (&y * &w).sum(Kind::Float).f_backward()?;
            save(&[y.detach(), x.grad()])?;
        }
        "mismatch" => {
            // Rank 1's model has one parameter more: GradAverager must refuse on every rank.
            let (vs, _net) = inputs::tiny_net(0);
            if rank == 1 {
                let _ = vs.root().zeros("extra", &[3]);
            }
            GradAverager::new(&group, &vs)?;
        }
        "gather" => {
            let mine: Vec<f64> = (0..=rank)
                .map(|i| rank as f64 * 10.0 + i as f64 + 0.25)
                .collect();
            let all = group.all_gather_f64(&mine)?;
            let counts = group.all_gather_i64(&[rank as i64 * 100 - 1])?;
            let dir = args.out.as_ref().ok_or("--out is required")?;
            std::fs::write(
                dir.join(format!("rank{rank}.txt")),
                format!("{all:?}\n{counts:?}\n"),
            )?;
        }
        "loop" => {
            let tensor = Tensor::ones([1 << 18], (Kind::Float, Device::Cpu));
            for step in 0.. {
                group.all_reduce(std::slice::from_ref(&tensor), ReduceOp::Mean)?;
                println!("rank {rank} step {step}");
                std::io::stdout().flush()?;
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        other => return Err(format!("unknown mode {other}").into()),
    }
    group.barrier()?;
    group.shutdown();
    Ok(())
}
