//! Buckets: many small tensors travel as a few large flat buffers, because each collective has
//! a fixed cost (a round of messages) and a gradient list has hundreds of tensors.
//!
//! The assignment follows DistributedDataParallel's (torch/csrc/distributed/c10d/reducer.cpp,
//! `compute_bucket_assignment_by_size`): tensors go, in order, into the open bucket of their
//! dtype and device until it holds at least the cap, and a bucket never mixes dtypes or
//! devices. The cap defaults to DDP's `bucket_cap_mb=25`.

use tch::{Device, Kind, Tensor};

use crate::error::{DistError, Result};

/// DistributedDataParallel's default bucket size, 25 MiB.
pub const DEFAULT_BUCKET_BYTES: usize = 25 * 1024 * 1024;

/// A set of tensors of one dtype and device that travel as one flat buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    /// Indices into the tensor list, in list order.
    pub members: Vec<usize>,
    pub numel: i64,
    pub kind: Kind,
    pub device: Device,
}

/// Groups `tensors` into buckets of about `cap_bytes` (a tensor larger than the cap gets a
/// bucket of its own). Buckets are ordered by their first tensor.
pub fn plan(tensors: &[Tensor], cap_bytes: usize) -> Result<Vec<Bucket>> {
    let mut open: Vec<(Bucket, usize)> = Vec::new();
    let mut closed: Vec<Bucket> = Vec::new();
    for (index, tensor) in tensors.iter().enumerate() {
        if !tensor.defined() {
            return Err(DistError::Invalid(format!("tensor {index} is undefined")));
        }
        let (kind, device) = (tensor.kind(), tensor.device());
        let numel = tensor.numel() as i64;
        let bytes = tensor.numel() * kind.elt_size_in_bytes();
        let slot = match open
            .iter()
            .position(|(b, _)| b.kind == kind && b.device == device)
        {
            Some(slot) => slot,
            None => {
                let empty = Bucket {
                    members: Vec::new(),
                    numel: 0,
                    kind,
                    device,
                };
                open.push((empty, 0));
                open.len() - 1
            }
        };
        let (bucket, filled) = &mut open[slot];
        bucket.members.push(index);
        bucket.numel += numel;
        *filled += bytes;
        if *filled >= cap_bytes {
            closed.push(open.remove(slot).0);
        }
    }
    closed.extend(open.into_iter().map(|(b, _)| b));
    closed.sort_by_key(|b| b.members[0]);
    Ok(closed)
}

impl Bucket {
    /// The bucket's contents as one contiguous 1-D tensor. A bucket of one contiguous tensor
    /// is that tensor itself (flattened view, same storage), so nothing is copied.
    pub fn flatten(&self, tensors: &[Tensor]) -> Tensor {
        tch::no_grad(|| {
            if let [only] = self.members[..] {
                let t = tensors[only].detach();
                if t.is_contiguous() {
                    return t.view([-1]);
                }
            }
            let parts: Vec<Tensor> = self
                .members
                .iter()
                .map(|&i| tensors[i].detach().reshape([-1]))
                .collect();
            Tensor::cat(&parts, 0)
        })
    }

    /// Copies a flat buffer made by `flatten` back into the bucket's tensors.
    pub fn unflatten(&self, flat: &Tensor, tensors: &[Tensor]) {
        tch::no_grad(|| {
            let mut offset = 0i64;
            for &i in &self.members {
                let mut target = tensors[i].detach();
                let n = target.numel() as i64;
                let part = flat.narrow(0, offset, n);
                // A one-tensor bucket may be the tensor's own storage already.
                if part.data_ptr() != target.data_ptr() {
                    target.copy_(&part.view_as(&target));
                }
                offset += n;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn floats(n: i64) -> Tensor {
        Tensor::arange(n, (Kind::Float, Device::Cpu))
    }

    #[test]
    fn fills_buckets_up_to_the_cap_in_order() {
        // 4-byte floats, cap 40 bytes = 10 floats.
        let tensors = vec![floats(4), floats(4), floats(4), floats(30), floats(1)];
        let buckets = plan(&tensors, 40).unwrap();
        let members: Vec<Vec<usize>> = buckets.iter().map(|b| b.members.clone()).collect();
        assert_eq!(members, vec![vec![0, 1, 2], vec![3], vec![4]]);
        assert_eq!(
            buckets.iter().map(|b| b.numel).collect::<Vec<_>>(),
            vec![12, 30, 1]
        );
    }

    #[test]
    fn never_mixes_dtypes() {
        let tensors = vec![
            floats(2),
            Tensor::ones([3], (Kind::Int64, Device::Cpu)),
            floats(2),
            Tensor::ones([2], (Kind::Double, Device::Cpu)),
        ];
        let buckets = plan(&tensors, 1 << 20).unwrap();
        let members: Vec<(Vec<usize>, Kind)> = buckets
            .iter()
            .map(|b| (b.members.clone(), b.kind))
            .collect();
        assert_eq!(
            members,
            vec![
                (vec![0, 2], Kind::Float),
                (vec![1], Kind::Int64),
                (vec![3], Kind::Double)
            ]
        );
    }

    #[test]
    fn flatten_then_unflatten_round_trips_mixed_shapes() {
        let a = Tensor::randn([3, 4], (Kind::Float, Device::Cpu));
        let b = Tensor::randn([5], (Kind::Float, Device::Cpu));
        let c = Tensor::randn([2, 3], (Kind::Float, Device::Cpu)).transpose(0, 1); // not contiguous
        let tensors = vec![a.copy(), b.copy(), c.copy()];
        let buckets = plan(&tensors, 1 << 20).unwrap();
        assert_eq!(buckets.len(), 1);
        let flat = buckets[0].flatten(&tensors);
        assert_eq!(flat.size(), vec![23]);
        let targets = vec![a.zeros_like(), b.zeros_like(), c.zeros_like()];
        buckets[0].unflatten(&(flat * 2.0), &targets);
        for (t, original) in targets.iter().zip([&a, &b, &c]) {
            assert!(t.equal(&(original * 2.0)));
        }
    }

    #[test]
    fn a_lone_contiguous_tensor_is_reduced_in_place() {
        let big = floats(100);
        let tensors = vec![big.shallow_clone()];
        let buckets = plan(&tensors, 16).unwrap();
        let flat = buckets[0].flatten(&tensors);
        assert_eq!(flat.data_ptr(), big.data_ptr());
        let _ = flat.detach().g_mul_scalar_(3.0);
        buckets[0].unflatten(&flat, &tensors);
        assert!(big.equal(&(floats(100) * 3.0)));
    }

    #[test]
    fn undefined_tensors_are_refused() {
        let err = plan(&[floats(2), Tensor::new()], 64).unwrap_err();
        assert!(err.to_string().contains("tensor 1 is undefined"));
    }
}
