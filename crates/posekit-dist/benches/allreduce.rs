//! Gradient all-reduce throughput on loopback: HRNet-W32's real parameter list (28,536,113
//! floats in 1,000-odd tensors), averaged by `GradAverager` across CPU ranks with Gloo.
//!
//!     cargo bench -p posekit-dist --bench allreduce -- [--nproc 2] [--model hrnet-w32] [--iters 10]
//!
//! Without RANK in its environment the bench is its own launcher (`spawn_local`); each rank
//! builds the model, and rank 0 prints the timings: the whole `average` call (copy into the
//! persistent bucket buffers, Gloo all-reduce, divide, copy back) in DDP's 25 MiB buckets and as one flat buffer, and the
//! bus bandwidth (algorithm bandwidth x 2(N-1)/N, the bytes a ring moves per rank).

use std::time::{Duration, Instant};

use posekit_dist::{
    spawn_local, DistEnv, GlooDevice, GradAverager, GroupOptions, ProcessGroup, SpawnOptions,
    DEFAULT_BUCKET_BYTES,
};
use posekit_nn::models::Preset;
use tch::nn::VarStore;
use tch::Device;

struct Args {
    nproc: usize,
    model: String,
    iters: usize,
    warmup: usize,
}

fn parse() -> Args {
    let mut args = Args {
        nproc: 2,
        model: "hrnet-w32".into(),
        iters: 10,
        warmup: 2,
    };
    let argv: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--nproc" => args.nproc = value.parse().expect("--nproc N"),
            "--model" => args.model = value.clone(),
            "--iters" => args.iters = value.parse().expect("--iters N"),
            "--warmup" => args.warmup = value.parse().expect("--warmup N"),
            other => panic!("unknown option {other}"),
        }
    }
    args
}

fn main() {
    let args = parse();
    let env = DistEnv::from_env().expect("rank variables");
    let Some(env) = env else {
        let forwarded = std::env::args_os()
            .skip(1)
            .filter(|a| a != "--bench")
            .collect();
        let options = SpawnOptions::current_exe(forwarded).expect("own path");
        if let Err(e) = spawn_local(args.nproc, &options) {
            eprintln!("bench: {e}");
            std::process::exit(1);
        }
        return;
    };
    tch::set_num_threads(1);
    let mut options = GroupOptions {
        gloo_device: GlooDevice::Hostname("127.0.0.1".into()),
        ..GroupOptions::default()
    };
    let vs = VarStore::new(Device::Cpu);
    let preset = Preset::find(&args.model).expect("model preset");
    let _net = preset.build(&vs.root()).expect("model");
    // Gradients of 0.5 everywhere: the values do not change the time.
    let total = vs
        .trainable_variables()
        .iter()
        .map(|p| p.sum(tch::Kind::Float))
        .fold(
            tch::Tensor::zeros([], (tch::Kind::Float, Device::Cpu)),
            |acc, s| acc + s,
        );
    (total * 0.5).backward();

    for (label, bucket_bytes) in [
        ("25 MiB buckets", DEFAULT_BUCKET_BYTES),
        ("one flat buffer", usize::MAX),
    ] {
        options.bucket_bytes = bucket_bytes;
        let group = ProcessGroup::init(&env, &options).expect("process group");
        let averager = GradAverager::new(&group, &vs).expect("averager");
        let mut times = Vec::new();
        for i in 0..args.warmup + args.iters {
            group.barrier().expect("barrier");
            let start = Instant::now();
            averager.average(&group).expect("average");
            if i >= args.warmup {
                times.push(start.elapsed());
            }
        }
        times.sort();
        let median = times[times.len() / 2];
        let best = times[0];
        if group.rank() == 0 {
            report(
                &args,
                label,
                averager.len(),
                averager.bytes(),
                env.world_size,
                median,
                best,
            );
        }
        group.barrier().expect("barrier");
        group.shutdown();
    }
}

fn report(
    args: &Args,
    label: &str,
    tensors: usize,
    bytes: usize,
    world: usize,
    median: Duration,
    best: Duration,
) {
    let gb = bytes as f64 / 1e9;
    let algbw = gb / median.as_secs_f64();
    let bus = algbw * 2.0 * (world as f64 - 1.0) / world as f64;
    println!(
        "{} ({tensors} tensors, {:.1} MB), {world} rank(s), {label}: median {:.1} ms, best {:.1} ms, \
         algbw {:.2} GB/s, busbw {:.2} GB/s ({} iterations)",
        args.model,
        bytes as f64 / 1e6,
        median.as_secs_f64() * 1e3,
        best.as_secs_f64() * 1e3,
        algbw,
        bus,
        args.iters
    );
}
