//! `posekit bench`: images per second and milliseconds per batch of a preset, after warm-up,
//! on libtorch (`--backend torch`) or on ONNX Runtime (`--backend ort`, the preset exported in
//! memory by the library's `posekit::estimator::backend`, the sessions of every command). Benchmarks, not tests, carry the speed
//! targets (BENCHMARKS.md records the figures).
//!
//! Inference benchmarks run random weights calibrated like trained ones
//! (`posekit_nn::export::random_weights`): a fresh network's tiny activations would turn into
//! denormal floats, whose arithmetic is many times slower on a CPU and would time the wrong
//! thing.

use std::time::Instant;

use clap::{Args, ValueEnum};
use posekit::estimator::backend;
use posekit_nn::device::parse_device;
use posekit_nn::export::{random_weights, ExportInfo, Precision};
use posekit_nn::models::PoseNetwork;
use posekit_nn::optim::{Adam, AdamConfig};
use posekit_nn::ort_engine::{OrtNetwork, OrtOptions};
use tch::{Device, Kind, Tensor};

/// The engine that runs the network (`--backend` of bench, infer and test).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// libtorch, through tch (CPU or CUDA).
    Torch,
    /// ONNX Runtime on the CPU, on the network exported to ONNX in memory (or a given .onnx).
    Ort,
}

impl From<Backend> for posekit::estimator::Backend {
    fn from(b: Backend) -> Self {
        match b {
            Backend::Torch => posekit::estimator::Backend::Torch,
            Backend::Ort => posekit::estimator::Backend::Ort,
        }
    }
}

use posekit::pipelines::model::LoadedModel;

/// The engine flags of `infer` and `test`: which backend, its threads, an ONNX file.
#[derive(Args, Debug, Clone)]
pub struct EngineArgs {
    /// The engine: libtorch, or ONNX Runtime (CPU; the network exported in memory, or --onnx).
    #[arg(long, value_enum, default_value_t = Backend::Torch)]
    pub backend: Backend,
    /// CPU threads of the engine (default: each library's choice).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Run this .onnx file (from `posekit export`) on ONNX Runtime instead of the in-memory
    /// export; implies --backend ort. It is checked against the model's preset first.
    #[arg(long)]
    pub onnx: Option<std::path::PathBuf>,
}

impl EngineArgs {
    /// The library's backend and ONNX Runtime settings; sets libtorch's threads for the torch
    /// backend (process-wide).
    pub fn settings(
        &self,
    ) -> anyhow::Result<(posekit::estimator::Backend, posekit::estimator::OrtSettings)> {
        if self.threads == Some(0) {
            anyhow::bail!("--threads must be at least 1");
        }
        let backend = if self.onnx.is_some() {
            Backend::Ort
        } else {
            self.backend
        };
        if backend == Backend::Torch {
            if let Some(n) = self.threads {
                tch::set_num_threads(n as i32);
            }
        }
        let ort = posekit::estimator::OrtSettings {
            threads: self.threads,
            model: self.onnx.clone(),
        };
        Ok((backend.into(), ort))
    }

    /// `builder` with these settings.
    pub fn apply(
        &self,
        builder: posekit::estimator::PoseEstimatorBuilder,
    ) -> anyhow::Result<posekit::estimator::PoseEstimatorBuilder> {
        let (backend, ort) = self.settings()?;
        let mut builder = builder.backend(backend);
        if let Some(n) = ort.threads {
            builder = builder.threads(n);
        }
        if let Some(path) = &ort.model {
            builder = builder.onnx_model(path);
        }
        Ok(builder)
    }
}

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
    /// CPU threads for libtorch and ONNX Runtime (default: each library's choice).
    #[arg(long)]
    threads: Option<i32>,
    /// The engine: libtorch or ONNX Runtime (CPU, inference only).
    #[arg(long, value_enum, default_value_t = Backend::Torch)]
    backend: Backend,
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
    if args.backend == Backend::Ort {
        if args.train {
            anyhow::bail!("--backend ort runs inference only; time training with --backend torch");
        }
        if device != Device::Cpu {
            anyhow::bail!("--backend ort runs on the CPU; leave out --device");
        }
        // Before any work: a missing library is said at once, with how to install it.
        posekit_nn::ort_engine::library::environment()?;
    }
    if args.threads.is_some_and(|t| t < 1) {
        anyhow::bail!("--threads must be at least 1");
    }
    if !args.train {
        let normalization = model.preset.family.input_normalization();
        random_weights::randomize(&model.vs, model.net.as_ref(), &normalization, 0)?;
    }
    let ort_net = match args.backend {
        Backend::Torch => None,
        Backend::Ort => Some(ort_network(
            &model,
            (h, w),
            args.batch,
            args.half,
            args.threads,
        )?),
    };
    let kind = if args.half && ort_net.is_none() {
        Kind::BFloat16
    } else {
        Kind::Float
    };
    let folded = !args.train && !args.no_fold_bn && ort_net.is_none() && model.fold_batchnorm()?;
    if args.half && ort_net.is_none() {
        model.vs.bfloat16();
    }
    let net: &dyn PoseNetwork = match &ort_net {
        Some(n) => n,
        None => model.net.as_ref(),
    };
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
                net.forward_named(&input, false)?;
            }
            sync();
            for _ in 0..args.iters {
                let t0 = Instant::now();
                let out = net.forward_named(&input, false)?;
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
    let (engine, precision, threads) = match args.backend {
        Backend::Torch => (
            "libtorch",
            if args.half { "bf16" } else { "fp32" },
            tch::get_num_threads().to_string(),
        ),
        Backend::Ort => (
            "onnxruntime",
            if args.half { "fp16" } else { "fp32" },
            args.threads.map_or("default".into(), |t| t.to_string()),
        ),
    };
    println!(
        "{} {} {engine} batch {} input {}x{} {precision} on {:?} (threads {threads}){}: median {:.2} ms/batch, mean {:.2} ms/batch, {:.1} images/s",
        model.preset.name,
        if args.train { "train step" } else { "forward" },
        args.batch,
        h,
        w,
        device,
        if folded { ", BN folded" } else { "" },
        median * 1e3,
        mean * 1e3,
        args.batch as f64 / median
    );
    Ok(())
}

/// The preset exported to ONNX in memory (static batch, as a deployment would) and loaded into
/// ONNX Runtime with `threads` intra-op threads.
fn ort_network(
    model: &LoadedModel,
    input_size: (i64, i64),
    batch: i64,
    half: bool,
    threads: Option<i32>,
) -> anyhow::Result<OrtNetwork> {
    let info = ExportInfo::for_preset(model.preset)?;
    let precision = if half {
        Precision::Float16
    } else {
        Precision::Float32
    };
    let options = OrtOptions {
        threads: threads.map(|t| t as usize),
    };
    Ok(backend::export_in_memory(
        model.net.as_ref(),
        &info,
        input_size,
        Some(batch),
        precision,
        options,
    )?)
}
