//! What the user named on the command line, expanded into the pictures and videos to run on.
//!
//! Every named path is checked before any network runs: a typo in the fifth argument should
//! fail in the first second, not after four videos.

use std::path::{Path, PathBuf};

use anyhow::bail;

use crate::pipelines::image_io::is_image_path;
use crate::pipelines::video::is_video_path;

/// Whether an input is decoded as one picture or as a stream of frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    Image,
    Video,
}

/// One file to run on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub path: PathBuf,
    pub kind: InputKind,
}

impl Input {
    /// The name written as `file_name` in the results: the file's own name, as COCO's
    /// `images[].file_name` spells it, so results can be joined with a ground truth.
    pub fn file_name(&self) -> String {
        file_name_of(&self.path)
    }
}

pub(crate) fn file_name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Expands `paths` in order: a file is taken by its extension (JPEG/PNG image or a video
/// container), a folder gives its JPEG/PNG files sorted by name (not recursing: a folder of
/// pictures is the common case, and a recursive walk could pick up the output folder of an
/// earlier run). A missing path, a file of another kind or a folder without pictures is an
/// error naming it.
pub fn expand_inputs(paths: &[PathBuf]) -> anyhow::Result<Vec<Input>> {
    if paths.is_empty() {
        bail!("no input given: name images, folders of images or videos");
    }
    let mut inputs = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries = std::fs::read_dir(path)
                .map_err(|e| anyhow::anyhow!("{}: cannot list this folder: {e}", path.display()))?;
            let mut images = Vec::new();
            for entry in entries {
                let entry = entry.map_err(|e| {
                    anyhow::anyhow!("{}: cannot list this folder: {e}", path.display())
                })?;
                let p = entry.path();
                if p.is_file() && is_image_path(&p) {
                    images.push(p);
                }
            }
            if images.is_empty() {
                bail!("{}: this folder has no JPEG or PNG file", path.display());
            }
            images.sort();
            inputs.extend(images.into_iter().map(|path| Input {
                path,
                kind: InputKind::Image,
            }));
        } else if path.is_file() {
            let kind = if is_image_path(path) {
                InputKind::Image
            } else if is_video_path(path) {
                InputKind::Video
            } else {
                bail!(
                    "{}: not an image (.jpg, .jpeg, .png) or a video (.mp4, .avi, .mov, .mkv, .webm, \
                     .m4v, .mpg, .mpeg), judging by its extension",
                    path.display()
                );
            };
            inputs.push(Input {
                path: path.clone(),
                kind,
            });
        } else {
            bail!("{}: no such file or folder", path.display());
        }
    }
    Ok(inputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_expand_to_sorted_pictures_and_bad_paths_are_named() {
        let dir = std::env::temp_dir().join(format!("posekit-infer-inputs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["b.png", "a.JPG", "notes.txt", "c.jpeg"] {
            std::fs::write(dir.join(name), b"x").unwrap();
        }
        let clip = dir.join("clip.mp4");
        std::fs::write(&clip, b"x").unwrap();
        let inputs = expand_inputs(&[dir.clone(), clip.clone()]).unwrap();
        let names: Vec<String> = inputs.iter().map(Input::file_name).collect();
        assert_eq!(names, ["a.JPG", "b.png", "c.jpeg", "clip.mp4"]);
        assert_eq!(inputs[3].kind, InputKind::Video);

        let err = expand_inputs(&[dir.join("missing.jpg")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("missing.jpg") && err.contains("no such file"),
            "{err}"
        );
        let err = expand_inputs(&[dir.join("notes.txt")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("notes.txt"), "{err}");
        let empty = dir.join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        let err = expand_inputs(&[empty]).unwrap_err().to_string();
        assert!(
            err.contains("empty") && err.contains("no JPEG or PNG"),
            "{err}"
        );
        assert!(expand_inputs(&[]).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
