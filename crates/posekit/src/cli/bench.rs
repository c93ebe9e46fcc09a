//! `posekit bench`: images per second and milliseconds per batch of a preset, after warm-up.
//! Benchmarks, not tests, carry the speed targets (BENCHMARKS.md records the figures).

use std::time::Instant;

use clap::Args;
use posekit_nn::device::parse_device;
use posekit_nn::optim::{Adam, AdamConfig};
use tch::{Device, Kind, Tensor};

use posekit::pipelines::model::LoadedModel;

#[derive(Args)]
pub struct BenchArgs {
    /// Model preset (see `posekit models`).
    #[arg(long)]
    model: String,
    #[arg(long, default_value_t = 1)]
    batch: i64,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Input size HxW (default: the preset's first size).
    #[arg(long)]
    input_size: Option<String>,
    /// Run in bfloat16 (GPU) instead of float32.
    #[arg(long)]
    half: bool,
    /// Time a training step (forward, MSE loss, backward, Adam) instead of inference.
    #[arg(long)]
    train: bool,
    /// Keep BatchNorm as separate layers (by default it is folded into the convolutions for inference).
    #[arg(long)]
    no_fold_bn: bool,
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// CPU threads for libtorch (default: libtorch's choice).
    #[arg(long)]
    threads: Option<i32>,
}

pub fn parse_size(spec: &str) -> anyhow::Result<(i64, i64)> {
    let (h, w) = spec
        .split_once('x')
        .ok_or_else(|| anyhow::anyhow!("input size '{spec}' must be HEIGHTxWIDTH, e.g. 256x192"))?;
    let parse = |s: &str| s.trim().parse::<i64>().ok().filter(|v| *v > 0);
    match (parse(h), parse(w)) {
        (Some(h), Some(w)) => Ok((h, w)),
        _ => anyhow::bail!("input size '{spec}' must be HEIGHTxWIDTH with positive integers"),
    }
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if let Some(n) = args.threads {
        tch::set_num_threads(n);
    }
    let device = parse_device(&args.device)?;
    if device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(true);
    }
    let mut model = LoadedModel::new(&args.model, device)?;
    let (h, w) = match &args.input_size {
        Some(s) => parse_size(s)?,
        None => model.preset.default_input_size(),
    };
    if args.batch < 1 {
        anyhow::bail!("--batch must be at least 1");
    }
    let kind = if args.half {
        Kind::BFloat16
    } else {
        Kind::Float
    };
    let folded = !args.train && !args.no_fold_bn && model.fold_batchnorm()?;
    if args.half {
        model.vs.bfloat16();
    }
    let input = Tensor::randn([args.batch, 3, h, w], (kind, device));
    let sync = || {
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
    };

    let mut times = Vec::with_capacity(args.iters);
    if args.train {
        let mut opt = Adam::new(&model.vs, AdamConfig::default());
        let step = |opt: &mut Adam| -> anyhow::Result<()> {
            opt.zero_grad();
            let out = model.net.forward_named(&input, true)?;
            let loss = out
                .iter()
                .map(|(_, t)| t.square().mean(Kind::Float))
                .fold(Tensor::from(0f32).to_device(device), |a, b| a + b);
            loss.backward();
            opt.step(1e-4);
            Ok(())
        };
        for _ in 0..args.warmup {
            step(&mut opt)?;
        }
        sync();
        for _ in 0..args.iters {
            let t0 = Instant::now();
            step(&mut opt)?;
            sync();
            times.push(t0.elapsed().as_secs_f64());
        }
    } else {
        tch::no_grad(|| -> anyhow::Result<()> {
            for _ in 0..args.warmup {
                model.net.forward_named(&input, false)?;
            }
            sync();
            for _ in 0..args.iters {
                let t0 = Instant::now();
                let out = model.net.forward_named(&input, false)?;
                sync();
                times.push(t0.elapsed().as_secs_f64());
                drop(out);
            }
            Ok(())
        })?;
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let median = times[times.len() / 2];
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    println!(
        "{} {} batch {} input {}x{} {} on {:?} (threads {}){}: median {:.2} ms/batch, mean {:.2} ms/batch, {:.1} images/s",
        model.preset.name,
        if args.train { "train step" } else { "forward" },
        args.batch,
        h,
        w,
        if args.half { "bf16" } else { "fp32" },
        device,
        tch::get_num_threads(),
        if folded { ", BN folded" } else { "" },
        median * 1e3,
        mean * 1e3,
        args.batch as f64 / median
    );
    Ok(())
}
