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

use crate::bucket;
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
///
/// The gradients are copied into a few persistent flat buffers (one per bucket), each buffer
/// is all-reduced in place, and the means are copied back. DistributedDataParallel can skip
/// the two copies by making the gradients views into its buckets (`gradient_as_bucket_view`),
/// but then nothing may `detach_()` a gradient, and tch's `Tensor::zero_grad` does; so the
/// copies stay until the optimizers zero gradients without detaching them.
pub struct GradAverager {
    params: Vec<Tensor>,
    /// One flat buffer per bucket, allocated once.
    buffers: Vec<Tensor>,
    /// Each parameter's slot in its buffer, shaped like the parameter.
    slots: Vec<Tensor>,
}

impl GradAverager {
    /// Takes the trainable variables of `vs` (sorted by name), checks that every rank has the
    /// same ones, and allocates bucket buffers of the group's bucket size. A collective: every
    /// rank constructs it at the same point.
    pub fn new(group: &ProcessGroup, vs: &VarStore) -> Result<GradAverager> {
        let named = sorted(vs, true);
        verify_same_variables(group, &named, "trainable variables")?;
        let params: Vec<Tensor> = named.into_iter().map(|(_, t)| t).collect();
        let buckets = bucket::plan(&params, group.bucket_bytes())?;
        let mut slots: Vec<Option<Tensor>> = params.iter().map(|_| None).collect();
        let mut buffers = Vec::with_capacity(buckets.len());
        for b in &buckets {
            let buffer = Tensor::zeros([b.numel], (b.kind, b.device));
            let mut offset = 0;
            for &i in &b.members {
                let n = params[i].numel() as i64;
                slots[i] = Some(
                    buffer
                        .narrow(0, offset, n)
                        .view(params[i].size().as_slice()),
                );
                offset += n;
            }
            buffers.push(buffer);
        }
        let slots = slots.into_iter().flatten().collect();
        Ok(GradAverager {
            params,
            buffers,
            slots,
        })
    }

    /// Replaces every gradient by its mean over the ranks (all-reduce sum, then divide). A
    /// parameter that took no part in this rank's loss (no gradient) contributes zeros, and
    /// gets the mean as its gradient.
    pub fn average(&self, group: &ProcessGroup) -> Result<()> {
        let grads: Vec<Tensor> = self.params.iter().map(Tensor::grad).collect();
        tch::no_grad(|| {
            for (grad, slot) in grads.iter().zip(&self.slots) {
                let mut slot = slot.shallow_clone();
                if grad.defined() {
                    slot.copy_(grad);
                } else {
                    let _ = slot.zero_();
                }
            }
        });
        group.all_reduce(&self.buffers, ReduceOp::Mean)?;
        for ((param, grad), slot) in self.params.iter().zip(&grads).zip(&self.slots) {
            if grad.defined() {
                tch::no_grad(|| grad.shallow_clone().copy_(slot));
            } else {
                let mean = slot.copy();
                // SAFETY: both are live tensors; the shim checks shape, dtype and device.
                ffi::check(unsafe {
                    ffi::pk_tensor_set_grad(ffi::tensor_ptr(param), ffi::tensor_ptr(&mean))
                })
                .map_err(DistError::Invalid)?;
            }
        }
        Ok(())
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
        self.buffers
            .iter()
            .map(|b| b.numel() * b.kind().elt_size_in_bytes())
            .sum()
    }

    /// Number of flat buffers (collectives per `average`).
    pub fn buckets(&self) -> usize {
        self.buffers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{free_port, DistEnv, GlooDevice, GroupOptions};
    use tch::{Device, Kind};

    /// A group of one rank in this process (its own store on a free port).
    fn single_rank_group(bucket_bytes: usize) -> ProcessGroup {
        let options = GroupOptions {
            bucket_bytes,
            gloo_device: GlooDevice::Hostname("127.0.0.1".into()),
            ..GroupOptions::default()
        };
        ProcessGroup::init(&DistEnv::single(free_port().unwrap()), &options).unwrap()
    }

    #[test]
    fn gradients_are_averaged_through_persistent_bucket_buffers() {
        let group = single_rank_group(64);
        let vs = VarStore::new(Device::Cpu);
        let root = vs.root();
        let a = root.randn("a", &[4, 5], 0.0, 1.0); // 80 bytes: a bucket of its own
        let b = root.randn("b", &[3], 0.0, 1.0);
        let c = root.randn("c", &[2, 2], 0.0, 1.0);
        let _frozen = root.zeros_no_train("frozen", &[7]);
        let averager = GradAverager::new(&group, &vs).unwrap();
        let expected = (averager.len(), averager.buckets(), averager.bytes());
        assert_eq!(expected, (3, 2, (20 + 3 + 4) * 4));

        // b takes no part in the loss: it has no gradient, and gets the mean of zeros.
        ((&a * 3.0).sum(Kind::Float) + (&c * &c).sum(Kind::Float)).backward();
        assert!(!b.grad().defined());
        let (want_a, want_c) = (a.grad().copy(), c.grad().copy());
        averager.average(&group).unwrap();
        assert!(a.grad().equal(&want_a) && c.grad().equal(&want_c));
        assert!(b
            .grad()
            .equal(&Tensor::zeros([3], (Kind::Float, Device::Cpu))));
        // b and c share the second buffer, in name order; the gradients are not views of it.
        assert!(averager.buffers[1]
            .narrow(0, 3, 4)
            .equal(&c.grad().view([-1])));
        assert_ne!(averager.slots[2].data_ptr(), c.grad().data_ptr());
        // tch's zero_grad (which detaches the gradient in place) still works on them.
        for mut p in [a.shallow_clone(), b.shallow_clone(), c.shallow_clone()] {
            p.zero_grad();
        }
        group.shutdown();
    }

    #[test]
    fn a_single_rank_group_broadcasts_and_gathers_to_itself() {
        let group = single_rank_group(1 << 20);
        let t = vec![
            Tensor::from_slice(&[1.5f32, 2.5]),
            Tensor::from_slice(&[7i64]),
        ];
        group.broadcast(&t, 0).unwrap();
        group.all_reduce(&t[..1], ReduceOp::Mean).unwrap();
        assert!(t[0].equal(&Tensor::from_slice(&[1.5f32, 2.5])));
        assert_eq!(group.all_gather_i64(&[4, 2]).unwrap(), vec![vec![4, 2]]);
        let err = group
            .all_reduce(&t[1..], ReduceOp::Mean)
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs floating-point tensors"), "{err}");
        let err = group.broadcast(&t, 1).unwrap_err().to_string();
        assert!(
            err.contains("broadcast from rank 1, but the group has 1 ranks"),
            "{err}"
        );
        group.barrier().unwrap();
        group.shutdown();
    }

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
