//! A training process killed with SIGKILL at any moment resumes from its last complete
//! checkpoint and ends exactly where an uninterrupted run ends; a torn or altered checkpoint
//! is refused with an error naming it.
//!
//! Runs the real binary on the 4 COCO images of `tests/data/coco` with a tiny HRNet and tiny
//! crops, so that a whole run takes seconds.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{checkpoint_epoch, kill_when, run_ok, train_cmd};

use posekit::pipelines::train::checkpoint;

const EPOCHS: usize = 6;
/// 12 instances in batches of 4.
const ITERS_PER_EPOCH: u64 = 3;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/coco")
}

fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("posekit-kill-resume-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A tiny experiment with the full augmentation on (so that the resumed run must replay the
/// same random crops to end with the same weights).
fn write_config(dir: &Path) -> PathBuf {
    let data = data_dir();
    let text = format!(
        r#"
[model]
preset = "hrnet-w32"
[model.hrnet]
width = 4
modules = [1, 1, 1]
blocks = 1

[dataset]
format = "coco"
train_annotations = "{ann}"
train_images = "{img}"
val_annotations = "{ann}"
val_images = "{img}"

[data]
input_size = [32, 64]
heatmap_size = [8, 16]

[train]
epochs = {EPOCHS}
batch_size = 4
workers = 2
val_interval = 3
seed = 11
[train.schedule]
lr = 1e-3
milestones = [4]
warmup_iters = 5

[test]
batch_size = 6
workers = 1
"#,
        ann = data.join("test_coco.json").display(),
        img = data.display(),
    );
    let path = dir.join("tiny.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn posekit() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_posekit"));
    c.stdin(Stdio::null());
    c
}

#[test]
fn killed_runs_resume_to_the_same_weights_and_torn_checkpoints_are_refused() {
    let dir = scratch("main");
    let config = write_config(&dir);

    // The reference: one uninterrupted run.
    let reference = dir.join("reference");
    run_ok(train_cmd(&config, &reference, false));
    let ck = checkpoint::load(&reference.join("last.safetensors")).unwrap();
    assert_eq!(ck.meta.epoch, EPOCHS);
    assert_eq!(ck.meta.global_iter, EPOCHS as u64 * ITERS_PER_EPOCH);
    assert_eq!(ck.meta.adam_step, (EPOCHS as u64 * ITERS_PER_EPOCH) as i64);
    assert!(
        ck.meta.best_metric.is_some(),
        "validation ran at epochs 3 and 6"
    );

    // The same run, killed again and again.
    let out = dir.join("killed");
    // 1. Killed before any checkpoint exists: --resume starts from scratch.
    kill_when(
        train_cmd(&config, &out, false),
        || false,
        Duration::from_millis(300),
    );
    // 2. Killed right after the checkpoint of epoch 1 appears (inside epoch 2).
    kill_when(
        train_cmd(&config, &out, true),
        || checkpoint_epoch(&out) >= 1,
        Duration::from_secs(120),
    );
    let after_first = checkpoint_epoch(&out);
    assert!(after_first >= 1, "no checkpoint after the second start");
    // 3. Killed in the middle of an epoch, a little while after start-up.
    kill_when(
        train_cmd(&config, &out, true),
        || false,
        Duration::from_millis(1500),
    );
    // 4. Killed right after the epoch-3 checkpoint, i.e. after a validation and a `best` write.
    kill_when(
        train_cmd(&config, &out, true),
        || checkpoint_epoch(&out) >= 3,
        Duration::from_secs(120),
    );
    // Never a torn file under the final name, whatever the moment of the kill.
    if out.join("last.safetensors").exists() {
        checkpoint::load(&out.join("last.safetensors")).unwrap();
    }
    // 5. Run to the end.
    let done = run_ok(train_cmd(&config, &out, true));
    let stdout = String::from_utf8_lossy(&done.stdout);
    assert!(
        stdout.contains("resuming from") || checkpoint_epoch(&out) == EPOCHS,
        "{stdout}"
    );

    let ck = checkpoint::load(&out.join("last.safetensors")).unwrap();
    assert_eq!(ck.meta.epoch, EPOCHS);
    assert_eq!(ck.meta.global_iter, EPOCHS as u64 * ITERS_PER_EPOCH);
    assert_eq!(ck.meta.adam_step, (EPOCHS as u64 * ITERS_PER_EPOCH) as i64);
    // Same batches, same rates, same start: the same weights, bit for bit.
    let a = std::fs::read(reference.join("final.safetensors")).unwrap();
    let b = std::fs::read(out.join("final.safetensors")).unwrap();
    if a != b {
        let ra =
            posekit_nn::weights::read_safetensors(&reference.join("final.safetensors")).unwrap();
        let rb = posekit_nn::weights::read_safetensors(&out.join("final.safetensors")).unwrap();
        let differing: Vec<&String> = ra
            .iter()
            .zip(&rb)
            .filter(|((_, x), (_, y))| x != y)
            .map(|((n, _), _)| n)
            .collect();
        panic!("resumed weights differ from the uninterrupted run's in {differing:?}");
    }
    // The schedule continued where it was: the log's last learning rate is after both
    // milestones... only one milestone here, at epoch 4: lr 1e-4 at the end.
    let log = std::fs::read_to_string(out.join("log.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(last["epoch"], EPOCHS);
    assert!(
        (last["lr"].as_f64().unwrap() - 1e-4).abs() < 1e-12,
        "{last}"
    );

    // A finished run resumed again does nothing but export the weights.
    run_ok(train_cmd(&config, &out, true));

    // Torn and altered checkpoints are refused, naming the file.
    let good = std::fs::read(out.join("last.safetensors")).unwrap();
    for (what, bytes) in [
        ("truncated", good[..good.len() / 2].to_vec()),
        ("header cut", good[..20].to_vec()),
        ("flipped", {
            let mut b = good.clone();
            let at = b.len() - 100;
            b[at] ^= 0x01;
            b
        }),
    ] {
        std::fs::write(out.join("last.safetensors"), &bytes).unwrap();
        let result = train_cmd(&config, &out, true).output().unwrap();
        assert!(
            !result.status.success(),
            "{what}: a torn checkpoint was accepted"
        );
        let err = String::from_utf8_lossy(&result.stderr);
        assert!(err.contains("last.safetensors"), "{what}: {err}");
        assert!(
            err.contains("corrupt or incomplete checkpoint"),
            "{what}: {err}"
        );
        if what == "flipped" {
            assert!(err.contains("checksum mismatch"), "{err}");
        }
        // `posekit test` refuses it too.
        let result = posekit()
            .args(["test"])
            .arg(&config)
            .arg("--weights")
            .arg(out.join("last.safetensors"))
            .arg("--out")
            .arg(dir.join("t"))
            .output()
            .unwrap();
        assert!(
            !result.status.success(),
            "{what}: test accepted a torn checkpoint"
        );
    }
    // Without --resume an existing run is never overwritten.
    std::fs::write(out.join("last.safetensors"), &good).unwrap();
    let result = train_cmd(&config, &out, false).output().unwrap();
    assert!(!result.status.success());
    assert!(String::from_utf8_lossy(&result.stderr).contains("--resume"));

    // Resuming with a config that changes what is trained is refused, naming the keys.
    let changed = std::fs::read_to_string(&config)
        .unwrap()
        .replace("lr = 1e-3", "lr = 2e-3");
    let changed_path = dir.join("changed.toml");
    std::fs::write(&changed_path, changed).unwrap();
    let result = train_cmd(&changed_path, &out, true).output().unwrap();
    assert!(!result.status.success());
    let err = String::from_utf8_lossy(&result.stderr);
    assert!(err.contains("train.schedule.lr"), "{err}");

    let _ = std::fs::remove_dir_all(&dir);
}
