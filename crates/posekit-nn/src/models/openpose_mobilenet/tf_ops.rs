//! The three TensorFlow behaviours the ported graph depends on and PyTorch does not share:
//! `SAME` padding (asymmetric for stride 2), training-mode BatchNorm, and TF1's legacy bilinear
//! resize. Each is written out here so that the port computes what the trained weights expect
//! rather than PyTorch's nearest equivalent, which shifts sampling grids or statistics.

use posekit_core::Result;
use tch::{Kind, Tensor};

use crate::export::{OnnxGraph, Value};

/// BatchNorm epsilon of every BN in the graph (slim's default, not PyTorch's 1e-5).
pub const TF_BN_EPS: f64 = 1e-3;

/// TF `SAME` padding of one axis as (before, after).
///
/// TF pads so that `out = ceil(in / stride)` and puts the odd pixel *after*; PyTorch's
/// symmetric `padding = k / 2` agrees for stride 1 but, for stride 2 on even sizes, samples a
/// grid shifted by one pixel, which the trained weights do not expect.
pub fn same_padding(input: i64, kernel: i64, stride: i64) -> (i64, i64) {
    let out = (input + stride - 1) / stride;
    let total = ((out - 1) * stride + kernel - input).max(0);
    let before = total / 2;
    (before, total - before)
}

/// A bias-free convolution with TF `SAME` padding (`groups = channels` for depthwise).
///
/// Symmetric cases use the convolution's own padding; asymmetric ones pad explicitly with zeros
/// first, which costs one copy of the (small) input and only happens on stride-2 layers.
pub fn conv2d_same(xs: &Tensor, weight: &Tensor, stride: i64, groups: i64) -> Tensor {
    let (wsize, xsize) = (weight.size(), xs.size());
    let (top, bottom) = same_padding(xsize[2], wsize[2], stride);
    let (left, right) = same_padding(xsize[3], wsize[3], stride);
    if top == bottom && left == right {
        xs.conv2d(
            weight,
            None::<Tensor>,
            [stride, stride],
            [top, left],
            [1, 1],
            groups,
        )
    } else {
        xs.constant_pad_nd([left, right, top, bottom]).conv2d(
            weight,
            None::<Tensor>,
            [stride, stride],
            [0, 0],
            [1, 1],
            groups,
        )
    }
}

/// BatchNorm in training mode without running statistics: each channel is normalised with the
/// mean and biased variance of this batch (over N, H, W).
///
/// tf-pose froze its MobileNetV2 backbone with `is_training=true`, so at inference every
/// backbone BN behaves like this; with one image per batch it is an instance norm, and a batch
/// of several images gives different outputs than the images one by one.
pub fn batch_norm_batch_stats(xs: &Tensor, gamma: &Tensor, beta: &Tensor) -> Tensor {
    xs.batch_norm(
        Some(gamma),
        Some(beta),
        None::<&Tensor>,
        None::<&Tensor>,
        true,
        0.0,
        TF_BN_EPS,
        false,
    )
}

/// Source taps and weights of TF1's legacy bilinear resize along one axis
/// (`align_corners=false`, `half_pixel_centers=false`): `src = dst * in / out` in f32,
/// `lo = floor(src)`, `hi = min(ceil(src), in - 1)`, weight of `hi` = `src - lo`.
///
/// Unlike PyTorch's `align_corners=False` (half-pixel centres), the grid starts at the first
/// input pixel, so at 2x the last output row repeats the edge instead of extrapolating.
pub fn legacy_bilinear_taps(input: i64, output: i64) -> (Vec<i64>, Vec<i64>, Vec<f32>) {
    let scale = input as f32 / output as f32;
    let mut lo = Vec::with_capacity(output as usize);
    let mut hi = Vec::with_capacity(output as usize);
    let mut frac = Vec::with_capacity(output as usize);
    for d in 0..output {
        let src = d as f32 * scale;
        let floor = src.floor();
        lo.push((floor as i64).max(0));
        hi.push((src.ceil() as i64).min(input - 1));
        frac.push(src - floor);
    }
    (lo, hi, frac)
}

/// TF1's `ResizeBilinear` (legacy grid) of an NCHW tensor to `out_h x out_w`, as gathers and
/// linear interpolation, first along x and then along y as TF does (`top + (bottom - top) * dy`
/// with `top`/`bottom` already interpolated in x), so rounding follows TF's order.
pub fn resize_bilinear_legacy(xs: &Tensor, out_h: i64, out_w: i64) -> Tensor {
    let size = xs.size();
    let (device, kind) = (xs.device(), xs.kind());
    let (x0, x1, fx) = legacy_bilinear_taps(size[3], out_w);
    let (y0, y1, fy) = legacy_bilinear_taps(size[2], out_h);
    let index = |v: &[i64]| Tensor::from_slice(v).to_device(device);
    let weight = |v: &[f32], shape: [i64; 4]| {
        Tensor::from_slice(v)
            .to_kind(kind)
            .to_device(device)
            .reshape(shape)
    };
    let left = xs.index_select(3, &index(&x0));
    let right = xs.index_select(3, &index(&x1));
    let rows = &left + (&right - &left) * weight(&fx, [1, 1, 1, out_w]);
    let top = rows.index_select(2, &index(&y0));
    let bottom = rows.index_select(2, &index(&y1));
    &top + (&bottom - &top) * weight(&fy, [1, 1, out_h, 1])
}

/// `min(max(x, 0), 6)`: MobileNetV2's activation.
pub fn relu6(xs: &Tensor) -> Tensor {
    xs.clamp(0.0, 6.0)
}

/// Whether a tensor is floating point (the network's input must be).
pub fn is_float(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16
    )
}

/// [`conv2d_same`] as one ONNX convolution of an input of spatial size `hw`: ONNX takes
/// asymmetric `pads`, so TF's extra pixel after goes there directly. Returns the output and its
/// spatial size (`ceil(in / stride)`).
pub fn export_conv2d_same(
    g: &mut OnnxGraph,
    x: &Value,
    hw: (i64, i64),
    weight: &Tensor,
    bias: Option<&Tensor>,
    stride: i64,
    groups: i64,
) -> Result<(Value, (i64, i64))> {
    let wsize = weight.size();
    let (top, bottom) = same_padding(hw.0, wsize[2], stride);
    let (left, right) = same_padding(hw.1, wsize[3], stride);
    let y = g.conv(x, weight, bias, stride, [top, left, bottom, right], groups)?;
    let out = ((hw.0 + stride - 1) / stride, (hw.1 + stride - 1) / stride);
    Ok((y, out))
}

/// [`batch_norm_batch_stats`] as ONNX nodes: the mean and biased variance over N, H and W
/// (`ReduceMean`), then `(x - mean) * gamma / sqrt(var + eps) + beta`. The statistics are
/// computed in float32 even in a float16 graph, where the squares of activations of 0..255
/// pictures would overflow.
pub fn export_batch_norm_batch_stats(
    g: &mut OnnxGraph,
    x: &Value,
    gamma: &Tensor,
    beta: &Tensor,
) -> Result<Value> {
    let x = g.to_float32(x);
    let mean = g.reduce_mean(&x, &[0, 2, 3]);
    let centred = g.sub(&x, &mean);
    let squares = g.mul(&centred, &centred);
    let var = g.reduce_mean(&squares, &[0, 2, 3]);
    let eps = g.constant_float32(&[TF_BN_EPS as f32], &[]);
    let var = g.add(&var, &eps);
    let std = g.sqrt(&var);
    let gamma = g.weight_float32(&gamma.reshape([1, -1, 1, 1]))?;
    let beta = g.weight_float32(&beta.reshape([1, -1, 1, 1]))?;
    let scale = g.div(&gamma, &std);
    let scaled = g.mul(&centred, &scale);
    let y = g.add(&scaled, &beta);
    Ok(g.to_body(&y))
}

/// [`resize_bilinear_legacy`] of an input of spatial size `hw` as ONNX nodes: the same gathers
/// and interpolations in the same order (x first, then y), so the export computes exactly what
/// the port computes rather than ONNX `Resize`'s own rounding.
pub fn export_resize_bilinear_legacy(
    g: &mut OnnxGraph,
    x: &Value,
    hw: (i64, i64),
    out_h: i64,
    out_w: i64,
) -> Result<Value> {
    let (x0, x1, fx) = legacy_bilinear_taps(hw.1, out_w);
    let (y0, y1, fy) = legacy_bilinear_taps(hw.0, out_h);
    let left = g.gather(x, 3, &x0);
    let right = g.gather(x, 3, &x1);
    let fx = g.constant(&fx, &[1, 1, 1, out_w])?;
    let rows = lerp(g, &left, &right, &fx);
    let top = g.gather(&rows, 2, &y0);
    let bottom = g.gather(&rows, 2, &y1);
    let fy = g.constant(&fy, &[1, 1, out_h, 1])?;
    Ok(lerp(g, &top, &bottom, &fy))
}

/// `a + (b - a) * t`.
fn lerp(g: &mut OnnxGraph, a: &Value, b: &Value, t: &Value) -> Value {
    let diff = g.sub(b, a);
    let step = g.mul(&diff, t);
    g.add(a, &step)
}

/// [`relu6`] as an ONNX `Clip`.
pub fn export_relu6(g: &mut OnnxGraph, x: &Value) -> Result<Value> {
    g.clip(x, 0.0, 6.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn same_padding_follows_tf() {
        // Stride 2 on even sizes: the extra pixel goes after (README "Surprises" 2).
        assert_eq!(same_padding(368, 3, 2), (0, 1));
        assert_eq!(same_padding(432, 3, 2), (0, 1));
        // Odd sizes and stride 1 are symmetric; 1x1 kernels never pad.
        assert_eq!(same_padding(23, 3, 2), (1, 1));
        assert_eq!(same_padding(46, 3, 1), (1, 1));
        assert_eq!(same_padding(46, 1, 1), (0, 0));
        assert_eq!(same_padding(45, 1, 2), (0, 0));
    }

    #[test]
    fn legacy_resize_at_2x_copies_even_rows_averages_odd_and_repeats_the_edge() {
        let (lo, hi, frac) = legacy_bilinear_taps(23, 46);
        assert_eq!((lo[4], hi[4], frac[4]), (2, 2, 0.0));
        assert_eq!((lo[5], hi[5], frac[5]), (2, 3, 0.5));
        assert_eq!((lo[45], hi[45]), (22, 22));
        // Not exactly 2x (a 720-pixel-high input): the general formula.
        let (lo, hi, frac) = legacy_bilinear_taps(23, 45);
        let src = 44.0f32 * (23.0f32 / 45.0);
        assert_eq!((lo[44], hi[44]), (src.floor() as i64, 22));
        assert_eq!(frac[44], src - src.floor());
    }

    #[test]
    fn legacy_resize_of_a_ramp() {
        let x = Tensor::from_slice(&[0f32, 2.0, 4.0]).reshape([1, 1, 1, 3]);
        let y = resize_bilinear_legacy(&x, 1, 6);
        let v: Vec<f32> = Vec::try_from(y.flatten(0, -1)).unwrap();
        assert_eq!(v, vec![0.0, 1.0, 2.0, 3.0, 4.0, 4.0]);
    }

    #[test]
    fn asymmetric_padding_differs_from_symmetric() {
        let x = Tensor::arange(16, (Kind::Float, Device::Cpu)).reshape([1, 1, 4, 4]);
        let w = Tensor::ones([1, 1, 3, 3], (Kind::Float, Device::Cpu));
        let y = conv2d_same(&x, &w, 2, 1);
        assert_eq!(y.size(), vec![1, 1, 2, 2]);
        // No padding before: the top-left output covers rows and columns 0..=2
        // (0+1+2+4+5+6+8+9+10); PyTorch's symmetric padding would centre it on (0, 0) and give
        // 0+1+4+5 = 10. The bottom-right one sees the zero pad: rows/cols 2..=3 (10+11+14+15).
        assert_eq!(y.double_value(&[0, 0, 0, 0]), 45.0);
        assert_eq!(y.double_value(&[0, 0, 1, 1]), 50.0);
    }

    #[test]
    fn batch_stats_norm_uses_biased_variance() {
        let x = Tensor::from_slice(&[1f32, 3.0]).reshape([1, 1, 1, 2]);
        let one = Tensor::ones([1], (Kind::Float, Device::Cpu));
        let zero = Tensor::zeros([1], (Kind::Float, Device::Cpu));
        let y = batch_norm_batch_stats(&x, &one, &zero);
        // mean 2, biased variance 1.
        let expect = 1.0 / (1.0 + TF_BN_EPS).sqrt();
        assert!((y.double_value(&[0, 0, 0, 1]) - expect).abs() < 1e-6);
    }
}
