//! Helpers shared by the end-to-end tests: the `posekit` binary, the repo's test data, scratch
//! folders. Each test file includes it with `mod common;` and uses what it needs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The `posekit` binary of this build.
pub fn posekit_cmd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_posekit"))
}

/// Runs `posekit` with `args` and waits for it.
pub fn posekit(args: &[&str]) -> Output {
    posekit_cmd()
        .args(args)
        .output()
        .expect("the posekit binary runs")
}

/// `posekit train CONFIG --out OUT --no-progress [--resume]`, not yet run.
pub fn train_cmd(config: &Path, out: &Path, resume: bool) -> Command {
    let mut c = posekit_cmd();
    c.stdin(Stdio::null())
        .arg("train")
        .arg(config)
        .arg("--out")
        .arg(out)
        .arg("--no-progress");
    if resume {
        c.arg("--resume");
    }
    c
}

/// `posekit test CONFIG --weights WEIGHTS --out OUT --no-progress`, not yet run.
pub fn test_cmd(config: &Path, weights: &Path, out: &Path) -> Command {
    let mut c = posekit_cmd();
    c.stdin(Stdio::null())
        .arg("test")
        .arg(config)
        .arg("--weights")
        .arg(weights)
        .arg("--out")
        .arg(out)
        .arg("--no-progress");
    c
}

/// Runs `cmd` and asserts that it succeeded, showing what it printed if not.
pub fn run_ok(mut cmd: Command) -> Output {
    let out = cmd.output().expect("the posekit binary runs");
    assert!(out.status.success(), "command failed:\n{}", text_of(&out));
    out
}

/// The training loss of each epoch, from a run folder's `log.jsonl`.
pub fn logged_losses(run: &Path) -> Vec<f64> {
    std::fs::read_to_string(run.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"]
                .as_f64()
                .unwrap()
        })
        .collect()
}

/// A path inside the repository.
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// The test data of this crate (`crates/posekit/tests/data`).
pub fn data(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(path)
}

/// An empty scratch folder, unique to this process and `name`.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("posekit-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Everything the command printed, for assertion messages.
pub fn text_of(o: &Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", stdout(o), stderr(o))
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// The command failed with an `error:` line and no panic.
pub fn assert_clean_failure(o: &Output, what: &str) {
    let text = text_of(o);
    assert!(
        !o.status.success(),
        "{what}: succeeded but should fail:\n{text}"
    );
    assert!(!text.contains("panicked"), "{what}: panicked:\n{text}");
    assert!(
        stderr(o).contains("error:"),
        "{what}: no error line:\n{text}"
    );
}

/// A copy of the repository's `configs/{name}.toml` (a tiny config on the 4 test pictures) with
/// absolute data paths and `edits` applied (`key = value` lines replaced), written into `dir`
/// as `{name}.toml`.
pub fn tiny_config(dir: &Path, name: &str, edits: &[(&str, &str)]) -> PathBuf {
    let mut text = std::fs::read_to_string(repo(&format!("configs/{name}.toml"))).unwrap();
    text = text.replace("../crates/posekit/tests/data/coco", path_str(&data("coco")));
    for (key, value) in edits {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{key} =")))
            .unwrap_or_else(|| panic!("no `{key} =` line in configs/{name}.toml"))
            .to_string();
        text = text.replace(&line, &format!("{key} = {value}"));
    }
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// [`tiny_config`] of the tiny HRNet test config.
pub fn tiny_hrnet_config(dir: &Path, edits: &[(&str, &str)]) -> PathBuf {
    tiny_config(dir, "tiny_hrnet_coco_test", edits)
}

/// The tiny HRNet config (`tiny_hrnet_config`) with random weights, saved like a training
/// run's final weights: `(DIR/tiny.toml, DIR/tiny.safetensors)`. Top-down plumbing, not
/// accuracy. `calibrated`: weights scaled like trained ones (heatmaps with real peaks);
/// otherwise the layers' own initialisation from seed 0.
pub fn tiny_top_down(dir: &Path, calibrated: bool) -> (PathBuf, PathBuf) {
    let config = tiny_hrnet_config(dir, &[]);
    let loaded = posekit::pipelines::config::ExperimentConfig::load(&config).unwrap();
    let cfg = &loaded.config;
    tch::manual_seed(0);
    let model = cfg
        .model
        .build(&cfg.layout().unwrap(), tch::Device::Cpu)
        .unwrap();
    if calibrated {
        let normalization = model.preset.family.input_normalization();
        posekit_nn::export::random_weights::randomize(
            &model.vs,
            model.net.as_ref(),
            &normalization,
            3,
        )
        .unwrap();
    }
    let weights = dir.join("tiny.safetensors");
    posekit_nn::weights::save_safetensors(&model.vs, &weights).unwrap();
    (config, weights)
}

/// `DIR/results.json` as JSON values.
pub fn results(out_dir: &Path) -> Vec<serde_json::Value> {
    let bytes = std::fs::read(out_dir.join("results.json"))
        .unwrap_or_else(|e| panic!("{}: {e}", out_dir.join("results.json").display()));
    serde_json::from_slice(&bytes).unwrap()
}

/// A file's bytes, to show it was not touched.
pub fn file_bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Epochs recorded by the training checkpoint in `out` (0 when there is none yet or it cannot
/// be read).
pub fn checkpoint_epoch(out: &Path) -> usize {
    posekit::pipelines::train::checkpoint::load(&out.join("last.safetensors"))
        .map_or(0, |c| c.meta.epoch)
}

/// Starts `cmd` and SIGKILLs it once `ready` says so (or after `deadline`); returns early when
/// the process finishes by itself.
pub fn kill_when(mut cmd: Command, ready: impl Fn() -> bool, deadline: std::time::Duration) {
    use std::process::Stdio;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let start = std::time::Instant::now();
    while !ready() && start.elapsed() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // `Child::kill` sends SIGKILL on Unix: no destructor, no flush, nothing runs.
    let _ = child.kill();
    let _ = child.wait();
}
