//! One OpenPose training step through the trainer's own loss path (`paf_batch_loss`: the
//! batch's tensors, every stage's outputs, CMU's masked Euclidean loss) equal to PyTorch
//! (`tools/fixtures/make_paf_train_step_fixtures.py`): the loss and every parameter's
//! gradient of a tiny two-stage VGG OpenPose with the real 38 PAF and 19 heatmap channels, to
//! 1e-4 relative.

use std::collections::HashMap;
use std::path::PathBuf;

use posekit::pipelines::data::PafBatch;
use posekit::pipelines::model::LoadedModel;
use posekit::pipelines::train::paf_task::paf_batch_loss;
use posekit_nn::models::openpose::{OpenPoseVgg, OpenPoseVggConfig};
use posekit_nn::models::Preset;
use tch::{nn, Device, Kind, Tensor};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/paf")
        .join(name)
}

fn floats(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.to_kind(Kind::Float).flatten(0, -1)).unwrap()
}

fn relative(ours: &Tensor, reference: &Tensor) -> f64 {
    let scale = reference.abs().max().double_value(&[]);
    let d = (ours - reference).abs().max().double_value(&[]);
    if scale > 0.0 {
        d / scale
    } else {
        d
    }
}

#[test]
fn a_training_step_matches_pytorch() {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data("paf_train_step.json")).unwrap())
            .unwrap();
    let cfg: OpenPoseVggConfig = serde_json::from_value(json["config"].clone()).unwrap();
    let io: HashMap<String, Tensor> = Tensor::read_safetensors(data("paf_train_step.safetensors"))
        .unwrap()
        .into_iter()
        .collect();
    let vs = nn::VarStore::new(Device::Cpu);
    let net = OpenPoseVgg::new(&vs.root(), &cfg).unwrap();
    tch::no_grad(|| {
        for (name, var) in vs.variables() {
            let w = &io[&format!("weight.{name}")];
            var.shallow_clone().copy_(w);
        }
    });
    let model = LoadedModel {
        preset: Preset::find("openpose-vgg19").unwrap(),
        vs,
        net: Box::new(net),
    };
    let (x, hm, pafs, mask) = (&io["input"], &io["heatmaps"], &io["pafs"], &io["mask"]);
    let (n, h, w) = (x.size()[0], x.size()[2], x.size()[3]);
    let batch = PafBatch {
        index: 0,
        batch_size: n as usize,
        inputs: floats(x),
        crop: [w as usize, h as usize],
        heatmaps: floats(hm),
        pafs: floats(pafs),
        masks: floats(mask),
        num_heatmaps: 19,
        num_pafs: 38,
        image_ids: vec![1, 2],
        skipped: 0,
    };
    let loss = paf_batch_loss(&model, &batch, Device::Cpu).unwrap();
    let want = io["loss"].double_value(&[0]);
    let got = loss.double_value(&[]);
    assert!(
        (got - want).abs() <= 1e-4 * want.abs(),
        "loss {got} vs PyTorch {want}"
    );
    loss.backward();
    let mut worst = (String::new(), 0.0);
    let vars = model.vs.variables();
    assert!(!vars.is_empty());
    for (name, var) in &vars {
        let d = relative(&var.grad(), &io[&format!("grad.{name}")]);
        if d > worst.1 {
            worst = (name.clone(), d);
        }
    }
    assert!(
        worst.1 <= 1e-4,
        "gradient of {} differs by {:e}",
        worst.0,
        worst.1
    );
    println!(
        "loss {got} (PyTorch {want}); worst gradient {} at {:e}",
        worst.0, worst.1
    );
}
