//! The data-loss and silent-wrong-answer cases of the hostile-input pass, end to end through
//! the `posekit` binary: each test fails on the code before the fix.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

fn picture(dir: &Path, name: &str, from: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::copy(repo(from), &path).unwrap();
    path
}

#[test]
fn infer_never_writes_over_its_inputs() {
    let dir = scratch("out-is-in");
    let photo = picture(&dir, "photos/a.jpg", "examples/grace_hopper.jpg");
    let before = file_bytes(&photo);
    let photos = dir.join("photos");
    // The output folder is the input folder.
    let out = posekit(&["infer", path_str(&photos), "--out", path_str(&photos)]);
    assert_clean_failure(&out, "--out = the input folder");
    assert!(
        stderr(&out).contains("a.jpg") && stderr(&out).contains("--out"),
        "{}",
        text_of(&out)
    );
    // A single picture inside the output folder, spelt another way.
    let other_spelling = dir.join("photos/../photos");
    let out = posekit(&[
        "infer",
        path_str(&photo),
        "--out",
        path_str(&other_spelling),
    ]);
    assert_clean_failure(&out, "a picture inside --out");
    // A link to the picture where the drawing would go.
    let linked = dir.join("linked");
    std::fs::create_dir_all(&linked).unwrap();
    std::os::unix::fs::symlink(&photo, linked.join("a.jpg")).unwrap();
    let out = posekit(&["infer", path_str(&photo), "--out", path_str(&linked)]);
    assert_clean_failure(&out, "a link to the input in --out");
    assert_eq!(file_bytes(&photo), before, "the photo was changed");
    assert!(!photos.join("results.json").exists() && !photos.join("results.jsonl").exists());
}

#[test]
fn inputs_with_one_file_name_stay_apart_in_results_and_drawings() {
    let dir = scratch("same-name");
    picture(&dir, "A/x.jpg", "examples/astronaut.jpg");
    picture(&dir, "B/x.jpg", "examples/grace_hopper.jpg");
    let out_dir = dir.join("out");
    let out = posekit(&[
        "infer",
        path_str(&dir.join("A")),
        path_str(&dir.join("B")),
        "--out",
        path_str(&out_dir),
        "--no-progress",
    ]);
    assert!(out.status.success(), "{}", text_of(&out));
    let names: std::collections::BTreeSet<String> = results(&out_dir)
        .iter()
        .map(|r| r["file_name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["A/x.jpg", "B/x.jpg"]
    );
    // The drawings are where the names say.
    assert!(out_dir.join("A/x.jpg").is_file() && out_dir.join("B/x.jpg").is_file());
    // The stream has one line per picture with the same names.
    let stream = std::fs::read_to_string(out_dir.join("results.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = stream
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{stream}");
    assert_eq!(lines[0]["file_name"], "A/x.jpg");
    assert_eq!(lines[1]["file_name"], "B/x.jpg");
}

#[test]
fn the_bundled_model_loads_dataparallel_names() {
    // `module.`-prefixed names, as DataParallel saves them: the same key conventions as
    // `convert` and `forward`.
    let dir = scratch("module-names");
    let weights = posekit_nn::weights::read_safetensors(&repo(
        "models/openpose-mobilenetv2/openpose_mobilenetv2.safetensors",
    ))
    .unwrap();
    let prefixed = dir.join("module.safetensors");
    let renamed: Vec<(String, &posekit_nn::weights::RawTensor)> = weights
        .iter()
        .map(|(name, t)| (format!("module.{name}"), t))
        .collect();
    posekit_nn::weights::write_safetensors(
        &prefixed,
        renamed.iter().map(|(n, t)| (n.as_str(), *t)),
    )
    .unwrap();
    let out_dir = dir.join("out");
    let out = posekit(&[
        "infer",
        path_str(&repo("examples/astronaut.jpg")),
        "--weights",
        path_str(&prefixed),
        "--out",
        path_str(&out_dir),
    ]);
    assert!(out.status.success(), "{}", text_of(&out));
    assert_eq!(results(&out_dir).len(), 1);
}

#[test]
fn bad_boxes_stop_the_run_before_any_work() {
    let dir = scratch("boxes");
    let astronaut = path_str(&repo("examples/astronaut.jpg")).to_string();
    let grace = path_str(&repo("examples/grace_hopper.jpg")).to_string();
    let config = tiny_hrnet_config(&dir, &[]);
    let weights = dir.join("no-weights-needed.safetensors");
    let run = |boxes: &str, name: &str| {
        let file = dir.join(format!("{name}.json"));
        std::fs::write(&file, boxes).unwrap();
        let out_dir = dir.join(name);
        let out = posekit(&[
            "infer",
            &astronaut,
            &grace,
            "--config",
            path_str(&config),
            "--weights",
            path_str(&weights),
            "--boxes",
            path_str(&file),
            "--out",
            path_str(&out_dir),
        ]);
        (out, out_dir)
    };
    for (name, boxes) in [
        (
            "overflow",
            r#"[{"file_name":"astronaut.jpg","bbox":[100,50,1e308,1e308],"score":0.9},
                {"file_name":"grace_hopper.jpg","bbox":[10,10,100,200],"score":0.9}]"#,
        ),
        (
            "too-big",
            r#"[{"file_name":"astronaut.jpg","bbox":[0,0,90000,90000],"score":0.9}]"#,
        ),
        (
            "nobody",
            r#"[{"file_name":"nobody.jpg","bbox":[10,10,100,200],"score":0.9}]"#,
        ),
    ] {
        let (out, out_dir) = run(boxes, name);
        assert_clean_failure(&out, name);
        assert!(
            stderr(&out).contains(&format!("{name}.json")),
            "{name}: {}",
            text_of(&out)
        );
        assert!(
            !out_dir.join("results.json").exists(),
            "{name}: results written"
        );
    }
    // Boxes for a bottom-up model are refused, not silently ignored.
    let file = dir.join("fine.json");
    std::fs::write(
        &file,
        r#"[{"file_name":"astronaut.jpg","bbox":[10,10,100,200]}]"#,
    )
    .unwrap();
    let out = posekit(&[
        "infer",
        &astronaut,
        "--boxes",
        path_str(&file),
        "--out",
        path_str(&dir.join("bu")),
    ]);
    assert_clean_failure(&out, "--boxes with the bundled bottom-up model");
    assert!(stderr(&out).contains("bottom-up"), "{}", text_of(&out));
}

#[test]
fn train_never_wipes_an_earlier_run() {
    let dir = scratch("train-wipe");
    let config = tiny_hrnet_config(&dir, &[("epochs", "1"), ("val_interval", "0")]);
    let run = dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    // A finished run whose last.safetensors was deleted to save space.
    let kept = ["best.safetensors", "final.safetensors", "log.jsonl"];
    for name in kept {
        std::fs::write(run.join(name), format!("earlier {name}")).unwrap();
    }
    let train = |extra: &[&str]| {
        let mut args = vec![
            "train",
            path_str(&config),
            "--out",
            path_str(&run),
            "--no-progress",
        ];
        args.extend_from_slice(extra);
        posekit(&args)
    };
    let out = train(&[]);
    assert_clean_failure(&out, "train into a finished run");
    assert!(stderr(&out).contains("--overwrite"), "{}", text_of(&out));
    let out = train(&["--resume"]);
    assert_clean_failure(&out, "--resume without last.safetensors");
    assert!(
        stderr(&out).contains("last.safetensors"),
        "{}",
        text_of(&out)
    );
    for name in kept {
        assert_eq!(
            std::fs::read_to_string(run.join(name)).unwrap(),
            format!("earlier {name}"),
            "{name} was touched"
        );
    }
    // Asked for, the folder is replaced: one run's files, a log of one epoch.
    std::fs::write(run.join("notes.txt"), "mine").unwrap();
    let out = train(&["--overwrite"]);
    assert!(out.status.success(), "{}", text_of(&out));
    let log = std::fs::read_to_string(run.join("log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 1, "{log}");
    assert!(
        !run.join("best.safetensors").exists()
            || file_bytes(&run.join("best.safetensors")) != b"earlier best.safetensors"
    );
    assert_eq!(
        std::fs::read_to_string(run.join("notes.txt")).unwrap(),
        "mine"
    );
    let out = train(&["--overwrite", "--resume"]);
    assert_clean_failure(&out, "--overwrite with --resume");
}

#[test]
fn convert_and_forward_refuse_an_output_that_is_an_input() {
    let dir = scratch("convert-same");
    let pth = dir.join("same.pth");
    std::fs::write(&pth, b"a checkpoint the user wants to keep").unwrap();
    let before = file_bytes(&pth);
    let out = posekit(&[
        "convert",
        path_str(&pth),
        "--model",
        "hrnet-w32",
        "-o",
        path_str(&pth),
    ]);
    assert_clean_failure(&out, "convert onto itself");
    assert!(
        stderr(&out).contains("output is the input"),
        "{}",
        text_of(&out)
    );
    assert_eq!(file_bytes(&pth), before);
    let out = posekit(&[
        "forward",
        "--model",
        "hrnet-w32",
        "--weights",
        path_str(&pth),
        "--input",
        path_str(&pth),
        "--output",
        path_str(&pth),
    ]);
    assert_clean_failure(&out, "forward onto its input");
    assert_eq!(file_bytes(&pth), before);
}

#[test]
fn a_killed_infer_leaves_its_finished_pictures_and_no_stale_results() {
    let dir = scratch("killed-infer");
    let photos = dir.join("photos");
    for i in 0..12 {
        picture(
            &dir,
            &format!("photos/{i:02}.jpg"),
            "examples/astronaut.jpg",
        );
    }
    let out_dir = dir.join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    std::fs::write(out_dir.join("results.json"), "[]").unwrap();
    let mut child = posekit_cmd()
        .args([
            "infer",
            path_str(&photos),
            "--out",
            path_str(&out_dir),
            "--no-progress",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stream = out_dir.join("results.jsonl");
    let start = Instant::now();
    let finished_lines = || {
        std::fs::read_to_string(&stream)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    while finished_lines() < 2 && start.elapsed() < Duration::from_secs(120) {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let status = child.wait().unwrap();
    let text = std::fs::read_to_string(&stream).unwrap();
    let complete: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(complete.len() >= 2, "{text}");
    for line in &complete {
        assert_eq!(line["people"].as_array().unwrap().len(), 1, "{line}");
    }
    if !status.success() {
        // Killed mid-run: the earlier run's results.json is gone, not left beside these pictures.
        assert!(!out_dir.join("results.json").exists());
    }
}

/// An unreadable picture is skipped by training and by `posekit test`, and each says which
/// file and why, through the command's own output (the data loader prints nothing itself).
#[test]
fn an_unreadable_picture_is_skipped_with_a_warning_naming_it() {
    let dir = scratch("unreadable-picture");
    let images = dir.join("images");
    for name in ["000000000785.jpg", "000000196141.jpg", "000000197388.jpg"] {
        picture(
            &images,
            name,
            &format!("crates/posekit/tests/data/coco/{name}"),
        );
    }
    std::fs::write(images.join("000000040083.jpg"), b"not a JPEG at all").unwrap();
    let quoted = format!("\"{}\"", path_str(&images));
    let config = tiny_hrnet_config(
        &dir,
        &[
            ("epochs", "1"),
            ("val_interval", "0"),
            ("train_images", &quoted),
            ("val_images", &quoted),
        ],
    );
    let run = dir.join("run");
    let said = text_of(&run_ok(train_cmd(&config, &run, false)));
    assert!(
        said.contains("warning: skipping sample") && said.contains("000000040083.jpg"),
        "{said}"
    );
    assert!(
        said.contains("skipped because their image could not be read"),
        "{said}"
    );

    let out = run_ok(test_cmd(
        &config,
        &run.join("final.safetensors"),
        &dir.join("test"),
    ));
    let warned = stderr(&out);
    assert!(
        warned.contains("warning: skipping sample") && warned.contains("000000040083.jpg"),
        "{}",
        text_of(&out)
    );
    assert!(!text_of(&out).contains("panicked"));
}
