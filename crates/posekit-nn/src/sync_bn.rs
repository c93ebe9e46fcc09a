//! SyncBatchNorm: training-mode BatchNorm whose batch statistics are those of the whole
//! data-parallel group's batch, not of this rank's share of it.
//!
//! posekit-nn knows no process group (posekit-dist depends on nothing here and the reverse
//! holds too): the trainer injects what is needed, a differentiable sum across the ranks, as
//! a [`BatchNormSync`], for the duration of a training forward ([`with_batch_norm_sync`]).
//! Every [`crate::blocks::BatchNorm`] run in training mode inside that scope synchronises;
//! outside it (one process, evaluation, inference) BatchNorm is PyTorch's plain
//! `nn.BatchNorm2d`, bit for bit.
//!
//! What one layer computes reproduces `torch.nn.SyncBatchNorm` (torch/nn/modules/_functions.py,
//! `SyncBatchNorm.forward`/`backward`):
//!
//! 1. each rank's per-channel count `n_r`, mean `m_r` and sum of squared deviations
//!    `M2_r = n_r * var_r` (PyTorch: `torch.batch_norm_stats`);
//! 2. the ranks' rows gathered into one `[world, 3, C]` table, every rank the same (PyTorch:
//!    `all_gather` of mean, invstd and count). Here each rank puts its row into a zero table
//!    at its own index and the tables are summed with the differentiable all-reduce, which
//!    is an all-gather whose backward hands each rank the sum of every rank's gradient of its
//!    row;
//! 3. the group's mean and variance by Chan et al.'s pairwise combination,
//!    `N = sum n_r`, `mean = sum n_r m_r / N`, `M2 = sum M2_r + sum n_r (m_r - mean)^2`
//!    (PyTorch: `batch_norm_gather_stats_with_counts`, the same Welford-style merge; no
//!    `E[x^2] - E[x]^2` cancellation);
//! 4. normalisation with the biased variance `M2 / N`, then the affine `weight`, `bias`
//!    (PyTorch: `batch_norm_elemt`);
//! 5. running statistics updated with momentum from the mean and the *unbiased* variance
//!    `M2 / (N - 1)`, as `batch_norm_gather_stats_with_counts` does, identically on every rank.
//!
//! The backward is autograd's, through step 2's all-reduce: the gradient reaching rank r's
//! input is d(sum of all ranks' losses)/dx_r, which is what PyTorch's hand-written backward
//! computes by all-reducing `sum_dy` and `sum_dy_xmu`; `weight` and `bias` get this rank's
//! own gradient, and the trainer's gradient averaging then divides by the world size, as DDP
//! does. So with per-rank losses that are means over equal per-rank batches, W ranks with
//! SyncBatchNorm take the step one process takes on the whole batch with plain BatchNorm.

use std::cell::RefCell;

use tch::{nn, Kind, Tensor};

/// What SyncBatchNorm needs from the data-parallel group.
pub trait BatchNormSync {
    /// This rank's index in the group.
    fn rank(&self) -> usize;
    /// The number of ranks.
    fn world_size(&self) -> usize;
    /// The sum of every rank's `x` (the same shape and dtype on all ranks), tracked by
    /// autograd: its backward sums the incoming gradients across the ranks too. Blocking; every
    /// rank calls it in the same order.
    fn all_reduce_sum(&self, x: &Tensor) -> Result<Tensor, String>;
}

struct Scope {
    /// Lifetime erased: valid while `with_batch_norm_sync`'s frame is, which is the only time
    /// the scope is installed.
    sync: *const (dyn BatchNormSync + 'static),
    contributes: bool,
    error: Option<String>,
}

thread_local! {
    static SCOPE: RefCell<Option<Scope>> = const { RefCell::new(None) };
}

/// Restores the previous scope, also when `f` panics.
struct Restore(Option<Scope>);

impl Drop for Restore {
    fn drop(&mut self) {
        let previous = self.0.take();
        SCOPE.with(|s| *s.borrow_mut() = previous);
    }
}

/// Runs `f` (a training forward) with every training-mode [`crate::blocks::BatchNorm`]
/// synchronised through `sync`.
///
/// `contributes`: whether this rank's batch counts. A rank that has no batch in a step must
/// still join every collective of the others, so it runs the forward and backward on a
/// stand-in batch with `contributes = false` (its count, mean and squared deviations enter the
/// table as zeros, still tracked by autograd so that its backward joins the all-reduces) and
/// scales its loss by zero.
///
/// Returns `f`'s result and the first failure of a collective, if any: a BatchNorm whose sum
/// failed normalises with this rank's own statistics so that the forward can finish, and the
/// caller must discard the step and report the error.
pub fn with_batch_norm_sync<R>(
    sync: &dyn BatchNormSync,
    contributes: bool,
    f: impl FnOnce() -> R,
) -> (R, Option<String>) {
    // SAFETY: the pointer is only dereferenced by `current` while this function's frame is
    // alive (the guard uninstalls it on return and on unwind), so erasing the lifetime is sound.
    let sync: *const (dyn BatchNormSync + '_) = sync;
    let sync: *const (dyn BatchNormSync + 'static) = unsafe { std::mem::transmute(sync) };
    let previous = SCOPE.with(|s| {
        s.borrow_mut().replace(Scope {
            sync,
            contributes,
            error: None,
        })
    });
    let restore = Restore(previous);
    let out = f();
    let error = SCOPE.with(|s| s.borrow_mut().as_mut().and_then(|scope| scope.error.take()));
    drop(restore);
    (out, error)
}

/// The training-mode forward of `bn` inside a [`with_batch_norm_sync`] scope; `None` outside
/// one (the caller then runs plain BatchNorm).
pub(crate) fn forward_in_scope(
    bn: &nn::BatchNorm,
    xs: &Tensor,
    eps: f64,
    momentum: f64,
) -> Option<Tensor> {
    SCOPE.with(|s| {
        let mut scope = s.borrow_mut();
        let scope = scope.as_mut()?;
        if scope.error.is_some() {
            return None;
        }
        // SAFETY: see `with_batch_norm_sync`.
        let sync = unsafe { &*scope.sync };
        match sync_forward(bn, xs, eps, momentum, sync, scope.contributes) {
            Ok(y) => Some(y),
            Err(e) => {
                scope.error = Some(e);
                None
            }
        }
    })
}

/// Steps 1 to 5 of the module documentation.
fn sync_forward(
    bn: &nn::BatchNorm,
    xs: &Tensor,
    eps: f64,
    momentum: f64,
    sync: &dyn BatchNormSync,
    contributes: bool,
) -> Result<Tensor, String> {
    let size = xs.size();
    if size.len() < 2 {
        return Err(format!(
            "SyncBatchNorm: input of shape {size:?} has no channels"
        ));
    }
    let channels = size[1];
    let (world, rank) = (sync.world_size() as i64, sync.rank() as i64);
    let dims: Vec<i64> = (0..size.len() as i64).filter(|&d| d != 1).collect();
    // 1. This rank's statistics (zeros, still on the graph, for a stand-in batch).
    let count = if contributes {
        size.iter().product::<i64>() / channels.max(1)
    } else {
        0
    };
    let (var, mean) = xs.var_mean_correction(dims.as_slice(), 0, false);
    let (mean, m2) = if count > 0 {
        (mean, var * count as f64)
    } else {
        (mean * 0.0, var * 0.0)
    };
    let (kind, device) = (mean.kind(), mean.device());
    let counts = Tensor::full([channels], count as f64, (kind, device));
    // 2. The table of every rank's row.
    let width = 3 * channels;
    let zeros = |n: i64| Tensor::zeros([n * width], (kind, device));
    let padded = Tensor::cat(&[zeros(rank), counts, mean, m2, zeros(world - rank - 1)], 0);
    let table = sync.all_reduce_sum(&padded)?.reshape([world, 3, channels]);
    let counts = table.select(1, 0);
    let means = table.select(1, 1);
    let m2s = table.select(1, 2);
    // 3. The group's mean and squared deviations.
    let n = counts.select(1, 0).sum(Kind::Double).double_value(&[]);
    if n < 1.0 {
        return Err("SyncBatchNorm: no rank has a sample".to_string());
    }
    let global_mean = (&counts * &means).sum_dim_intlist(0, false, kind) / n;
    let spread = (&means - global_mean.unsqueeze(0)).square() * &counts;
    let m2 = m2s.sum_dim_intlist(0, false, kind) + spread.sum_dim_intlist(0, false, kind);
    // 5. Running statistics, from the unbiased variance (PyTorch refuses a single value per
    // channel in training; with one, the variance update is skipped rather than divided by 0).
    tch::no_grad(|| {
        let mut running_mean = bn.running_mean.shallow_clone();
        let updated = &running_mean * (1.0 - momentum) + global_mean.detach() * momentum;
        running_mean.copy_(&updated);
        if n > 1.0 {
            let mut running_var = bn.running_var.shallow_clone();
            let unbiased = m2.detach() / (n - 1.0);
            let updated = &running_var * (1.0 - momentum) + unbiased * momentum;
            running_var.copy_(&updated);
        }
    });
    // 4. Normalise with the biased variance, then the affine, as one multiply-add per value:
    // `x * (weight * invstd) + (bias - mean * weight * invstd)`, which is `batch_norm_elemt`'s
    // `(x - mean) * invstd * weight + bias` with one pass over the values fewer.
    let inv_std = (m2 / n + eps).rsqrt();
    let scale = match &bn.ws {
        Some(w) => w * &inv_std,
        None => inv_std,
    };
    let shift = match &bn.bs {
        Some(b) => b - &global_mean * &scale,
        None => -(&global_mean * &scale),
    };
    let mut shape = vec![1i64; size.len()];
    shape[1] = channels;
    Ok(shift
        .reshape(shape.as_slice())
        .addcmul(xs, &scale.reshape(shape.as_slice())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::ModuleT;
    use tch::Device;

    /// A group of one: the sum is the identity (and so is its backward).
    struct Alone;

    impl BatchNormSync for Alone {
        fn rank(&self) -> usize {
            0
        }
        fn world_size(&self) -> usize {
            1
        }
        fn all_reduce_sum(&self, x: &Tensor) -> Result<Tensor, String> {
            Ok(x * 1.0)
        }
    }

    fn max_rel(a: &Tensor, b: &Tensor) -> f64 {
        let scale = b.abs().max().double_value(&[]).max(1e-12);
        (a - b).abs().max().double_value(&[]) / scale
    }

    /// The synchronised computation, on a group of one, is plain training-mode BatchNorm:
    /// outputs, input and parameter gradients, running statistics (within float rounding).
    #[test]
    fn a_group_of_one_computes_plain_batch_norm() {
        tch::manual_seed(3);
        let make = || {
            let vs = nn::VarStore::new(Device::Cpu);
            let bn = crate::blocks::batch_norm(vs.root() / "bn", 5);
            tch::no_grad(|| {
                bn.ws
                    .as_ref()
                    .unwrap()
                    .shallow_clone()
                    .copy_(&Tensor::from_slice(&[0.5f32, 1.0, 1.5, 2.0, -1.0]));
                bn.bs
                    .as_ref()
                    .unwrap()
                    .shallow_clone()
                    .copy_(&Tensor::from_slice(&[0.1f32, -0.2, 0.3, 0.0, 1.0]));
            });
            (vs, bn)
        };
        // An offset far from zero: the combination must not lose the variance to cancellation.
        let x = (Tensor::randn([4, 5, 3, 2], (Kind::Float, Device::Cpu)) * 0.1 + 3.0)
            .set_requires_grad(true);
        let weights = Tensor::randn([4, 5, 3, 2], (Kind::Float, Device::Cpu));
        let (_plain_vs, plain) = make();
        let y_plain = plain.forward_t(&x, true);
        (&y_plain * &weights).sum(Kind::Float).backward();
        let gx_plain = x.grad().copy();
        let _ = x.grad().zero_();
        let (_sync_vs, synced) = make();
        let (y_sync, error) = with_batch_norm_sync(&Alone, true, || synced.forward_t(&x, true));
        assert!(error.is_none());
        (&y_sync * &weights).sum(Kind::Float).backward();
        assert!(
            max_rel(&y_sync, &y_plain) < 1e-4,
            "{}",
            max_rel(&y_sync, &y_plain)
        );
        assert!(max_rel(&x.grad(), &gx_plain) < 1e-3);
        for (a, b) in [
            (&synced.running_mean, &plain.running_mean),
            (&synced.running_var, &plain.running_var),
            (
                &synced.ws.as_ref().unwrap().grad(),
                &plain.ws.as_ref().unwrap().grad(),
            ),
            (
                &synced.bs.as_ref().unwrap().grad(),
                &plain.bs.as_ref().unwrap().grad(),
            ),
        ] {
            assert!(max_rel(a, b) < 1e-4, "{a} vs {b}");
        }
        // Outside a scope, and in eval mode inside one, BatchNorm is the plain one.
        let z = synced.forward_t(&x, false);
        let (z_scoped, _) = with_batch_norm_sync(&Alone, true, || synced.forward_t(&x, false));
        assert_eq!(max_rel(&z, &z_scoped), 0.0);
    }
}
