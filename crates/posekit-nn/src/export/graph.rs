//! An ONNX graph under construction: the operators posekit's networks are made of, each a method
//! that appends one node (or a few) and returns the value it produces.
//!
//! The network files describe their structure to this builder from their `export_onnx` methods,
//! next to their `forward`s, in the same order and with the same weights, so an export computes
//! what the libtorch forward computes. The builder only knows ONNX: operator names and
//! attributes, opset differences, the element type of the graph body and how a libtorch tensor
//! becomes an initializer. The protobuf messages are `onnx-protobuf`'s (generated from
//! `onnx.proto`); nothing here encodes bytes by hand.
//!
//! Precision: the graph's input and outputs are always float32. In a float16 graph
//! ([`Precision::Float16`]) the input is cast to float16 right after the graph input, every
//! weight and constant is stored as float16, and each output is cast back to float32, so a
//! consumer feeds and reads float32 either way.

use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::tensor_shape_proto::{dimension, Dimension};
use onnx_protobuf::{
    type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use posekit_core::{Error, Result};
use protobuf::{EnumOrUnknown, MessageField};
use tch::{Device, Kind, Tensor};

/// Lowest opset the builder writes: Resize with `(X, roi, scales)` inputs and Clip with
/// `min`/`max` inputs take their current form in opset 13.
pub const MIN_OPSET: i64 = 13;
/// Highest opset the builder writes: 21 is the newest that every ONNX Runtime from 1.18 on runs.
pub const MAX_OPSET: i64 = 21;
/// The default opset: 17 runs on every ONNX Runtime from 1.14 on and every recent converter.
pub const DEFAULT_OPSET: i64 = 17;

/// Largest finite float16 value: a weight beyond it would become infinity.
const F16_MAX: f64 = 65504.0;

/// The ONNX IR version to declare for an opset: the lowest that knows it (the table of
/// `onnx.helper.VERSION_TABLE`), so that older runtimes accept the file.
pub fn ir_version_for_opset(opset: i64) -> i64 {
    match opset {
        ..=14 => 7,
        15..=18 => 8,
        19..=20 => 9,
        _ => 10,
    }
}

/// Checks a requested opset against the range the builder writes.
pub fn check_opset(opset: i64) -> Result<()> {
    if (MIN_OPSET..=MAX_OPSET).contains(&opset) {
        Ok(())
    } else {
        Err(Error::Shape(format!(
            "ONNX opset {opset} is not supported: posekit writes opsets {MIN_OPSET} to {MAX_OPSET} \
             (default {DEFAULT_OPSET})"
        )))
    }
}

/// Element type of the graph body (weights and activations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Float32,
    Float16,
}

impl Precision {
    fn data_type(self) -> DataType {
        match self {
            Precision::Float32 => DataType::FLOAT,
            Precision::Float16 => DataType::FLOAT16,
        }
    }

    fn kind(self) -> Kind {
        match self {
            Precision::Float32 => Kind::Float,
            Precision::Float16 => Kind::Half,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::Float32 => "float32",
            Precision::Float16 => "float16",
        }
    }
}

/// One dimension of a graph input or output: a number, or a name (`"batch"`) that the runtime
/// binds to whatever the caller feeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    Fixed(i64),
    Symbolic(String),
}

/// A value of the graph: the name of the graph input, an initializer or a node output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value(String);

impl Value {
    pub fn name(&self) -> &str {
        &self.0
    }
}

/// `pads` of a 2-D convolution or pooling in ONNX order: `[top, left, bottom, right]`.
pub type Pads = [i64; 4];

/// Symmetric padding `p` on every side.
pub fn same_pads(p: i64) -> Pads {
    [p, p, p, p]
}

/// The graph being built; see the module documentation.
#[derive(Debug)]
pub struct OnnxGraph {
    opset: i64,
    precision: Precision,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    /// Suffix of the next generated name, so that every name is unique.
    counter: usize,
}

impl OnnxGraph {
    pub fn new(opset: i64, precision: Precision) -> Result<Self> {
        check_opset(opset)?;
        Ok(OnnxGraph {
            opset,
            precision,
            nodes: Vec::new(),
            initializers: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            counter: 0,
        })
    }

    pub fn opset(&self) -> i64 {
        self.opset
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    fn fresh(&mut self, stem: &str) -> String {
        self.counter += 1;
        format!("{stem}_{}", self.counter)
    }

    /// Appends a node of `op` with one output, named after the operator.
    fn node(&mut self, op: &str, inputs: &[&str], attributes: Vec<AttributeProto>) -> Value {
        let output = self.fresh(&op.to_ascii_lowercase());
        self.node_to(op, inputs, attributes, output.clone());
        Value(output)
    }

    fn node_to(
        &mut self,
        op: &str,
        inputs: &[&str],
        attributes: Vec<AttributeProto>,
        output: String,
    ) {
        let name = format!("{output}/{op}");
        self.nodes.push(NodeProto {
            op_type: op.to_string(),
            name,
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output],
            attribute: attributes,
            ..Default::default()
        });
    }

    /// Declares the float32 graph input `name` and returns it in the body's precision.
    pub fn input(&mut self, name: &str, dims: &[Dim]) -> Value {
        self.inputs.push(value_info(name, DataType::FLOAT, dims));
        let input = Value(name.to_string());
        match self.precision {
            Precision::Float32 => input,
            Precision::Float16 => self.cast(&input, DataType::FLOAT16),
        }
    }

    /// Declares `value` a float32 graph output named `name` with shape `dims`.
    pub fn output(&mut self, name: &str, value: &Value, dims: &[Dim]) {
        match self.precision {
            Precision::Float32 => self.node_to("Identity", &[value.name()], vec![], name.into()),
            Precision::Float16 => self.node_to(
                "Cast",
                &[value.name()],
                vec![attr_int("to", DataType::FLOAT as i64)],
                name.into(),
            ),
        }
        self.outputs.push(value_info(name, DataType::FLOAT, dims));
    }

    /// A weight (or any floating-point constant) as an initializer in the body's precision.
    pub fn weight(&mut self, tensor: &Tensor) -> Result<Value> {
        let name = self.fresh("w");
        let proto = tensor_proto(&name, tensor, self.precision)?;
        self.initializers.push(proto);
        Ok(Value(name))
    }

    /// A constant of the body's precision from plain values, with shape `dims`.
    pub fn constant(&mut self, values: &[f32], dims: &[i64]) -> Result<Value> {
        let t = Tensor::from_slice(values).reshape(dims);
        self.weight(&t)
    }

    /// An int64 constant (indices, axes, slice bounds).
    fn constant_i64(&mut self, values: &[i64], dims: &[i64]) -> Value {
        let name = self.fresh("i");
        self.initializers.push(TensorProto {
            name: name.clone(),
            dims: dims.to_vec(),
            data_type: DataType::INT64 as i32,
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        Value(name)
    }

    /// A float32 constant whatever the body's precision (Resize scales must be float32).
    fn constant_f32(&mut self, values: &[f32], dims: &[i64]) -> Value {
        let name = self.fresh("f");
        self.initializers.push(TensorProto {
            name: name.clone(),
            dims: dims.to_vec(),
            data_type: DataType::FLOAT as i32,
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        Value(name)
    }

    /// 2-D convolution (`groups = channels` for depthwise) with explicit, possibly asymmetric,
    /// padding; `weight` is OIHW as in libtorch.
    pub fn conv(
        &mut self,
        x: &Value,
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: i64,
        pads: Pads,
        groups: i64,
    ) -> Result<Value> {
        let size = weight.size();
        if size.len() != 4 {
            return Err(Error::Shape(format!(
                "ONNX export: a 2-D convolution weight has 4 dimensions, got {size:?}"
            )));
        }
        let w = self.weight(weight)?;
        let b = bias.map(|b| self.weight(b)).transpose()?;
        let mut inputs = vec![x.name(), w.name()];
        if let Some(b) = &b {
            inputs.push(b.name());
        }
        let attrs = vec![
            attr_ints("kernel_shape", &size[2..]),
            attr_ints("strides", &[stride, stride]),
            attr_ints("pads", &pads),
            attr_ints("dilations", &[1, 1]),
            attr_int("group", groups),
        ];
        Ok(self.node("Conv", &inputs, attrs))
    }

    /// A stride-1 convolution with "same" padding `k / 2` for an odd kernel `k`: every head
    /// and plain conv layer of posekit's networks (`blocks::conv2d_bias`, OpenPose's VGG).
    pub fn conv_same(
        &mut self,
        x: &Value,
        weight: &Tensor,
        bias: Option<&Tensor>,
    ) -> Result<Value> {
        let k = weight.size().get(2).copied().unwrap_or(1);
        self.conv(x, weight, bias, 1, same_pads(k / 2), 1)
    }

    /// 2-D transposed convolution; `weight` is `[in, out, kh, kw]` as in libtorch.
    pub fn conv_transpose(
        &mut self,
        x: &Value,
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: i64,
        padding: i64,
        output_padding: i64,
    ) -> Result<Value> {
        let size = weight.size();
        if size.len() != 4 {
            return Err(Error::Shape(format!(
                "ONNX export: a 2-D transposed convolution weight has 4 dimensions, got {size:?}"
            )));
        }
        let w = self.weight(weight)?;
        let b = bias.map(|b| self.weight(b)).transpose()?;
        let mut inputs = vec![x.name(), w.name()];
        if let Some(b) = &b {
            inputs.push(b.name());
        }
        let attrs = vec![
            attr_ints("kernel_shape", &size[2..]),
            attr_ints("strides", &[stride, stride]),
            attr_ints("pads", &same_pads(padding)),
            attr_ints("output_padding", &[output_padding, output_padding]),
            attr_ints("dilations", &[1, 1]),
            attr_int("group", 1),
        ];
        Ok(self.node("ConvTranspose", &inputs, attrs))
    }

    /// `x * scale + shift` per channel (`scale` and `shift` of length C, broadcast over
    /// `[N, C, H, W]`): an eval-mode BatchNorm that no convolution precedes (the pre-activation
    /// residuals of the Stacked Hourglass), which cannot be folded.
    pub fn channel_affine(&mut self, x: &Value, scale: &Tensor, shift: &Tensor) -> Result<Value> {
        let s = self.weight(&scale.reshape([1, -1, 1, 1]))?;
        let b = self.weight(&shift.reshape([1, -1, 1, 1]))?;
        let y = self.mul(x, &s);
        Ok(self.add(&y, &b))
    }

    pub fn relu(&mut self, x: &Value) -> Value {
        self.node("Relu", &[x.name()], vec![])
    }

    /// `min(max(x, lo), hi)`: ReLU6 is `clip(x, 0, 6)`.
    pub fn clip(&mut self, x: &Value, lo: f32, hi: f32) -> Result<Value> {
        let lo = self.constant(&[lo], &[])?;
        let hi = self.constant(&[hi], &[])?;
        Ok(self.node("Clip", &[x.name(), lo.name(), hi.name()], vec![]))
    }

    pub fn add(&mut self, a: &Value, b: &Value) -> Value {
        self.node("Add", &[a.name(), b.name()], vec![])
    }

    pub fn sub(&mut self, a: &Value, b: &Value) -> Value {
        self.node("Sub", &[a.name(), b.name()], vec![])
    }

    pub fn mul(&mut self, a: &Value, b: &Value) -> Value {
        self.node("Mul", &[a.name(), b.name()], vec![])
    }

    pub fn div(&mut self, a: &Value, b: &Value) -> Value {
        self.node("Div", &[a.name(), b.name()], vec![])
    }

    pub fn sqrt(&mut self, x: &Value) -> Value {
        self.node("Sqrt", &[x.name()], vec![])
    }

    pub fn concat(&mut self, values: &[&Value], axis: i64) -> Value {
        let names: Vec<&str> = values.iter().map(|v| v.name()).collect();
        self.node("Concat", &names, vec![attr_int("axis", axis)])
    }

    /// `k x k` max-pooling with stride `s`, no padding, floor rounding (libtorch's
    /// `max_pool2d(.., ceil_mode=false)`).
    pub fn max_pool(&mut self, x: &Value, k: i64, s: i64) -> Value {
        let attrs = vec![
            attr_ints("kernel_shape", &[k, k]),
            attr_ints("strides", &[s, s]),
            attr_ints("pads", &same_pads(0)),
        ];
        self.node("MaxPool", &[x.name()], attrs)
    }

    /// Nearest upsampling by an integer `factor` (`nn.Upsample(scale_factor=f)`): output pixel
    /// `i` reads input pixel `floor(i / f)`, libtorch's rule for an integer scale.
    pub fn upsample_nearest(&mut self, x: &Value, factor: i64) -> Value {
        let f = factor as f32;
        let scales = self.constant_f32(&[1.0, 1.0, f, f], &[4]);
        let attrs = vec![
            attr_string("mode", "nearest"),
            attr_string("coordinate_transformation_mode", "asymmetric"),
            attr_string("nearest_mode", "floor"),
        ];
        // The empty input name is ONNX's "not given" for the optional `roi`.
        self.node("Resize", &[x.name(), "", scales.name()], attrs)
    }

    /// `x.index_select(axis, indices)` with constant indices.
    pub fn gather(&mut self, x: &Value, axis: i64, indices: &[i64]) -> Value {
        let idx = self.constant_i64(indices, &[indices.len() as i64]);
        self.node(
            "Gather",
            &[x.name(), idx.name()],
            vec![attr_int("axis", axis)],
        )
    }

    /// `x.narrow(axis, start, len)`.
    pub fn narrow(&mut self, x: &Value, axis: i64, start: i64, len: i64) -> Value {
        let starts = self.constant_i64(&[start], &[1]);
        let ends = self.constant_i64(&[start + len], &[1]);
        let axes = self.constant_i64(&[axis], &[1]);
        self.node(
            "Slice",
            &[x.name(), starts.name(), ends.name(), axes.name()],
            vec![],
        )
    }

    /// Mean over `axes`, keeping them as size-1 dimensions (the axes are an attribute before
    /// opset 18 and an input from 18 on).
    pub fn reduce_mean(&mut self, x: &Value, axes: &[i64]) -> Value {
        let keep = attr_int("keepdims", 1);
        if self.opset < 18 {
            self.node(
                "ReduceMean",
                &[x.name()],
                vec![attr_ints("axes", axes), keep],
            )
        } else {
            let a = self.constant_i64(axes, &[axes.len() as i64]);
            self.node("ReduceMean", &[x.name(), a.name()], vec![keep])
        }
    }

    /// `x` in float32 whatever the body's precision (for statistics that would overflow
    /// float16); [`Self::to_body`] brings a value back.
    pub fn to_float32(&mut self, x: &Value) -> Value {
        match self.precision {
            Precision::Float32 => x.clone(),
            Precision::Float16 => self.cast(x, DataType::FLOAT),
        }
    }

    /// A float32 value (from [`Self::to_float32`]) in the body's precision.
    pub fn to_body(&mut self, x: &Value) -> Value {
        match self.precision {
            Precision::Float32 => x.clone(),
            Precision::Float16 => self.cast(x, DataType::FLOAT16),
        }
    }

    /// A float32 constant, for arithmetic on values from [`Self::to_float32`].
    pub fn constant_float32(&mut self, values: &[f32], dims: &[i64]) -> Value {
        self.constant_f32(values, dims)
    }

    /// A float32 weight whatever the body's precision, for arithmetic on values from
    /// [`Self::to_float32`].
    pub fn weight_float32(&mut self, tensor: &Tensor) -> Result<Value> {
        let name = self.fresh("w");
        let proto = tensor_proto(&name, tensor, Precision::Float32)?;
        self.initializers.push(proto);
        Ok(Value(name))
    }

    fn cast(&mut self, x: &Value, to: DataType) -> Value {
        self.node("Cast", &[x.name()], vec![attr_int("to", to as i64)])
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The finished model: IR version for the opset, the default-domain opset import, the
    /// producer, a doc string and `metadata` as `metadata_props`.
    pub fn finish(
        self,
        graph_name: &str,
        doc: &str,
        metadata: Vec<(String, String)>,
    ) -> ModelProto {
        let graph = GraphProto {
            name: graph_name.to_string(),
            node: self.nodes,
            initializer: self.initializers,
            input: self.inputs,
            output: self.outputs,
            doc_string: doc.to_string(),
            ..Default::default()
        };
        ModelProto {
            ir_version: ir_version_for_opset(self.opset),
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: self.opset,
                ..Default::default()
            }],
            producer_name: "posekit".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            doc_string: doc.to_string(),
            graph: MessageField::some(graph),
            metadata_props: metadata
                .into_iter()
                .map(|(key, value)| StringStringEntryProto {
                    key,
                    value,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }
}

/// A libtorch tensor as an ONNX initializer of the given precision (little-endian raw data).
fn tensor_proto(name: &str, tensor: &Tensor, precision: Precision) -> Result<TensorProto> {
    let t = tch::no_grad(|| {
        tensor
            .detach()
            .to_device(Device::Cpu)
            .to_kind(Kind::Float)
            .contiguous()
    });
    let numel = t.numel();
    if precision == Precision::Float16 && numel > 0 {
        let largest = t.abs().max().double_value(&[]);
        if largest > F16_MAX {
            return Err(Error::Shape(format!(
                "cannot export in float16: a weight of magnitude {largest:e} is beyond the \
                 float16 range ({F16_MAX}); export in float32 instead"
            )));
        }
    }
    let t = t.to_kind(precision.kind());
    let bytes_per = match precision {
        Precision::Float32 => 4,
        Precision::Float16 => 2,
    };
    let mut raw = vec![0u8; numel * bytes_per];
    if numel > 0 {
        t.copy_data_u8(&mut raw, numel);
    }
    if cfg!(target_endian = "big") {
        raw.chunks_mut(bytes_per).for_each(|c| c.reverse());
    }
    Ok(TensorProto {
        name: name.to_string(),
        dims: t.size(),
        data_type: precision.data_type() as i32,
        raw_data: raw,
        ..Default::default()
    })
}

fn value_info(name: &str, elem: DataType, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Fixed(v) => dimension::Value::DimValue(*v),
                Dim::Symbolic(s) => dimension::Value::DimParam(s.clone()),
            }),
            ..Default::default()
        })
        .collect();
    let tensor = type_proto::Tensor {
        elem_type: elem as i32,
        shape: MessageField::some(TensorShapeProto {
            dim,
            ..Default::default()
        }),
        ..Default::default()
    };
    ValueInfoProto {
        name: name.to_string(),
        type_: MessageField::some(TypeProto {
            value: Some(type_proto::Value::TensorType(tensor)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn attr(name: &str, kind: AttributeType) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        type_: EnumOrUnknown::new(kind),
        ..Default::default()
    }
}

fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        i: v,
        ..attr(name, AttributeType::INT)
    }
}

fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        ints: v.to_vec(),
        ..attr(name, AttributeType::INTS)
    }
}

fn attr_string(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        s: v.as_bytes().to_vec(),
        ..attr(name, AttributeType::STRING)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opsets_outside_the_range_are_refused() {
        assert!(OnnxGraph::new(DEFAULT_OPSET, Precision::Float32).is_ok());
        let err = OnnxGraph::new(9, Precision::Float32)
            .unwrap_err()
            .to_string();
        assert!(err.contains("opset 9") && err.contains("13 to 21"), "{err}");
        assert!(check_opset(22).is_err());
        assert_eq!(ir_version_for_opset(13), 7);
        assert_eq!(ir_version_for_opset(17), 8);
        assert_eq!(ir_version_for_opset(21), 10);
    }

    #[test]
    fn initializers_hold_little_endian_values_of_the_body_precision() {
        let t = Tensor::from_slice(&[1.0f32, -2.5, 65504.0]).reshape([3, 1]);
        let p = tensor_proto("w", &t, Precision::Float32).unwrap();
        assert_eq!(p.dims, vec![3, 1]);
        assert_eq!(p.data_type, DataType::FLOAT as i32);
        assert_eq!(&p.raw_data[4..8], &(-2.5f32).to_le_bytes());
        let h = tensor_proto("w", &t, Precision::Float16).unwrap();
        assert_eq!(h.data_type, DataType::FLOAT16 as i32);
        // float16 of -2.5 is 0xC100; 65504 is the largest finite value, 0x7BFF.
        assert_eq!(&h.raw_data[2..4], &[0x00, 0xC1]);
        assert_eq!(&h.raw_data[4..6], &[0xFF, 0x7B]);
        let big = Tensor::from_slice(&[1e6f32]);
        let err = tensor_proto("w", &big, Precision::Float16)
            .unwrap_err()
            .to_string();
        assert!(err.contains("float16 range"), "{err}");
    }

    #[test]
    fn reduce_mean_axes_move_from_attribute_to_input_at_opset_18() {
        for (opset, inputs, attrs) in [(17, 1, 2), (18, 2, 1)] {
            let mut g = OnnxGraph::new(opset, Precision::Float32).unwrap();
            let x = g.input("input", &[Dim::Fixed(1), Dim::Fixed(3)]);
            g.reduce_mean(&x, &[0, 2, 3]);
            let node = g.nodes.last().unwrap();
            assert_eq!(node.op_type, "ReduceMean");
            assert_eq!(
                (node.input.len(), node.attribute.len()),
                (inputs, attrs),
                "opset {opset}"
            );
        }
    }

    #[test]
    fn half_graphs_cast_at_the_input_and_every_output() {
        let mut g = OnnxGraph::new(17, Precision::Float16).unwrap();
        let x = g.input("input", &[Dim::Symbolic("batch".into()), Dim::Fixed(3)]);
        let y = g.relu(&x);
        g.output(
            "heatmaps",
            &y,
            &[Dim::Symbolic("batch".into()), Dim::Fixed(3)],
        );
        let model = g.finish("net", "doc", vec![("k".into(), "v".into())]);
        let graph = model.graph.as_ref().unwrap();
        let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["Cast", "Relu", "Cast"]);
        assert_eq!(graph.node[2].output, vec!["heatmaps".to_string()]);
        assert_eq!(model.metadata_props[0].key, "k");
        assert_eq!(model.producer_name, "posekit");
    }
}
