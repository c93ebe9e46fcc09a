//! What data-parallel training needs from a group, on a tch `VarStore`: the same starting
//! weights on every rank, and gradients averaged across ranks after each backward.
//!
//! DistributedDataParallel does both (torch/nn/parallel/distributed.py: `_sync_module_states`
//! broadcasts rank 0's parameters and buffers at construction; the reducer all-reduces the
//! gradients in buckets and divides by the world size). Here the trainer calls them
//! explicitly: `broadcast_var_store` once, `GradAverager::average` between backward and the
//! optimizer step.

use tch::nn::VarStore;
use tch::Tensor;

use crate::error::{DistError, Result};
use crate::ffi;
use crate::group::{ProcessGroup, ReduceOp};

/// Variables sorted by name: the order every rank agrees on without talking.
fn sorted(vs: &VarStore, trainable_only: bool) -> Vec<(String, Tensor)> {
    let mut named: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(_, t)| !trainable_only || t.requires_grad())
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named
}

/// FNV-1a over names, shapes and dtypes: equal on two ranks iff (barring a collision) they
/// hold the same variables.
fn fingerprint(named: &[(String, Tensor)]) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for (name, tensor) in named {
        eat(name.as_bytes());
        eat(&[0]);
        for dim in tensor.size() {
            eat(&dim.to_le_bytes());
        }
        eat(format!("{:?}", tensor.kind()).as_bytes());
    }
    hash as i64
}

/// Checks that every rank holds the same variables; a rank with another model or config
/// would otherwise exchange garbage or hang.
fn verify_same_variables(
    group: &ProcessGroup,
    named: &[(String, Tensor)],
    what: &str,
) -> Result<()> {
    let numel: i64 = named.iter().map(|(_, t)| t.numel() as i64).sum();
    let mine = [fingerprint(named), named.len() as i64, numel];
    let all = group.all_gather_i64(&mine)?;
    let differing: Vec<String> = all
        .iter()
        .enumerate()
        .filter(|(_, theirs)| theirs[..] != all[0][..])
        .map(|(rank, theirs)| {
            format!(
                "rank {rank} has {} tensors / {} values",
                theirs[1], theirs[2]
            )
        })
        .collect();
    if differing.is_empty() {
        return Ok(());
    }
    Err(DistError::Invalid(format!(
        "the ranks do not hold the same {what}: rank 0 has {} tensors / {} values, {} \
         (every rank must build the same model from the same config)",
        all[0][1],
        all[0][2],
        differing.join(", ")
    )))
}

/// Makes every rank's variables (parameters and buffers, such as BatchNorm's running
/// statistics) equal to rank `root`'s. A collective: every rank calls it with the same model.
pub fn broadcast_var_store(group: &ProcessGroup, vs: &VarStore, root: usize) -> Result<()> {
    let named = sorted(vs, false);
    verify_same_variables(group, &named, "variables")?;
    let tensors: Vec<Tensor> = named.into_iter().map(|(_, t)| t).collect();
    group.broadcast(&tensors, root)
}

/// Averages the gradients of a VarStore's trainable variables across the ranks.
pub struct GradAverager {
    params: Vec<Tensor>,
}

impl GradAverager {
    /// Takes the trainable variables of `vs` (sorted by name) and checks that every rank has
    /// the same ones. A collective: every rank constructs it at the same point.
    pub fn new(group: &ProcessGroup, vs: &VarStore) -> Result<GradAverager> {
        let named = sorted(vs, true);
        verify_same_variables(group, &named, "trainable variables")?;
        Ok(GradAverager {
            params: named.into_iter().map(|(_, t)| t).collect(),
        })
    }

    /// Replaces every gradient by its mean over the ranks (bucketed all-reduce, sum then
    /// divide). A parameter that took no part in this rank's loss counts as a zero gradient,
    /// so that every rank reduces the same list.
    pub fn average(&self, group: &ProcessGroup) -> Result<()> {
        for param in &self.params {
            // SAFETY: param is a live tensor; the shim only reads and sets its gradient.
            ffi::check(unsafe { ffi::pk_tensor_ensure_grad(ffi::tensor_ptr(param)) })
                .map_err(DistError::Invalid)?;
        }
        let grads: Vec<Tensor> = self.params.iter().map(Tensor::grad).collect();
        group.all_reduce(&grads, ReduceOp::Mean)
    }

    /// Number of parameter tensors averaged.
    pub fn len(&self) -> usize {
        self.params.len()
    }

    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// Bytes that one `average` all-reduces.
    pub fn bytes(&self) -> usize {
        self.params
            .iter()
            .map(|p| p.numel() * p.kind().elt_size_in_bytes())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn fingerprint_sees_names_shapes_and_dtypes() {
        let t = |shape: &[i64], kind| Tensor::zeros(shape, (kind, Device::Cpu));
        let base = vec![("a".to_string(), t(&[2, 3], Kind::Float))];
        let renamed = vec![("b".to_string(), t(&[2, 3], Kind::Float))];
        let reshaped = vec![("a".to_string(), t(&[3, 2], Kind::Float))];
        let retyped = vec![("a".to_string(), t(&[2, 3], Kind::Double))];
        let f = fingerprint(&base);
        assert_eq!(
            f,
            fingerprint(&[("a".to_string(), t(&[2, 3], Kind::Float))])
        );
        for other in [renamed, reshaped, retyped] {
            assert_ne!(f, fingerprint(&other));
        }
    }

    #[test]
    fn variables_are_taken_in_name_order() {
        let vs = VarStore::new(Device::Cpu);
        let root = vs.root();
        let _ = root.zeros("z", &[1]);
        let _ = root.zeros("a", &[1]);
        let _ = root.zeros_no_train("m", &[1]);
        let names: Vec<String> = sorted(&vs, false).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["a", "m", "z"]);
        let trainable: Vec<String> = sorted(&vs, true).into_iter().map(|(n, _)| n).collect();
        assert_eq!(trainable, ["a", "z"]);
    }
}
