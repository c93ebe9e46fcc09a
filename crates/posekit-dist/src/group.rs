//! A process group: this rank's membership in a c10d group (Gloo or NCCL) and its collectives.

use std::cell::RefCell;
use std::ffi::CString;
use std::time::Duration;

use tch::{Device, Kind, Tensor};

use crate::bucket::{self, DEFAULT_BUCKET_BYTES};
use crate::env::{DistEnv, StoreHost};
use crate::error::{DistError, Result};
use crate::ffi;
use crate::heartbeat::{self, Heartbeat};
use crate::store::Store;

/// The c10d backend a group runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Gloo over TCP: CPU tensors.
    Gloo,
    /// NCCL: CUDA tensors on this rank's device.
    Nccl { device: usize },
}

impl Backend {
    /// The backend torch.distributed pairs with a device: Gloo for the CPU, NCCL for CUDA.
    pub fn for_device(device: Device) -> Result<Backend> {
        match device {
            Device::Cpu => Ok(Backend::Gloo),
            Device::Cuda(index) => Ok(Backend::Nccl { device: index }),
            other => Err(DistError::Invalid(format!(
                "no process group backend for {other:?}"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Gloo => "gloo",
            Backend::Nccl { .. } => "nccl",
        }
    }

    /// Whether this build has the backend compiled in (see build.rs).
    pub fn compiled(self) -> bool {
        // SAFETY: plain queries without arguments.
        match self {
            Backend::Gloo => unsafe { ffi::pk_gloo_compiled() != 0 },
            Backend::Nccl { .. } => unsafe { ffi::pk_nccl_compiled() != 0 },
        }
    }
}

/// Which network device Gloo binds to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum GlooDevice {
    /// As torch.distributed: the interfaces in GLOO_SOCKET_IFNAME (comma-separated) if set,
    /// else the address of this host's name, falling back to loopback.
    #[default]
    FromEnv,
    /// These network interfaces (comma-separated names, e.g. "lo" or "eth0,eth1").
    Interfaces(String),
    /// The address this host name or IP resolves to (e.g. "127.0.0.1").
    Hostname(String),
}

/// How to form a group. `Default` is Gloo with the timeouts below.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOptions {
    pub backend: Backend,
    /// How long one collective may wait for the other ranks before it fails (Gloo's timeout).
    /// A collective whose peer died fails at once; this bounds the case of a peer that hangs.
    pub collective_timeout: Duration,
    /// How long to wait for the store and for every rank to join.
    pub rendezvous_timeout: Duration,
    /// How often each rank ticks its heartbeat; a failed collective takes about three of
    /// these to tell which rank is gone.
    pub heartbeat_interval: Duration,
    /// Size of the flat buffers that bucketed collectives use.
    pub bucket_bytes: usize,
    pub gloo_device: GlooDevice,
}

impl Default for GroupOptions {
    fn default() -> Self {
        GroupOptions {
            backend: Backend::Gloo,
            collective_timeout: Duration::from_secs(60),
            rendezvous_timeout: Duration::from_secs(60),
            heartbeat_interval: Duration::from_secs(1),
            bucket_bytes: DEFAULT_BUCKET_BYTES,
            gloo_device: GlooDevice::FromEnv,
        }
    }
}

/// The reduction of `ProcessGroup::all_reduce`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    Sum,
    /// The sum divided by the number of ranks (floating-point tensors only).
    Mean,
    Max,
    Min,
}

impl ReduceOp {
    fn code(self) -> i32 {
        match self {
            ReduceOp::Sum | ReduceOp::Mean => 0,
            ReduceOp::Max => 1,
            ReduceOp::Min => 2,
        }
    }
}

/// A started collective; freed when dropped.
struct Work(*mut ffi::PkWork);

impl Work {
    fn wait(&self) -> std::result::Result<(), String> {
        // SAFETY: self.0 is a live work handle.
        ffi::check(unsafe { ffi::pk_work_wait(self.0) })
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        // SAFETY: self.0 came from a *_start call and is freed once.
        unsafe { ffi::pk_work_free(self.0) };
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis())
        .unwrap_or(i64::MAX)
        .max(1)
}

/// This rank's membership in a group. Every rank must call the same collectives in the same
/// order (as with torch.distributed). Not `Sync`: one thread drives the collectives.
///
/// When a collective fails, the group tells which rank is gone (see `heartbeat`) and is
/// broken from then on: every later call fails with the first error.
pub struct ProcessGroup {
    raw: *mut ffi::PkGroup,
    rank: usize,
    world_size: usize,
    backend: Backend,
    prefix: String,
    options: GroupOptions,
    store_host_rank: Option<usize>,
    /// For the group's own notes and for diagnosing failures.
    control: Store,
    heartbeat: Option<Heartbeat>,
    broken: RefCell<Option<String>>,
    left: bool,
    /// Owns the connection that the backend shares (dropped last).
    _store: Store,
}

// SAFETY: the shim's group and stores are heap objects without thread affinity; `RefCell`
// keeps `ProcessGroup` from being `Sync`, so one thread at a time drives it.
unsafe impl Send for ProcessGroup {}

impl ProcessGroup {
    /// Joins the group `env` describes: connects to (or, as its host, starts) the rendezvous
    /// store at MASTER_ADDR:MASTER_PORT, starts the heartbeat and creates the backend. Every
    /// rank must call it; it returns once all ranks have joined.
    pub fn init(env: &DistEnv, options: &GroupOptions) -> Result<ProcessGroup> {
        if !options.backend.compiled() {
            return Err(DistError::GroupInit {
                backend: options.backend.name(),
                rank: env.rank,
                detail: format!(
                    "posekit was built without the {} backend",
                    options.backend.name()
                ),
            });
        }
        let rendezvous_error = |detail: String| DistError::Rendezvous {
            addr: env.master_addr.clone(),
            port: env.master_port,
            timeout: options.rendezvous_timeout,
            detail: explain_rendezvous(&detail, env),
        };
        let store = Store::connect(
            &env.master_addr,
            env.master_port,
            env.hosts_store(),
            env.world_size,
            options.rendezvous_timeout,
        )
        .map_err(rendezvous_error)?;
        let control = store.try_clone().map_err(rendezvous_error)?;
        let heartbeat_store = store.try_clone().map_err(rendezvous_error)?;
        // Neither the diagnosis nor a heartbeat tick (which Drop waits for) may wait long on a
        // store that no longer answers.
        let short = options.heartbeat_interval * 5 + Duration::from_secs(5);
        control.set_timeout(short).map_err(rendezvous_error)?;
        heartbeat_store
            .set_timeout(short)
            .map_err(rendezvous_error)?;
        let prefix = env.key_prefix();
        let heartbeat = Heartbeat::start(
            heartbeat_store,
            &prefix,
            env.rank,
            options.heartbeat_interval,
        );

        let mut group = ProcessGroup {
            raw: std::ptr::null_mut(),
            rank: env.rank,
            world_size: env.world_size,
            backend: options.backend,
            prefix,
            options: options.clone(),
            store_host_rank: (env.store_host == StoreHost::Rank0).then_some(0),
            control,
            heartbeat: Some(heartbeat),
            broken: RefCell::new(None),
            left: false,
            _store: store,
        };
        group.raw = group.create_backend().map_err(|detail| {
            let detail = match group.diagnose("creating the group", detail) {
                DistError::PeerLost { lost, detail, .. } => format!(
                    "{}; {detail}",
                    lost.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                other => other.to_string(),
            };
            DistError::GroupInit {
                backend: options.backend.name(),
                rank: env.rank,
                detail,
            }
        })?;
        Ok(group)
    }

    fn create_backend(&self) -> std::result::Result<*mut ffi::PkGroup, String> {
        let prefix = CString::new(format!("{}pg/", self.prefix)).map_err(|e| e.to_string())?;
        let rank = self.rank as i32;
        let size = self.world_size as i32;
        let timeout = millis(self.options.collective_timeout);
        let mut raw = std::ptr::null_mut();
        match self.backend {
            Backend::Gloo => {
                let (interfaces, hostname) = match &self.options.gloo_device {
                    GlooDevice::FromEnv => (
                        std::env::var("GLOO_SOCKET_IFNAME")
                            .ok()
                            .filter(|v| !v.is_empty()),
                        None,
                    ),
                    GlooDevice::Interfaces(list) => (Some(list.clone()), None),
                    GlooDevice::Hostname(host) => (None, Some(host.clone())),
                };
                let interfaces = interfaces
                    .map(CString::new)
                    .transpose()
                    .map_err(|e| e.to_string())?;
                let hostname = hostname
                    .map(CString::new)
                    .transpose()
                    .map_err(|e| e.to_string())?;
                let ptr = |s: &Option<CString>| s.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
                // SAFETY: valid store, NUL-terminated strings (or null), valid out-pointer.
                ffi::check(unsafe {
                    ffi::pk_gloo_new(
                        self._store.raw(),
                        prefix.as_ptr(),
                        rank,
                        size,
                        timeout,
                        ptr(&interfaces),
                        ptr(&hostname),
                        &mut raw,
                    )
                })?;
            }
            Backend::Nccl { device } => {
                // SAFETY: valid store, NUL-terminated prefix, valid out-pointer.
                ffi::check(unsafe {
                    ffi::pk_nccl_new(
                        self._store.raw(),
                        prefix.as_ptr(),
                        rank,
                        size,
                        timeout,
                        device as i32,
                        &mut raw,
                    )
                })?;
            }
        }
        Ok(raw)
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn world_size(&self) -> usize {
        self.world_size
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The size of the flat buffers of bucketed collectives (`GroupOptions::bucket_bytes`).
    pub fn bucket_bytes(&self) -> usize {
        self.options.bucket_bytes
    }

    /// Sums (or averages, ...) `tensors` across ranks, in place, in buckets of
    /// `GroupOptions::bucket_bytes`. Every rank passes tensors of the same shapes and dtypes
    /// in the same order. The buckets' collectives are all started before the first is
    /// awaited, so Gloo's threads overlap their transfers with the copies in and out.
    pub fn all_reduce(&self, tensors: &[Tensor], op: ReduceOp) -> Result<()> {
        const OP: &str = "all_reduce";
        self.check_usable(OP)?;
        if op == ReduceOp::Mean {
            if let Some(t) = tensors
                .iter()
                .find(|t| t.defined() && !t.is_floating_point())
            {
                return Err(DistError::Invalid(format!(
                    "all_reduce mean needs floating-point tensors, got {:?}",
                    t.kind()
                )));
            }
        }
        let buckets = bucket::plan(tensors, self.options.bucket_bytes)?;
        let mut started = Vec::with_capacity(buckets.len());
        for bucket in &buckets {
            let flat = bucket.flatten(tensors);
            let mut work = std::ptr::null_mut();
            // SAFETY: valid group; flat is a live tensor kept alive until the work is done.
            let error = unsafe {
                ffi::pk_group_allreduce_start(
                    self.raw,
                    ffi::tensor_ptr(&flat),
                    op.code(),
                    &mut work,
                )
            };
            ffi::check(error).map_err(|e| self.diagnose(OP, e))?;
            started.push((bucket, flat, Work(work)));
        }
        for (bucket, flat, work) in started {
            work.wait().map_err(|e| self.diagnose(OP, e))?;
            if op == ReduceOp::Mean {
                tch::no_grad(|| {
                    let _ = flat.detach().g_div_scalar_(self.world_size as f64);
                });
            }
            bucket.unflatten(&flat, tensors);
        }
        Ok(())
    }

    /// The sum of every rank's `input`, as a new tensor that autograd tracks: its backward
    /// sums the incoming gradients across the ranks too (the shim's `AllReduceSum`, the rule
    /// of torch.distributed.nn.functional.all_reduce with SUM). The building block of
    /// SyncBatchNorm's statistics. Blocking; every rank calls it with a tensor of the same
    /// shape and dtype, and runs the backward through it, in the same order.
    ///
    /// A failure in the forward is diagnosed like any collective's; one in the backward
    /// surfaces as the error of `Tensor::f_backward`, which [`Self::explain_failure`] turns
    /// into the same diagnosis.
    pub fn all_reduce_sum_autograd(&self, input: &Tensor) -> Result<Tensor> {
        const OP: &str = "all_reduce (autograd)";
        self.check_usable(OP)?;
        let out = Tensor::new();
        // SAFETY: valid group; `input` and `out` are live tch tensors; the shim replaces the
        // tensor `out` points at (an undefined one) with the result.
        let error = unsafe {
            ffi::pk_allreduce_sum_autograd(self.raw, ffi::tensor_ptr(input), ffi::tensor_ptr(&out))
        };
        ffi::check(error).map_err(|e| self.diagnose(OP, e))?;
        Ok(out)
    }

    /// The group's diagnosis of a collective that failed outside its own calls (the backward
    /// of [`Self::all_reduce_sum_autograd`], run by autograd): names the lost ranks, and breaks
    /// the group as a failed collective does.
    pub fn explain_failure(&self, op: &str, detail: String) -> DistError {
        self.diagnose(op, detail)
    }

    /// Copies rank `root`'s `tensors` into every rank's, in place (bucketed like
    /// `all_reduce`). Every rank passes tensors of the same shapes and dtypes in the same order.
    pub fn broadcast(&self, tensors: &[Tensor], root: usize) -> Result<()> {
        const OP: &str = "broadcast";
        self.check_usable(OP)?;
        if root >= self.world_size {
            return Err(DistError::Invalid(format!(
                "broadcast from rank {root}, but the group has {} ranks",
                self.world_size
            )));
        }
        let buckets = bucket::plan(tensors, self.options.bucket_bytes)?;
        let mut started = Vec::with_capacity(buckets.len());
        for bucket in &buckets {
            let flat = bucket.flatten(tensors);
            let mut work = std::ptr::null_mut();
            // SAFETY: valid group; flat is a live tensor kept alive until the work is done.
            let error = unsafe {
                ffi::pk_group_broadcast_start(
                    self.raw,
                    ffi::tensor_ptr(&flat),
                    root as i32,
                    &mut work,
                )
            };
            ffi::check(error).map_err(|e| self.diagnose(OP, e))?;
            started.push((bucket, flat, Work(work)));
        }
        for (bucket, flat, work) in started {
            work.wait().map_err(|e| self.diagnose(OP, e))?;
            if self.rank != root {
                bucket.unflatten(&flat, tensors);
            }
        }
        Ok(())
    }

    /// Every rank's `values`, in rank order (the slices may differ in length).
    pub fn all_gather_f64(&self, values: &[f64]) -> Result<Vec<Vec<f64>>> {
        self.all_gather(values, Kind::Double)
    }

    /// Every rank's `values`, in rank order (the slices may differ in length).
    pub fn all_gather_i64(&self, values: &[i64]) -> Result<Vec<Vec<i64>>> {
        self.all_gather(values, Kind::Int64)
    }

    fn all_gather<T>(&self, values: &[T], kind: Kind) -> Result<Vec<Vec<T>>>
    where
        T: tch::kind::Element + Copy + Default,
    {
        let lengths = self.all_gather_tensor(&Tensor::from_slice(&[values.len() as i64]))?;
        let lengths: Vec<usize> = lengths
            .iter()
            .map(|t| t.int64_value(&[0]) as usize)
            .collect();
        let longest = lengths.iter().copied().max().unwrap_or(0).max(1);
        let mut padded = values.to_vec();
        padded.resize(longest, T::default());
        let gathered = self.all_gather_tensor(&Tensor::from_slice(&padded).to_kind(kind))?;
        let mut out = Vec::with_capacity(gathered.len());
        for (tensor, len) in gathered.iter().zip(lengths) {
            let all: Vec<T> = Vec::<T>::try_from(tensor)
                .map_err(|e| DistError::Invalid(format!("all_gather: {e}")))?;
            out.push(all[..len].to_vec());
        }
        Ok(out)
    }

    fn all_gather_tensor(&self, input: &Tensor) -> Result<Vec<Tensor>> {
        const OP: &str = "all_gather";
        self.check_usable(OP)?;
        let device = match self.backend {
            Backend::Gloo => Device::Cpu,
            Backend::Nccl { device } => Device::Cuda(device),
        };
        let input = input.to_device(device).contiguous();
        let outputs: Vec<Tensor> = (0..self.world_size).map(|_| input.zeros_like()).collect();
        let pointers: Vec<_> = outputs.iter().map(ffi::tensor_ptr).collect();
        let mut work = std::ptr::null_mut();
        // SAFETY: valid group; input and outputs outlive the work, which is awaited here.
        let error = unsafe {
            ffi::pk_group_allgather_start(
                self.raw,
                ffi::tensor_ptr(&input),
                pointers.as_ptr(),
                pointers.len(),
                &mut work,
            )
        };
        ffi::check(error).map_err(|e| self.diagnose(OP, e))?;
        Work(work).wait().map_err(|e| self.diagnose(OP, e))?;
        Ok(outputs
            .into_iter()
            .map(|t| t.to_device(Device::Cpu))
            .collect())
    }

    /// Waits until every rank gets here (within the collective timeout).
    pub fn barrier(&self) -> Result<()> {
        self.barrier_within(self.options.collective_timeout)
    }

    /// A barrier with its own timeout: for ranks that wait while rank 0 alone validates or
    /// writes a checkpoint, which may take longer than any collective should.
    pub fn barrier_within(&self, timeout: Duration) -> Result<()> {
        const OP: &str = "barrier";
        self.check_usable(OP)?;
        let mut work = std::ptr::null_mut();
        // SAFETY: valid group and out-pointer.
        let error = unsafe { ffi::pk_group_barrier_start(self.raw, millis(timeout), &mut work) };
        ffi::check(error).map_err(|e| self.diagnose(OP, e))?;
        Work(work).wait().map_err(|e| self.diagnose(OP, e))
    }

    /// Leaves the group, telling the other ranks why: a rank that stops on its own error
    /// calls this so that the others report that error instead of "rank N is lost".
    pub fn leave(mut self, reason: &str) {
        self.leave_note(reason);
    }

    /// Leaves the group at the end of a run. Call it once every rank has finished its
    /// collectives (e.g. after a final `barrier`): rank 0 may host the store, which goes with it.
    pub fn shutdown(mut self) {
        self.leave_note("finished");
    }

    fn leave_note(&mut self, reason: &str) {
        if !self.left {
            self.left = true;
            let _ = self.control.set(
                &heartbeat::exit_key(&self.prefix, self.rank),
                reason.as_bytes(),
            );
        }
    }

    fn check_usable(&self, op: &str) -> Result<()> {
        match self.broken.borrow().as_ref() {
            Some(first) => Err(DistError::Collective {
                op: op.to_string(),
                detail: format!("the group is broken by an earlier failure ({first})"),
            }),
            None => Ok(()),
        }
    }

    /// Turns a failed collective into an error naming the lost ranks, and breaks the group.
    fn diagnose(&self, op: &str, detail: String) -> DistError {
        let found = heartbeat::diagnose(
            &self.control,
            &self.prefix,
            self.rank,
            self.world_size,
            self.options.heartbeat_interval,
            self.store_host_rank,
        );
        let backend = self.backend.name();
        let error = if !found.lost.is_empty() {
            DistError::PeerLost {
                op: op.to_string(),
                lost: found.lost,
                detail: format!("{backend}: {detail}"),
            }
        } else {
            let why = match found.store_error {
                Some(store) => format!("the rendezvous store does not answer either ({store})"),
                None => "every other rank still has a heartbeat: one may be stuck, or the ranks \
                         called different collectives"
                    .to_string(),
            };
            DistError::Collective {
                op: op.to_string(),
                detail: format!("{backend}: {detail}; {why}"),
            }
        };
        *self.broken.borrow_mut() = Some(error.to_string());
        error
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.leave_note("stopped (its process group was dropped without shutdown)");
        drop(self.heartbeat.take());
        if !self.raw.is_null() {
            // SAFETY: self.raw came from pk_*_new and is freed once.
            unsafe { ffi::pk_group_free(self.raw) };
            self.raw = std::ptr::null_mut();
        }
    }
}

/// Adds what a bare c10d message leaves out: who hosts the store and what to check.
fn explain_rendezvous(detail: &str, env: &DistEnv) -> String {
    let first_line = detail.lines().next().unwrap_or(detail).trim();
    let role = match (env.store_host, env.hosts_store()) {
        (StoreHost::Agent, _) => "the store is torchrun's (TORCHELASTIC_USE_AGENT_STORE)",
        (StoreHost::Rank0, true) => "this rank (0) hosts the store and waits for every rank",
        (StoreHost::Rank0, false) => "rank 0 hosts the store",
    };
    format!(
        "{first_line} [rank {} of {}; {role}]",
        env.rank, env.world_size
    )
}
