//! `posekit bench`: parses the flags of the library's benchmark
//! ([`posekit::pipelines::bench`]) and prints its line. The engine flags shared by `infer` and
//! `test` live here too.

use clap::{Args, ValueEnum};
use posekit::pipelines::bench::{bench, BenchOptions};
use posekit_nn::device::parse_device;

/// The engine that runs the network (`--backend` of bench, infer and test).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// ONNX Runtime on the CPU when its library is installed (it is faster there with the same
    /// results), libtorch otherwise and on a GPU.
    Auto,
    /// libtorch, through tch (CPU or CUDA).
    Torch,
    /// ONNX Runtime on the CPU, on the network exported to ONNX in memory (or a given .onnx).
    Ort,
}

impl From<Backend> for posekit::estimator::Backend {
    fn from(b: Backend) -> Self {
        match b {
            Backend::Auto => posekit::estimator::Backend::Auto,
            Backend::Torch => posekit::estimator::Backend::Torch,
            Backend::Ort => posekit::estimator::Backend::Ort,
        }
    }
}

/// The engine flags of `infer` and `test`: which backend, its threads, an ONNX file.
#[derive(Args, Debug, Clone)]
pub struct EngineArgs {
    /// The engine: auto (ONNX Runtime on the CPU when installed, else libtorch), libtorch, or
    /// ONNX Runtime (CPU; the network exported in memory, or --onnx).
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
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
    /// Whether the network will run on ONNX Runtime on `device` (`--backend ort`, an `--onnx`
    /// file, or `auto` on the CPU with the library installed): the front's question
    /// (main.rs), answered without loading anything.
    #[allow(dead_code)] // the engine never asks
    pub fn uses_onnx_runtime(&self, device: &str) -> bool {
        self.onnx.is_some() || self.backend.runs_onnx_runtime(device)
    }

    /// The engine that runs on `device` ([`Backend::Auto`] resolved, `--onnx` meaning ONNX
    /// Runtime) and the ONNX Runtime settings; sets libtorch's threads for the torch backend
    /// (process-wide).
    pub fn settings(
        &self,
        device: tch::Device,
    ) -> anyhow::Result<(posekit::estimator::Backend, posekit::estimator::OrtSettings)> {
        if self.threads == Some(0) {
            anyhow::bail!("--threads must be at least 1");
        }
        let backend = if self.onnx.is_some() {
            posekit::estimator::Backend::Ort
        } else {
            posekit::estimator::Backend::from(self.backend).resolve(device)
        };
        if backend == posekit::estimator::Backend::Torch {
            if let Some(n) = self.threads {
                tch::set_num_threads(n as i32);
            }
        }
        let ort = posekit::estimator::OrtSettings {
            threads: self.threads,
            model: self.onnx.clone(),
        };
        Ok((backend, ort))
    }

    /// `builder` (which runs on `device`) with these settings.
    pub fn apply(
        &self,
        builder: posekit::estimator::PoseEstimatorBuilder,
        device: tch::Device,
    ) -> anyhow::Result<posekit::estimator::PoseEstimatorBuilder> {
        let (backend, ort) = self.settings(device)?;
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
    /// The engine: auto (ONNX Runtime on the CPU for inference when installed, else libtorch),
    /// libtorch, or ONNX Runtime (CPU, inference only).
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    pub(crate) backend: Backend,
}

impl Backend {
    /// Whether this choice runs ONNX Runtime on the device named `device` (as given on the
    /// command line), judged without loading the library: `auto` does on the CPU when
    /// `libonnxruntime` is where the library would look for it.
    pub fn runs_onnx_runtime(self, device: &str) -> bool {
        match self {
            Backend::Ort => true,
            Backend::Torch => false,
            Backend::Auto => {
                device.trim() == "cpu" && posekit_nn::ort_engine::library::find_library().is_ok()
            }
        }
    }
}

impl BenchArgs {
    /// Whether the benchmark runs ONNX Runtime (the front's question, see main.rs): the
    /// automatic choice times training, unfolded BatchNorm and bfloat16 on libtorch.
    #[allow(dead_code)] // the engine never asks
    pub fn runs_onnx_runtime(&self) -> bool {
        match self.backend {
            Backend::Auto if self.train || self.no_fold_bn || self.half => false,
            chosen => chosen.runs_onnx_runtime(&self.device),
        }
    }
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
    if args.threads.is_some_and(|t| t < 1) {
        anyhow::bail!("--threads must be at least 1");
    }
    let opts = BenchOptions {
        preset: args.model,
        batch: args.batch,
        device: parse_device(&args.device)?,
        input_size: args.input_size.as_deref().map(parse_size).transpose()?,
        half: args.half,
        train: args.train,
        fold_batchnorm: !args.no_fold_bn,
        warmup: args.warmup,
        iters: args.iters,
        threads: args.threads.map(|t| t as usize),
        backend: args.backend.into(),
    };
    println!("{}", bench(&opts)?);
    Ok(())
}
