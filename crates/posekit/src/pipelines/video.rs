//! Video in and out through a system `ffmpeg` (installed by `scripts/setup.sh`). Frames travel
//! as raw RGB over pipes, so no codec library is linked into posekit and every format ffmpeg
//! reads works.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use ndarray::Array3;

#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    #[error("ffmpeg/ffprobe not found on PATH (needed for video; run scripts/setup.sh or install ffmpeg): {0}")]
    MissingTool(std::io::Error),
    #[error("{}: {message}", path.display())]
    Video { path: PathBuf, message: String },
}

/// File extensions treated as videos.
pub fn is_video_path(path: &Path) -> bool {
    matches!(
        path.extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
            .as_deref(),
        Some("mp4" | "avi" | "mov" | "mkv" | "webm" | "m4v" | "mpg" | "mpeg")
    )
}

/// What ffprobe says of the first video stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VideoInfo {
    /// The size of the decoded frames, upright: a phone video stored sideways with a
    /// rotation in its metadata is turned by ffmpeg as it decodes, so its width and height are
    /// those of the stored picture swapped.
    pub width: usize,
    pub height: usize,
    pub fps: f64,
    /// Frame count when the container states it (used for the progress bar only).
    pub frames: Option<u64>,
}

pub fn probe(path: &Path) -> Result<VideoInfo, VideoError> {
    let err = |message: String| VideoError::Video {
        path: path.to_path_buf(),
        message,
    };
    if !path.is_file() {
        return Err(err("no such file".into()));
    }
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-count_packets",
            "-show_entries",
        ])
        .arg(
            "stream=width,height,r_frame_rate,nb_read_packets:stream_tags=rotate:\
             stream_side_data=rotation",
        )
        .args(["-of", "default=noprint_wrappers=1"])
        .arg(path)
        .output()
        .map_err(VideoError::MissingTool)?;
    if !out.status.success() {
        return Err(err(format!(
            "ffprobe cannot read it: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
    };
    let width = field("width").and_then(|v| v.trim().parse().ok());
    let height = field("height").and_then(|v| v.trim().parse().ok());
    let (Some(mut width), Some(mut height)) = (width, height) else {
        return Err(err("no video stream".into()));
    };
    // The display matrix (or the older `rotate` tag) of a phone video: ffmpeg applies it
    // while decoding, so a quarter turn swaps the frames' width and height.
    let rotation = field("rotation")
        .or_else(|| field("TAG:rotate"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    if (rotation.round() as i64).rem_euclid(180) == 90 {
        std::mem::swap(&mut width, &mut height);
    }
    let fps = field("r_frame_rate")
        .and_then(|v| {
            let (n, d) = v.trim().split_once('/')?;
            let (n, d): (f64, f64) = (n.parse().ok()?, d.parse().ok()?);
            (d > 0.0 && n > 0.0).then_some(n / d)
        })
        .unwrap_or(25.0);
    let frames = field("nb_read_packets").and_then(|v| v.trim().parse().ok());
    Ok(VideoInfo {
        width,
        height,
        fps,
        frames,
    })
}

/// Decoded RGB frames of a video, one at a time, upright (a rotation in the metadata is
/// applied) and at the stream's frame rate ([`VideoInfo::fps`]): in a variable-frame-rate
/// video a frame shown longer comes repeated, so frame `n` is at time `n / fps`.
///
/// ffmpeg goes on past a damaged frame (a corrupt or missing packet): it conceals what it
/// could not decode and keeps going, so the frames after it still come. What it said about the
/// damage (its error output) and whether it reached the end are collected for
/// [`FrameReader::finish`], so that the damage can be reported instead of passing unseen.
pub struct FrameReader {
    path: PathBuf,
    info: VideoInfo,
    child: Child,
    stdout: ChildStdout,
    /// Reads ffmpeg's error output as it comes (so ffmpeg never blocks on it).
    messages: Option<std::thread::JoinHandle<Messages>>,
    frames_read: u64,
    /// A frame cut short: ffmpeg stopped in the middle of it.
    cut_short: bool,
}

/// The first few of ffmpeg's error lines, and how many there were.
#[derive(Debug, Clone, Default)]
struct Messages {
    first: Vec<String>,
    count: usize,
}

/// Error lines of ffmpeg kept for a report.
const KEPT_MESSAGES: usize = 3;

impl Messages {
    fn read(from: impl Read) -> Messages {
        use std::io::BufRead;
        let mut messages = Messages::default();
        for line in std::io::BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            messages.count += 1;
            if messages.first.len() < KEPT_MESSAGES {
                messages.first.push(without_address(line));
            }
        }
        messages
    }
}

/// `[h264 @ 0x55d5bf218e00] error ...` without the decoder's memory address.
fn without_address(line: &str) -> String {
    if let (Some(at), Some(end)) = (line.find(" @ 0x"), line.find(']')) {
        if line.starts_with('[') && at < end {
            return format!("{}{}", &line[..at], &line[end..]);
        }
    }
    line.to_string()
}

/// How the decoding of a whole video went ([`FrameReader::finish`]).
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeReport {
    /// Frames read.
    pub frames: u64,
    /// Frames the container holds (video packets counted by ffprobe), when known.
    pub expected: Option<u64>,
    /// How many error lines ffmpeg wrote, and the first few.
    pub error_count: usize,
    pub errors: Vec<String>,
    /// ffmpeg stopped before the end of the video (it failed, or the last frame was cut
    /// short).
    pub stopped_early: bool,
}

impl DecodeReport {
    /// What went wrong in words, `None` for a clean decode. Fewer frames than packets alone is
    /// no problem (ffmpeg may drop frames to keep a variable-rate video's timing); it is
    /// reported with the errors that explain it.
    pub fn problem(&self) -> Option<String> {
        if self.error_count == 0 && !self.stopped_early {
            return None;
        }
        let mut parts = Vec::new();
        if self.stopped_early {
            parts.push(format!(
                "ffmpeg stopped decoding after frame {}, before the end of the video",
                self.frames
            ));
        } else if let Some(expected) = self.expected.filter(|&e| e > self.frames) {
            parts.push(format!(
                "{} of its {expected} frames could not be decoded",
                expected - self.frames
            ));
        }
        if self.error_count > 0 {
            parts.push(format!(
                "ffmpeg reported {} decoding error{} (damaged frames are concealed, so they may \
                 show smeared blocks): {}{}",
                self.error_count,
                if self.error_count == 1 { "" } else { "s" },
                self.errors.join("; "),
                if self.error_count > self.errors.len() {
                    "; ..."
                } else {
                    ""
                }
            ));
        }
        Some(parts.join("; "))
    }
}

impl FrameReader {
    pub fn open(path: &Path) -> Result<Self, VideoError> {
        let info = probe(path)?;
        let mut child = Command::new("ffmpeg")
            .args(["-v", "error", "-nostdin", "-i"])
            .arg(path)
            .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(VideoError::MissingTool)?;
        let stdout = child.stdout.take().ok_or_else(|| VideoError::Video {
            path: path.to_path_buf(),
            message: "ffmpeg gave no output pipe".into(),
        })?;
        let messages = child
            .stderr
            .take()
            .map(|stderr| std::thread::spawn(move || Messages::read(stderr)));
        Ok(FrameReader {
            path: path.to_path_buf(),
            info,
            child,
            stdout,
            messages,
            frames_read: 0,
            cut_short: false,
        })
    }

    /// Once [`Self::next_frame`] has said the video ended: waits for ffmpeg and says how the
    /// decoding went (see [`DecodeReport::problem`]).
    pub fn finish(mut self) -> Result<DecodeReport, VideoError> {
        let status = self.child.wait().map_err(|e| VideoError::Video {
            path: self.path.clone(),
            message: format!("waiting for ffmpeg: {e}"),
        })?;
        let messages = self
            .messages
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        Ok(DecodeReport {
            frames: self.frames_read,
            expected: self.info.frames,
            error_count: messages.count,
            errors: messages.first,
            stopped_early: self.cut_short || !status.success(),
        })
    }

    pub fn info(&self) -> VideoInfo {
        self.info
    }

    /// The next frame, `None` at the end of the video.
    pub fn next_frame(&mut self) -> Result<Option<Array3<u8>>, VideoError> {
        let len = self.info.width * self.info.height * 3;
        let mut buf = vec![0u8; len];
        let mut filled = 0;
        while filled < len {
            let n = self
                .stdout
                .read(&mut buf[filled..])
                .map_err(|e| VideoError::Video {
                    path: self.path.clone(),
                    message: format!("reading decoded frames: {e}"),
                })?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            return Ok(None);
        }
        if filled < len {
            // A partial frame means the stream was cut short; what came before was fine.
            self.cut_short = true;
            return Ok(None);
        }
        self.frames_read += 1;
        Array3::from_shape_vec((self.info.height, self.info.width, 3), buf)
            .map(Some)
            .map_err(|e| VideoError::Video {
                path: self.path.clone(),
                message: e.to_string(),
            })
    }
}

impl Drop for FrameReader {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Encodes RGB frames to a video file (H.264 in MP4 when available).
pub struct FrameWriter {
    path: PathBuf,
    child: Child,
    stdin: Option<ChildStdin>,
    width: usize,
    height: usize,
}

impl FrameWriter {
    pub fn create(path: &Path, width: usize, height: usize, fps: f64) -> Result<Self, VideoError> {
        let mut child = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24"])
            .args([
                "-s",
                &format!("{width}x{height}"),
                "-r",
                &format!("{fps:.6}"),
                "-i",
                "-",
            ])
            // yuv420p needs even sizes; pad by one pixel where needed.
            .args([
                "-vf",
                "pad=ceil(iw/2)*2:ceil(ih/2)*2",
                "-pix_fmt",
                "yuv420p",
            ])
            // x264's `veryfast` instead of its `medium` default: the drawn copy is for looking
            // at, and at `medium` the encoder took a third as much CPU as the network itself
            // (perf on the bundled model, BENCHMARKS.md "Video throughput"), CPU the pipeline's
            // other stages need on a small machine. Other encoders ignore the option.
            .args(["-preset", "veryfast"])
            .arg(path)
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(VideoError::MissingTool)?;
        let stdin = child.stdin.take();
        Ok(FrameWriter {
            path: path.to_path_buf(),
            child,
            stdin,
            width,
            height,
        })
    }

    pub fn write_frame(&mut self, frame: &Array3<u8>) -> Result<(), VideoError> {
        let err = |message: String| VideoError::Video {
            path: self.path.clone(),
            message,
        };
        if frame.shape() != [self.height, self.width, 3] {
            return Err(err(format!(
                "frame of shape {:?}, expected [{}, {}, 3]",
                frame.shape(),
                self.height,
                self.width
            )));
        }
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| err("writer already finished".into()))?;
        let bytes: Vec<u8> = frame.iter().copied().collect();
        stdin
            .write_all(&bytes)
            .map_err(|e| err(format!("ffmpeg stopped accepting frames: {e}")))
    }

    /// Closes the stream and waits for ffmpeg; its error output becomes the error message.
    pub fn finish(mut self) -> Result<(), VideoError> {
        drop(self.stdin.take());
        let mut stderr = String::new();
        if let Some(mut s) = self.child.stderr.take() {
            let _ = s.read_to_string(&mut stderr);
        }
        let status = self.child.wait().map_err(|e| VideoError::Video {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        if !status.success() {
            return Err(VideoError::Video {
                path: self.path.clone(),
                message: format!("ffmpeg failed: {}", stderr.trim()),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn have_ffmpeg() -> bool {
        Command::new("ffmpeg")
            .arg("-version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    #[test]
    fn write_then_read_round_trip() {
        if !have_ffmpeg() {
            eprintln!("ffmpeg not installed: video round trip not exercised");
            return;
        }
        let dir = std::env::temp_dir().join(format!("posekit-video-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.mp4");
        let mut w = FrameWriter::create(&path, 64, 48, 10.0).unwrap();
        for i in 0..5u8 {
            let frame = Array3::from_elem((48, 64, 3), i * 40);
            w.write_frame(&frame).unwrap();
        }
        w.finish().unwrap();
        let mut r = FrameReader::open(&path).unwrap();
        assert_eq!((r.info().width, r.info().height), (64, 48));
        let mut n = 0;
        while let Some(f) = r.next_frame().unwrap() {
            // Lossy codec: grey levels survive to within a few units.
            assert!(
                (f[[24, 32, 0]] as i32 - (n * 40)).abs() <= 6,
                "frame {n}: {}",
                f[[24, 32, 0]]
            );
            n += 1;
        }
        assert_eq!(n, 5);
        std::fs::remove_dir_all(&dir).ok();
    }

    /// A video stored sideways with a rotation in its metadata (as phones record) is decoded
    /// upright by ffmpeg: the reader must expect the turned size, or every frame is sheared.
    #[test]
    fn a_rotated_video_is_read_upright_with_its_width_and_height_swapped() {
        if !have_ffmpeg() {
            eprintln!("ffmpeg not installed: rotated video not exercised");
            return;
        }
        let dir = std::env::temp_dir().join(format!("posekit-video-rot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let stored = dir.join("stored.mp4");
        // Left half white, right half black.
        let frame = Array3::from_shape_fn((48, 64, 3), |(_, x, _)| if x < 32 { 255 } else { 0 });
        let mut w = FrameWriter::create(&stored, 64, 48, 10.0).unwrap();
        for _ in 0..3 {
            w.write_frame(&frame).unwrap();
        }
        w.finish().unwrap();
        let rotated = dir.join("rotated.mp4");
        let remux = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-i"])
            .arg(&stored)
            .args(["-c", "copy", "-metadata:s:v:0", "rotate=90"])
            .arg(&rotated)
            .output()
            .unwrap();
        assert!(remux.status.success(), "{remux:?}");
        let mut r = FrameReader::open(&rotated).unwrap();
        assert_eq!((r.info().width, r.info().height), (48, 64));
        let mut n = 0;
        while let Some(f) = r.next_frame().unwrap() {
            assert_eq!(f.shape(), [64, 48, 3]);
            // A quarter turn makes the halves the top and bottom: each row is one shade.
            for y in [4, 16, 47, 60] {
                let row: Vec<i32> = (0..48).map(|x| f[[y, x, 0]] as i32).collect();
                let (lo, hi) = (row.iter().min().unwrap(), row.iter().max().unwrap());
                assert!(hi - lo < 40, "frame {n} row {y} is not one shade: {row:?}");
            }
            assert!((f[[4, 24, 0]] as i32 - f[[60, 24, 0]] as i32).abs() > 150);
            n += 1;
        }
        assert_eq!(n, 3);
        assert_eq!(r.finish().unwrap().problem(), None);
        std::fs::remove_dir_all(&dir).ok();
    }

    /// A variable-frame-rate video (phones record them) keeps its timing: frames come at the
    /// stream's frame rate, a frame shown longer repeated, so that the drawn video (written at
    /// that rate) and the `frame` numbers of the results (time = frame / rate) follow the
    /// clock, not the packet count.
    #[test]
    fn a_variable_frame_rate_video_is_read_at_its_frame_rate_with_its_timing() {
        if !have_ffmpeg() {
            eprintln!("ffmpeg not installed: variable frame rate not exercised");
            return;
        }
        let dir = std::env::temp_dir().join(format!("posekit-video-vfr-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("vfr.mp4");
        // Ten frames of rising grey: five 0.1 s apart, then five 0.3 s apart.
        let made = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
            .arg("color=c=black:s=64x64:r=10,format=gray,geq=lum='N*25'")
            .args([
                "-vf",
                "setpts='if(lt(N,5),N*0.1,0.5+(N-5)*0.3)/TB',format=yuv420p",
            ])
            .args(["-fps_mode", "vfr", "-frames:v", "10"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(made.status.success(), "{made:?}");
        let mut r = FrameReader::open(&path).unwrap();
        assert_eq!(r.info().fps, 10.0);
        let mut greys = Vec::new();
        while let Some(f) = r.next_frame().unwrap() {
            greys.push(f[[32, 32, 0]] as i32);
        }
        // Runs of one grey: one frame each for the first five, about three each after.
        let mut runs: Vec<usize> = Vec::new();
        for (i, g) in greys.iter().enumerate() {
            if i > 0 && (g - greys[i - 1]).abs() < 8 {
                *runs.last_mut().unwrap() += 1;
            } else {
                runs.push(1);
            }
        }
        assert_eq!(runs.len(), 10, "{greys:?}");
        assert_eq!(runs[..5], [1; 5], "{greys:?}");
        let slow: usize = runs[5..].iter().sum();
        assert!((12..=16).contains(&slow), "{greys:?}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn decode_problems_are_worded_and_a_clean_decode_is_none() {
        let clean = DecodeReport {
            frames: 18,
            expected: Some(20),
            error_count: 0,
            errors: vec![],
            stopped_early: false,
        };
        // Fewer frames than packets alone: a variable frame rate, not damage.
        assert_eq!(clean.problem(), None);
        let damaged = DecodeReport {
            error_count: 5,
            errors: vec![without_address(
                "[h264 @ 0x55d5bf218e00] error while decoding MB 1 0",
            )],
            ..clean.clone()
        };
        let text = damaged.problem().unwrap();
        assert!(text.contains("2 of its 20 frames"), "{text}");
        assert!(
            text.contains("5 decoding errors")
                && text.contains("[h264] error while decoding MB 1 0; ..."),
            "{text}"
        );
        let cut = DecodeReport {
            stopped_early: true,
            ..clean
        };
        assert!(cut.problem().unwrap().contains("after frame 18"));
    }

    #[test]
    fn missing_and_bogus_videos_are_errors_naming_the_file() {
        let err = probe(Path::new("/nonexistent/clip.mp4")).unwrap_err();
        assert!(err.to_string().contains("clip.mp4"), "{err}");
        if have_ffmpeg() {
            let dir =
                std::env::temp_dir().join(format!("posekit-video-bad-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("bogus.mp4");
            std::fs::write(&path, b"this is not a video").unwrap();
            let err = probe(&path).unwrap_err();
            assert!(err.to_string().contains("bogus.mp4"), "{err}");
            std::fs::remove_dir_all(&dir).ok();
        }
    }
}
