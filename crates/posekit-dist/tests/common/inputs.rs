//! Deterministic per-rank inputs, shared by the harness (which runs as the ranks) and the tests
//! (which compute what the ranks must end with). Included with `#[path]` by both.

#![allow(dead_code)]

use tch::nn::{self, Module, ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

/// Shapes and dtypes of the tensors the collective tests exchange: mixed sizes, from a single
/// value to one larger than the test bucket cap, in f32 and f64.
pub const SHAPES: &[(&[i64], Kind)] = &[
    (&[1], Kind::Float),
    (&[3, 3], Kind::Float),
    (&[64, 32, 3, 3], Kind::Float),
    (&[7], Kind::Double),
    (&[40_000], Kind::Float),
    (&[257, 129], Kind::Float),
    (&[5, 5], Kind::Double),
    (&[2], Kind::Float),
    (&[33, 17, 2], Kind::Float),
    (&[1_000], Kind::Double),
    (&[12, 1], Kind::Float),
];

/// The bucket cap the harness uses for them: 64 KiB, so that they form several buckets and
/// the 40,000-float tensor (160 KB) and the 257x129 one fill buckets alone.
pub const TEST_BUCKET_BYTES: usize = 64 * 1024;

/// Rank `rank`'s tensors, different on every rank and at every position.
pub fn rank_tensors(rank: usize) -> Vec<Tensor> {
    SHAPES
        .iter()
        .enumerate()
        .map(|(i, (shape, kind))| {
            let n: i64 = shape.iter().product();
            let x = Tensor::arange(n, (Kind::Double, Device::Cpu));
            ((x * (0.013 * (rank as f64 + 1.0)) + i as f64 * 0.7).sin() * (rank as f64 + 0.5))
                .to_kind(*kind)
                .view(*shape)
        })
        .collect()
}

/// As `rank_tensors`, plus integer tensors (broadcast carries any dtype).
pub fn rank_tensors_with_ints(rank: usize) -> Vec<Tensor> {
    let mut tensors = rank_tensors(rank);
    let ints = Tensor::arange(300, (Kind::Int64, Device::Cpu)) * (rank as i64 + 2);
    tensors.insert(2, ints.view([20, 15]));
    tensors.push(Tensor::from_slice(&[rank as i32 * 7, -3]));
    tensors
}

/// A small network in a VarStore whose initial weights depend on `seed`: a conv, BatchNorm,
/// a linear head, and an auxiliary head that only some ranks use in their loss.
pub struct TinyNet {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
    head: nn::Linear,
    aux: nn::Linear,
}

pub fn tiny_net(seed: i64) -> (VarStore, TinyNet) {
    tch::manual_seed(seed);
    let vs = VarStore::new(Device::Cpu);
    let root = vs.root();
    let conv = nn::conv2d(
        &root / "conv",
        3,
        4,
        3,
        nn::ConvConfig {
            padding: 1,
            ..Default::default()
        },
    );
    let bn = nn::batch_norm2d(&root / "bn", 4, Default::default());
    let head = nn::linear(&root / "head", 4 * 6 * 6, 5, Default::default());
    let aux = nn::linear(&root / "aux", 4 * 6 * 6, 2, Default::default());
    (
        vs,
        TinyNet {
            conv,
            bn,
            head,
            aux,
        },
    )
}

/// Rank `rank`'s batch: 3 images of 3x6x6 and their targets; rank 0 also trains `aux`.
pub fn rank_batch(rank: usize) -> (Tensor, Tensor, bool) {
    let images = rank_tensors(rank)[4]
        .narrow(0, 0, 3 * 3 * 6 * 6)
        .to_kind(Kind::Float)
        .view([3, 3, 6, 6]);
    let targets = rank_tensors(rank)[2]
        .view([-1])
        .narrow(0, 0, 15)
        .view([3, 5]);
    (images, targets, rank == 0)
}

/// Forward, loss, backward: leaves this batch's gradients in the VarStore (zeroed first).
pub fn backward(vs: &VarStore, net: &TinyNet, batch: &(Tensor, Tensor, bool)) {
    for (_, mut v) in vs.variables() {
        v.zero_grad();
    }
    let (images, targets, use_aux) = batch;
    let features = net
        .bn
        .forward_t(&net.conv.forward(images).relu(), true)
        .flatten(1, -1);
    let mut loss = (net.head.forward(&features) - targets)
        .square()
        .mean(Kind::Float);
    if *use_aux {
        loss += net.aux.forward(&features).abs().mean(Kind::Float);
    }
    loss.backward();
}
