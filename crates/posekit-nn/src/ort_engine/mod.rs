//! posekit's networks on ONNX Runtime: an exported graph (see [`crate::export`]) run through the
//! `ort` crate, behind the same [`PoseNetwork`] interface as the libtorch networks, so that a
//! pipeline (pre-processing, flip test, decoding, grouping) runs unchanged on either backend.
//!
//! [`OrtNetwork`] takes libtorch tensors in and gives libtorch tensors out (on the input's
//! device; ONNX Runtime itself runs on the CPU here), named as `forward_named` names them. A
//! model is checked against the preset it is supposed to be before it runs
//! ([`check::check_session`]), and the library is loaded from the `onnxruntime` wheel
//! ([`library`]); both fail with errors that say what to do.

pub mod check;
pub mod library;

use std::path::Path;
use std::sync::Mutex;

use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::Session;
use ort::value::TensorRef;
use posekit_core::{Error, Result};
use tch::{Device, Kind, Tensor};

pub use check::ExpectedModel;

use crate::export::metadata::KEY_BATCH_DEPENDENT;
use crate::export::INPUT_NAME;
use crate::models::PoseNetwork;

/// How to run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrtOptions {
    /// Threads inside each operator (ONNX Runtime's intra-op pool); `None` lets ONNX Runtime
    /// choose (one per physical core).
    pub threads: Option<usize>,
}

/// A pose network as an ONNX Runtime session; see the module documentation.
pub struct OrtNetwork {
    /// `Session::run` needs `&mut`; the lock lets the network be shared like the libtorch ones.
    session: Mutex<Session>,
    expected: ExpectedModel,
    batch_dependent: bool,
    /// The model's declared batch size, `None` when symbolic.
    batch: Option<i64>,
    origin: String,
}

impl std::fmt::Debug for OrtNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrtNetwork")
            .field("origin", &self.origin)
            .field("preset", &self.expected.preset)
            .field("input_size", &self.expected.input_size)
            .finish()
    }
}

impl OrtNetwork {
    /// Loads the ONNX file at `path` and checks it against `expected`.
    pub fn from_file(path: &Path, expected: ExpectedModel, options: OrtOptions) -> Result<Self> {
        let bytes = posekit_core::error::read_file(path)?;
        Self::from_bytes(&bytes, &path.display().to_string(), expected, options)
    }

    /// Loads a serialised ONNX model (`origin` names it in errors) and checks it against
    /// `expected`.
    pub fn from_bytes(
        bytes: &[u8],
        origin: &str,
        expected: ExpectedModel,
        options: OrtOptions,
    ) -> Result<Self> {
        let environment = library::environment()?;
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            Error::Shape(format!("{origin}: ONNX Runtime {what}: {e}"))
        };
        let builder = Session::builder(environment).map_err(|e| fail("session", &e))?;
        let session = configure(builder, options)
            .and_then(|mut b| b.commit_from_memory(bytes).map_err(|e| e.to_string()))
            .map_err(|e| fail("cannot load the model", &e))?;
        check::check_session(&session, &expected, origin)?;
        let batch_dependent = session
            .metadata()
            .ok()
            .and_then(|m| m.custom(KEY_BATCH_DEPENDENT))
            .is_some_and(|v| v == "true");
        let batch = session
            .inputs()
            .first()
            .and_then(|i| match i.dtype() {
                ort::value::ValueType::Tensor { shape, .. } => shape.first().copied(),
                _ => None,
            })
            .filter(|&b| b > 0);
        Ok(OrtNetwork {
            session: Mutex::new(session),
            expected,
            batch_dependent,
            batch,
            origin: origin.to_string(),
        })
    }

    /// What the model was checked against.
    pub fn expected(&self) -> &ExpectedModel {
        &self.expected
    }

    /// Runs the model on `input` (`[N, 3, H, W]`, any float kind and device) and returns every
    /// head by name, in the preset's `forward_named` order, as float32 tensors on the input's
    /// device.
    pub fn run(&self, input: &Tensor) -> Result<Vec<(String, Tensor)>> {
        let size = input.size();
        let (h, w) = self.expected.input_size;
        let batch_ok = self.batch.is_none_or(|b| size.first() == Some(&b));
        if size.len() != 4 || size[1] != 3 || size[2] != h || size[3] != w || !batch_ok {
            let batch = self.batch.map_or("N".to_string(), |b| b.to_string());
            return Err(Error::Shape(format!(
                "{}: takes an input [{batch}, 3, {h}, {w}], got {size:?}{}",
                self.origin,
                if batch_ok {
                    ""
                } else {
                    " (export with --dynamic-batch for other batch sizes)"
                }
            )));
        }
        let device = input.device();
        // A float32 tensor in CPU memory, one contiguous block (a no-op for the pipelines'
        // inputs, which are made so); ONNX Runtime reads it in place, without the copy into a
        // `Vec` that costs ~0.3 ms per 368x432 picture.
        let x = input
            .detach()
            .to_device(Device::Cpu)
            .to_kind(Kind::Float)
            .contiguous();
        let numel = x.numel();
        // SAFETY: `x` is a contiguous float32 CPU tensor of `numel` elements that outlives
        // `data` (both live to the end of this function) and nothing writes to it meanwhile.
        let data: &[f32] = if numel == 0 {
            &[]
        } else {
            unsafe { std::slice::from_raw_parts(x.data_ptr() as *const f32, numel) }
        };
        let fail =
            |e: &dyn std::fmt::Display| Error::Shape(format!("{}: ONNX Runtime: {e}", self.origin));
        let tensor = TensorRef::from_array_view((size.clone(), data)).map_err(|e| fail(&e))?;
        let mut session = self
            .session
            .lock()
            .map_err(|_| Error::Shape(format!("{}: a previous run panicked", self.origin)))?;
        let outputs = session
            .run(ort::inputs![INPUT_NAME => tensor])
            .map_err(|e| fail(&e))?;
        let mut named = Vec::with_capacity(self.expected.heads.len());
        for (name, _) in &self.expected.heads {
            let value = outputs
                .get(name.as_str())
                .ok_or_else(|| fail(&format!("no output `{name}`")))?;
            let (shape, values) = value.try_extract_tensor::<f32>().map_err(|e| fail(&e))?;
            let t = Tensor::from_slice(values).reshape(shape.to_vec());
            named.push((name.clone(), t.to_device(device)));
        }
        Ok(named)
    }
}

/// Threads and optimisation level. Errors are strings: `ort`'s builder error carries the
/// builder back, which is of no use here.
///
/// The level is `All` (`ORT_ENABLE_ALL`, what ONNX Runtime's Python API and its own default
/// use): `ort`'s `Level3` is `ORT_ENABLE_LAYOUT`, which leaves some of them out and cost the
/// shipped MobileNetV2 2-4% against ONNX Runtime from Python (BENCHMARKS.md).
fn configure(
    builder: SessionBuilder,
    options: OrtOptions,
) -> std::result::Result<SessionBuilder, String> {
    let mut b = builder
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(|e| e.to_string())?
        .with_inter_threads(1)
        .map_err(|e| e.to_string())?;
    if let Some(n) = options.threads {
        if n == 0 {
            return Err("the thread count must be at least 1".into());
        }
        b = b.with_intra_threads(n).map_err(|e| e.to_string())?;
    }
    Ok(b)
}

impl PoseNetwork for OrtNetwork {
    fn forward_named(&self, input: &Tensor, train: bool) -> Result<Vec<(String, Tensor)>> {
        if train {
            return Err(Error::Shape(format!(
                "{}: an ONNX Runtime model runs inference only (training runs on libtorch)",
                self.origin
            )));
        }
        self.run(input)
    }

    fn batch_dependent(&self) -> bool {
        self.batch_dependent
    }
}
