//! The network benchmark behind `posekit bench`: milliseconds per batch of a preset after
//! warm-up, for inference on libtorch or ONNX Runtime, or for a training step on libtorch.
//! Benchmarks, not tests, carry the speed targets (BENCHMARKS.md records the figures).
//!
//! Inference runs random weights calibrated like trained ones
//! (`posekit_nn::export::random_weights`): a fresh network's tiny activations would turn into
//! denormal floats, whose arithmetic is many times slower on a CPU and would time the wrong
//! thing.

use std::fmt;
use std::time::Instant;

use posekit_nn::export::{random_weights, ExportInfo, Precision};
use posekit_nn::models::PoseNetwork;
use posekit_nn::optim::{Adam, AdamConfig};
use posekit_nn::ort_engine::{OrtNetwork, OrtOptions};
use tch::{Device, Kind, Tensor};

use super::model::LoadedModel;
use crate::error::{bail, Result};
use crate::estimator::{backend, Backend};

/// What to time.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// A preset of `posekit models`.
    pub preset: String,
    pub batch: i64,
    pub device: Device,
    /// `(height, width)`; the preset's first input size when `None`.
    pub input_size: Option<(i64, i64)>,
    /// bfloat16 on libtorch, float16 on ONNX Runtime, instead of float32.
    pub half: bool,
    /// A training step (forward, a mean-square loss on every output, backward, Adam) instead
    /// of inference.
    pub train: bool,
    /// Fold BatchNorm into the convolutions for inference on libtorch, as inference does.
    pub fold_batchnorm: bool,
    /// Untimed runs first (allocator, cuDNN autotuning, ONNX Runtime's first-run planning).
    pub warmup: usize,
    /// Timed runs; the report gives their median and mean.
    pub iters: usize,
    /// Intra-op CPU threads. For libtorch this sets the process-wide thread count.
    pub threads: Option<usize>,
    pub backend: Backend,
}

impl BenchOptions {
    /// Inference of `preset` at batch 1 on the CPU with the default engine ([`Backend::Auto`]),
    /// 3 warm-up and 10 timed runs.
    pub fn new(preset: impl Into<String>) -> Self {
        BenchOptions {
            preset: preset.into(),
            batch: 1,
            device: Device::Cpu,
            input_size: None,
            half: false,
            train: false,
            fold_batchnorm: true,
            warmup: 3,
            iters: 10,
            threads: None,
            backend: Backend::Auto,
        }
    }
}

/// The timings of one benchmark and what was timed.
#[derive(Debug, Clone)]
pub struct BenchReport {
    pub preset: &'static str,
    pub train: bool,
    /// The engine that ran ([`Backend::Auto`] resolved).
    pub backend: Backend,
    pub batch: i64,
    pub input_size: (i64, i64),
    /// "fp32", "bf16" (libtorch) or "fp16" (ONNX Runtime).
    pub precision: &'static str,
    pub device: Device,
    /// The engine's intra-op threads, `None` where ONNX Runtime chose.
    pub threads: Option<usize>,
    pub batchnorm_folded: bool,
    /// Seconds per batch of each timed run, sorted.
    pub seconds: Vec<f64>,
}

impl BenchReport {
    pub fn median_seconds(&self) -> f64 {
        self.seconds[self.seconds.len() / 2]
    }

    pub fn mean_seconds(&self) -> f64 {
        self.seconds.iter().sum::<f64>() / self.seconds.len() as f64
    }

    pub fn images_per_second(&self) -> f64 {
        self.batch as f64 / self.median_seconds()
    }
}

/// The line `posekit bench` prints.
impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let engine = self.backend.engine_name();
        let threads = self
            .threads
            .map_or_else(|| "default".to_string(), |t| t.to_string());
        write!(
            f,
            "{} {} {engine} batch {} input {}x{} {} on {:?} (threads {threads}){}: median {:.2} ms/batch, mean {:.2} ms/batch, {:.1} images/s",
            self.preset,
            if self.train { "train step" } else { "forward" },
            self.batch,
            self.input_size.0,
            self.input_size.1,
            self.precision,
            self.device,
            if self.batchnorm_folded { ", BN folded" } else { "" },
            self.median_seconds() * 1e3,
            self.mean_seconds() * 1e3,
            self.images_per_second()
        )
    }
}

/// Times `opts.preset` as `opts` asks. Options that cannot go together (ONNX Runtime with
/// training or a GPU, zero threads, an empty batch) are refused before any work.
pub fn bench(opts: &BenchOptions) -> Result<BenchReport> {
    if opts.batch < 1 {
        bail!("the batch must be at least 1, got {}", opts.batch);
    }
    if opts.iters < 1 {
        bail!("at least one timed run is needed");
    }
    if opts.threads == Some(0) {
        bail!("threads must be at least 1");
    }
    let backend = match opts.backend {
        // Training, unfolded BatchNorm and bfloat16 are libtorch's alone: the automatic choice
        // times them there rather than refusing.
        Backend::Auto if opts.train || !opts.fold_batchnorm || opts.half => Backend::Torch,
        chosen => chosen.resolve(opts.device),
    };
    let ort = backend == Backend::Ort;
    if ort {
        if opts.train {
            bail!("ONNX Runtime runs inference only; time training with the torch backend");
        }
        if opts.device != Device::Cpu {
            bail!(
                "ONNX Runtime runs on the CPU here, not on {:?}",
                opts.device
            );
        }
        // Before any work: a missing library is said at once, with how to install it.
        posekit_nn::ort_engine::library::environment()?;
    } else if let Some(n) = opts.threads {
        tch::set_num_threads(n as i32);
    }
    let device = opts.device;
    if device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(true);
    }
    let mut model = LoadedModel::new(&opts.preset, device)?;
    let (h, w) = opts
        .input_size
        .unwrap_or_else(|| model.preset.default_input_size());
    if !opts.train {
        let normalization = model.preset.family.input_normalization();
        random_weights::randomize(&model.vs, model.net.as_ref(), &normalization, 0)?;
    }
    let ort_net = if ort {
        Some(ort_network(&model, (h, w), opts)?)
    } else {
        None
    };
    let folded = !opts.train && opts.fold_batchnorm && !ort && model.fold_batchnorm()?;
    let kind = if opts.half && !ort {
        model.vs.bfloat16();
        Kind::BFloat16
    } else {
        Kind::Float
    };
    let input = Tensor::randn([opts.batch, 3, h, w], (kind, device));
    let seconds = if opts.train {
        time_training(&model, &input, opts)?
    } else {
        let net: &dyn PoseNetwork = match &ort_net {
            Some(n) => n,
            None => model.net.as_ref(),
        };
        time_inference(net, &input, opts)?
    };
    Ok(BenchReport {
        preset: model.preset.name,
        train: opts.train,
        backend,
        batch: opts.batch,
        input_size: (h, w),
        precision: match (opts.half, ort) {
            (false, _) => "fp32",
            (true, false) => "bf16",
            (true, true) => "fp16",
        },
        device,
        threads: if ort {
            opts.threads
        } else {
            Some(tch::get_num_threads() as usize)
        },
        batchnorm_folded: folded,
        seconds,
    })
}

/// Waits for the GPU's queued work, so that a timing covers it.
fn synchronize(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// Sorted seconds per forward pass, without gradients.
fn time_inference(net: &dyn PoseNetwork, input: &Tensor, opts: &BenchOptions) -> Result<Vec<f64>> {
    tch::no_grad(|| {
        for _ in 0..opts.warmup {
            net.forward_named(input, false)?;
        }
        synchronize(opts.device);
        let mut seconds = Vec::with_capacity(opts.iters);
        for _ in 0..opts.iters {
            let start = Instant::now();
            let outputs = net.forward_named(input, false)?;
            synchronize(opts.device);
            seconds.push(start.elapsed().as_secs_f64());
            drop(outputs);
        }
        seconds.sort_by(f64::total_cmp);
        Ok(seconds)
    })
}

/// Sorted seconds per training step: a mean-square loss on every output stands in for the
/// real losses, whose cost is small beside the network's.
fn time_training(model: &LoadedModel, input: &Tensor, opts: &BenchOptions) -> Result<Vec<f64>> {
    let mut adam = Adam::new(&model.vs, AdamConfig::default());
    let mut step = || -> Result<()> {
        adam.zero_grad();
        let outputs = model.net.forward_named(input, true)?;
        let loss = outputs
            .iter()
            .map(|(_, t)| t.square().mean(Kind::Float))
            .fold(Tensor::from(0f32).to_device(opts.device), |a, b| a + b);
        loss.backward();
        adam.step(1e-4);
        Ok(())
    };
    for _ in 0..opts.warmup {
        step()?;
    }
    synchronize(opts.device);
    let mut seconds = Vec::with_capacity(opts.iters);
    for _ in 0..opts.iters {
        let start = Instant::now();
        step()?;
        synchronize(opts.device);
        seconds.push(start.elapsed().as_secs_f64());
    }
    seconds.sort_by(f64::total_cmp);
    Ok(seconds)
}

/// The preset exported to ONNX in memory (static batch, as a deployment would) and loaded into
/// ONNX Runtime.
fn ort_network(
    model: &LoadedModel,
    input_size: (i64, i64),
    opts: &BenchOptions,
) -> Result<OrtNetwork> {
    let info = ExportInfo::for_preset(model.preset)?;
    let precision = if opts.half {
        Precision::Float16
    } else {
        Precision::Float32
    };
    let options = OrtOptions {
        threads: opts.threads,
    };
    backend::export_in_memory(
        model.net.as_ref(),
        &info,
        input_size,
        Some(opts.batch),
        precision,
        options,
    )
}
