//! `posekit train` with SGD, end to end through the binary on the repo's tiny OpenPose config
//! (4 COCO images): CMU's solver shape (Caffe-form momentum, per-layer multipliers, a step
//! every few iterations) trains with a finite, falling loss, and a run stopped after one epoch
//! and resumed ends with the same weights, bit for bit, as the uninterrupted one (the Caffe
//! history buffers, saved in the checkpoint, carry the momentum across the rate drop); a group
//! that matches no variable stops the run, naming it.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// The tiny OpenPose config at `epochs`, trained by Caffe-form SGD with biases at twice the
/// rate and no decay, the rate x0.333 every 5 iterations (4 per epoch), plus `extra` groups.
fn sgd_config(dir: &Path, epochs: usize, extra_group: &str) -> PathBuf {
    let path = tiny_config(
        dir,
        "tiny_openpose_coco_test",
        &[
            ("epochs", &epochs.to_string()),
            ("lr", "1e-5"),
            ("milestones", "[]\nstep_iters = 5\ngamma = 0.333"),
        ],
    );
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&format!(
        "\n[train.optimizer]\ntype = \"sgd\"\nform = \"caffe\"\nmomentum = 0.9\n\
         weight_decay = 5e-4\n{extra_group}[[train.optimizer.groups]]\nsuffix = \".bias\"\n\
         lr_mult = 2.0\ndecay_mult = 0.0\n"
    ));
    let path = dir.join(format!("sgd_{epochs}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn caffe_sgd_trains_and_resumes_to_the_same_weights() {
    let dir = scratch("sgd-train");
    let full = sgd_config(&dir, 3, "");
    let reference = dir.join("reference");
    let out = train_cmd(&full, &reference, false).output().unwrap();
    assert!(out.status.success(), "{}", text_of(&out));
    let l = logged_losses(&reference);
    assert_eq!(l.len(), 3);
    assert!(l.iter().all(|v| v.is_finite()), "{l:?}");
    assert!(l[2] < l[0], "the loss did not go down: {l:?}");

    let first = sgd_config(&dir, 1, "");
    let stopped = dir.join("stopped");
    let out = train_cmd(&first, &stopped, false).output().unwrap();
    assert!(out.status.success(), "{}", text_of(&out));
    assert_eq!(checkpoint_epoch(&stopped), 1);
    let out = train_cmd(&full, &stopped, true).output().unwrap();
    assert!(out.status.success(), "{}", text_of(&out));
    assert_eq!(checkpoint_epoch(&stopped), 3);
    assert!(
        file_bytes(&reference.join("final.safetensors"))
            == file_bytes(&stopped.join("final.safetensors")),
        "resumed weights differ from the uninterrupted run's"
    );
}

#[test]
fn a_group_matching_no_variable_is_refused() {
    let dir = scratch("sgd-bad-group");
    let config = sgd_config(
        &dir,
        1,
        "[[train.optimizer.groups]]\nprefix = \"modle0.\"\nlr_mult = 1.0\n",
    );
    let out = train_cmd(&config, &dir.join("r"), false).output().unwrap();
    assert_clean_failure(&out, "a misspelt group prefix");
    let err = stderr(&out);
    assert!(
        err.contains("modle0.") && err.contains("matches no trainable variable"),
        "{err}"
    );
}
