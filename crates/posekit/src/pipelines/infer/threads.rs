//! How many CPU threads the network gets when `posekit infer` runs a video and the user did not
//! say (`--threads`).
//!
//! A video runs as a pipeline (`video_pipeline.rs` beside this file): ffmpeg decoding, the resize, the
//! grouping and tracking, the drawing and x264 encoding all run beside the network, on the
//! CPU, for every frame. Given every core (ONNX Runtime's default: one thread per physical
//! core), the network competes with them for each core, and on a small machine it loses more
//! than the extra thread gains: on the 2-core dev box the bundled model ran a video at 17-18
//! frames/s on two threads and 21.7 on one (BENCHMARKS.md, "Video throughput"). So a video on
//! the CPU leaves the network all physical cores but one; the other stages get that one.

use std::collections::HashSet;

/// Network threads for a video on the CPU: the physical cores less one, or `None` (the
/// engine's own default) where there is only one core to share.
pub fn video_network_threads() -> Option<usize> {
    let cores = physical_cores();
    (cores >= 2).then(|| cores - 1)
}

/// Physical cores this process may run on: distinct (package, core) pairs of the CPUs in its
/// affinity mask on Linux (so that two hyperthreads of one core count once, as ONNX Runtime
/// counts them), else the logical CPUs the standard library reports.
pub fn physical_cores() -> usize {
    let logical = std::thread::available_parallelism().map_or(1, |n| n.get());
    linux_physical_cores().map_or(logical, |n| n.clamp(1, logical))
}

#[cfg(target_os = "linux")]
fn linux_physical_cores() -> Option<usize> {
    // SAFETY: `cpu_set_t` is plain data; sched_getaffinity fills it for this thread.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        set
    };
    let mut cores = HashSet::new();
    for cpu in 0..libc::CPU_SETSIZE as usize {
        // SAFETY: `cpu` is below CPU_SETSIZE.
        if !unsafe { libc::CPU_ISSET(cpu, &set) } {
            continue;
        }
        let topology = format!("/sys/devices/system/cpu/cpu{cpu}/topology");
        let read = |name: &str| std::fs::read_to_string(format!("{topology}/{name}")).ok();
        let package = read("physical_package_id")?;
        let core = read("core_id")?;
        cores.insert((package.trim().to_owned(), core.trim().to_owned()));
    }
    (!cores.is_empty()).then_some(cores.len())
}

#[cfg(not(target_os = "linux"))]
fn linux_physical_cores() -> Option<usize> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn physical_cores_are_at_least_one_and_at_most_the_logical_cpus() {
        let logical = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cores = physical_cores();
        assert!((1..=logical).contains(&cores), "{cores} of {logical}");
        assert_eq!(video_network_threads(), (cores >= 2).then(|| cores - 1));
    }
}
