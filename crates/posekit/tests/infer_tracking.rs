//! Video tracking end to end: the real binary and the bundled OpenPose-MobileNetV2 on a clip
//! made here from a real multi-person COCO photo (`tests/data/infer/000000196141.jpg`, licence
//! in its README): a window that slides and zooms over the picture so the people move and grow,
//! with the batter covered for three frames. Checks that each person keeps one `track_id`, that
//! the covered person gets the same id back, and that `--smooth savgol` rewrites results.json
//! per track while results.jsonl keeps the frame-by-frame keypoints.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use common::{path_str, results, scratch, text_of};

/// Frames of the clip, and the frames in which the batter is covered.
const FRAMES: u64 = 12;
const HIDDEN: [u64; 3] = [4, 5, 6];

fn have_ffmpeg() -> bool {
    Command::new("ffmpeg")
        .arg("-version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// One person of a results.jsonl line: track id and box centre x.
fn people(line: &serde_json::Value) -> Vec<(Option<u64>, f64)> {
    line["people"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let b = p["bbox"].as_array().unwrap();
            let cx = b[0].as_f64().unwrap() + b[2].as_f64().unwrap() / 2.0;
            (p["track_id"].as_u64(), cx)
        })
        .collect()
}

#[test]
fn people_keep_their_track_through_a_moving_zooming_clip_and_a_covered_person_comes_back() {
    if !have_ffmpeg() {
        eprintln!("ffmpeg is not installed: video tracking of posekit infer was NOT exercised");
        return;
    }
    let dir = scratch("tracking");
    let clip = dir.join("clip.mp4");
    // The batter stands at x 272-400 of the 640x429 picture; grey covers him (in the source
    // picture, before the window moves) in the HIDDEN frames. The window zooms from 1 to 1.13
    // and slides from the left edge to the right one.
    let filter = format!(
        "drawbox=x=262:y=95:w=150:h=262:color=gray:t=fill:enable='between(n,{},{})',\
         zoompan=z='1+0.012*on':x='(iw-iw/zoom)*on/{FRAMES}':y='(ih-ih/zoom)/2':d=1:\
         s=640x428:fps=10",
        HIDDEN[0], HIDDEN[2]
    );
    let made = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-loop", "1", "-framerate", "10", "-i"])
        .arg(common::data("infer").join("000000196141.jpg"))
        .args(["-vf", &filter, "-frames:v", &FRAMES.to_string()])
        .args(["-pix_fmt", "yuv420p"])
        .arg(&clip)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", text_of(&made));
    let out = dir.join("out");
    let run = common::posekit_cmd()
        .args(["infer", path_str(&clip), "--out", path_str(&out)])
        .args(["--smooth", "savgol", "--no-progress"])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", text_of(&run));

    let lines: Vec<serde_json::Value> = std::fs::read_to_string(out.join("results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, FRAMES);
    // Where each track was, frame by frame.
    let mut tracks: BTreeMap<u64, Vec<(u64, f64)>> = BTreeMap::new();
    for (f, line) in lines.iter().enumerate() {
        let mut seen = BTreeSet::new();
        for (id, cx) in people(line) {
            let id = id.unwrap_or_else(|| panic!("frame {f}: a person without track_id"));
            assert!(seen.insert(id), "frame {f}: track {id} given twice");
            tracks.entry(id).or_default().push((f as u64, cx));
        }
    }
    let first: Vec<(Option<u64>, f64)> = people(&lines[0]);
    assert_eq!(
        first.len(),
        3,
        "the batter, the catcher and the player behind the fence"
    );
    for (id, _) in &first {
        let path = &tracks[&id.unwrap()];
        // The people are over 100 px apart and the window moves a few px a frame: a track
        // that jumped to another person would jump by far more than 40 px.
        for w in path.windows(2) {
            assert!(
                (w[1].1 - w[0].1).abs() < 40.0,
                "track {id:?} jumped from x {} (frame {}) to x {} (frame {})",
                w[0].1,
                w[0].0,
                w[1].1,
                w[1].0
            );
        }
    }
    // The batter: the person of frame 0 nearest the picture's centre.
    let batter = first
        .iter()
        .min_by(|a, b| (a.1 - 336.0).abs().total_cmp(&(b.1 - 336.0).abs()))
        .unwrap()
        .0
        .unwrap();
    let frames_of_batter: BTreeSet<u64> = tracks[&batter].iter().map(|(f, _)| *f).collect();
    for f in 0..FRAMES {
        assert_eq!(
            frames_of_batter.contains(&f),
            !HIDDEN.contains(&f),
            "batter (track {batter}) in frame {f}: {frames_of_batter:?}"
        );
    }
    for (id, _) in &first {
        assert!(
            tracks[&id.unwrap()].iter().any(|(f, _)| *f == FRAMES - 1),
            "track {id:?} of frame 0 is not in the last frame"
        );
    }

    // results.json: the same ids, keypoints smoothed over each track (Savitzky-Golay), while
    // results.jsonl has them as found frame by frame.
    let res = results(&out);
    let mut smoothed_differ = 0;
    let mut compared = 0;
    for r in &res {
        let f = r["frame"].as_u64().unwrap() as usize;
        let id = r["track_id"]
            .as_u64()
            .expect("results.json person without track_id");
        let streamed = lines[f]["people"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["track_id"].as_u64() == Some(id))
            .expect("results.json and results.jsonl disagree on a track id");
        compared += 1;
        if streamed["keypoints"] != r["keypoints"] {
            smoothed_differ += 1;
        }
    }
    assert_eq!(
        compared,
        lines.iter().map(|l| people(l).len()).sum::<usize>()
    );
    assert!(
        smoothed_differ * 2 > compared,
        "savgol left {} of {compared} people unchanged",
        compared - smoothed_differ
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Lines of `results.jsonl` that are complete (a killed run may leave a torn last line).
fn complete_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .map(|l| serde_json::from_str(l.trim_end()).expect("a complete line that is not JSON"))
        .collect()
}

#[test]
fn a_video_run_killed_midway_keeps_every_flushed_frame_with_its_track() {
    if !have_ffmpeg() {
        eprintln!("ffmpeg is not installed: killing a video run was NOT exercised");
        return;
    }
    let dir = scratch("tracking-kill");
    let clip = dir.join("long.mp4");
    let made = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-loop", "1", "-framerate", "10", "-i"])
        .arg(common::data("infer").join("astronaut.jpg"))
        .args(["-frames:v", "200", "-pix_fmt", "yuv420p"])
        .arg(&clip)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", text_of(&made));
    let out = dir.join("out");
    let stream = out.join("results.jsonl");
    let mut cmd = common::posekit_cmd();
    cmd.args([
        "infer",
        path_str(&clip),
        "--out",
        path_str(&out),
        "--no-progress",
    ]);
    common::kill_when(
        cmd,
        || complete_lines(&stream).len() >= 3,
        std::time::Duration::from_secs(120),
    );
    let lines = complete_lines(&stream);
    assert!(
        lines.len() >= 3 && lines.len() < 200,
        "{} frames streamed",
        lines.len()
    );
    assert!(
        !out.join("results.json").exists(),
        "a killed run wrote results.json"
    );
    for (f, line) in lines.iter().enumerate() {
        assert_eq!(line["frame"].as_u64(), Some(f as u64));
        let ids: Vec<Option<u64>> = line["people"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["track_id"].as_u64())
            .collect();
        assert_eq!(ids, [Some(0)], "frame {f}: the astronaut keeps track 0");
    }
    std::fs::remove_dir_all(&dir).ok();
}
