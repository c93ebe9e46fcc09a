//! What the user named on the command line, expanded into the pictures and videos to run on.
//!
//! Every named path is checked before any network runs: a typo in the fifth argument should
//! fail in the first second, not after four videos.
//!
//! Each input gets a [`Input::name`] that tells it apart from every other input of the run:
//! its file name, or, when two inputs share a file name (`a/x.jpg`, `b/x.jpg`), the shortest
//! tail of its path that differs (`a/x.jpg`). The name is the `file_name` of its results and
//! the path of its drawing inside the output folder, so the two always agree.

use std::collections::{HashMap, HashSet};
use std::path::{Component, Path, PathBuf};

use crate::error::bail;

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
    /// The path as the user gave it (or the folder given, joined with the file's name).
    pub path: PathBuf,
    pub kind: InputKind,
    /// Unique among the run's inputs: see the module documentation. `/`-separated.
    pub name: String,
}

impl Input {
    /// The file's own name (`x.jpg`), as COCO's `images[].file_name` spells it: the key to a
    /// ground truth's image ids.
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
/// error naming it. A file named twice (directly and through its folder) is run once.
pub fn expand_inputs(paths: &[PathBuf]) -> crate::Result<Vec<Input>> {
    let mut inputs = list_inputs(paths)?;
    let mut seen = HashSet::new();
    inputs.retain(|input| seen.insert(canonical(&input.path)));
    assign_names(&mut inputs);
    Ok(inputs)
}

/// The absolute path with links resolved, for telling files apart; the path itself if it
/// cannot be resolved (it was checked to exist, so that is only a race).
pub(crate) fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Gives each input the shortest tail of its resolved path that no other input shares.
fn assign_names(inputs: &mut [Input]) {
    let parts: Vec<Vec<String>> = inputs
        .iter()
        .map(|input| {
            canonical(&input.path)
                .components()
                .filter_map(|c| match c {
                    Component::Normal(part) => Some(part.to_string_lossy().into_owned()),
                    _ => None,
                })
                .collect()
        })
        .collect();
    let tail = |p: &[String], k: usize| p[p.len().saturating_sub(k)..].join("/");
    let mut depth = vec![1usize; inputs.len()];
    // Deepen every name of a clashing group until the group's names differ; distinct resolved
    // paths always differ at full depth, so this ends.
    loop {
        let mut groups: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, p) in parts.iter().enumerate() {
            groups.entry(tail(p, depth[i])).or_default().push(i);
        }
        let mut changed = false;
        for members in groups.values().filter(|m| m.len() > 1) {
            for &i in members {
                if depth[i] < parts[i].len() {
                    depth[i] += 1;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    for (i, input) in inputs.iter_mut().enumerate() {
        input.name = if parts[i].is_empty() {
            input.path.display().to_string()
        } else {
            tail(&parts[i], depth[i])
        };
    }
}

fn list_inputs(paths: &[PathBuf]) -> crate::Result<Vec<Input>> {
    if paths.is_empty() {
        bail!("no input given: name images, folders of images or videos");
    }
    let mut inputs = Vec::new();
    for path in paths {
        if path.is_dir() {
            let entries = std::fs::read_dir(path).map_err(|e| {
                crate::error::invalid!("{}: cannot list this folder: {e}", path.display())
            })?;
            let mut images = Vec::new();
            for entry in entries {
                let entry = entry.map_err(|e| {
                    crate::error::invalid!("{}: cannot list this folder: {e}", path.display())
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
                name: String::new(),
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
                name: String::new(),
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

    #[test]
    fn inputs_sharing_a_file_name_get_distinct_names_and_duplicates_run_once() {
        let dir = std::env::temp_dir().join(format!("posekit-infer-names-{}", std::process::id()));
        for sub in ["p/A", "q/A", "B"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        for file in ["p/A/x.jpg", "q/A/x.jpg", "B/x.jpg", "B/y.jpg"] {
            std::fs::write(dir.join(file), b"x").unwrap();
        }
        let inputs = expand_inputs(&[
            dir.join("p/A"),
            dir.join("q/A"),
            dir.join("B"),
            dir.join("B/y.jpg"),
        ])
        .unwrap();
        let names: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["p/A/x.jpg", "q/A/x.jpg", "B/x.jpg", "y.jpg"]);
        std::fs::remove_dir_all(&dir).ok();
    }
}
