//! The `--device` argument: `cpu`, `cuda` or `cuda:N`.
//!
//! Asking for a GPU that libtorch cannot see is an error rather than a silent fall-back to the
//! CPU: a benchmark or a training run that quietly runs on the CPU wastes hours and reports
//! wrong figures.

use posekit_core::{Error, Result};
use tch::{Cuda, Device};

/// Parses a device name and checks that it exists.
pub fn parse_device(spec: &str) -> Result<Device> {
    let device = parse_device_name(spec)?;
    if let Device::Cuda(index) = device {
        check_cuda(index)?;
    }
    Ok(device)
}

/// Checks that libtorch can run on `device` (a GPU it cannot see is an error).
pub fn check_device(device: Device) -> Result<()> {
    match device {
        Device::Cuda(index) => check_cuda(index),
        _ => Ok(()),
    }
}

/// Parses a device name without asking libtorch whether it exists (pure syntax).
pub fn parse_device_name(spec: &str) -> Result<Device> {
    let s = spec.trim().to_ascii_lowercase();
    match s.as_str() {
        "cpu" => Ok(Device::Cpu),
        "cuda" | "gpu" => Ok(Device::Cuda(0)),
        _ => {
            let index = s
                .strip_prefix("cuda:")
                .or_else(|| s.strip_prefix("gpu:"))
                .ok_or_else(|| bad_device(spec))?;
            let index: usize = index.parse().map_err(|_| bad_device(spec))?;
            Ok(Device::Cuda(index))
        }
    }
}

fn bad_device(spec: &str) -> Error {
    Error::Shape(format!(
        "unknown device '{spec}': expected cpu, cuda or cuda:N (N = GPU index)"
    ))
}

fn check_cuda(index: usize) -> Result<()> {
    if !Cuda::is_available() {
        return Err(Error::Shape(format!(
            "device cuda:{index} requested but CUDA is not available to libtorch (no NVIDIA \
             driver/GPU visible, or the installed torch wheel is a CPU-only build)"
        )));
    }
    let count = Cuda::device_count();
    if index as i64 >= count {
        return Err(Error::Shape(format!(
            "device cuda:{index} requested but only {count} CUDA device(s) are visible \
             (indices 0..{})",
            count - 1
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names() {
        assert_eq!(parse_device_name("cpu").unwrap(), Device::Cpu);
        assert_eq!(parse_device_name(" CUDA ").unwrap(), Device::Cuda(0));
        assert_eq!(parse_device_name("cuda:3").unwrap(), Device::Cuda(3));
        for bad in ["", "tpu", "cuda:", "cuda:-1", "cuda:x", "cuda0"] {
            let err = parse_device_name(bad).unwrap_err().to_string();
            assert!(err.contains("expected cpu, cuda or cuda:N"), "{bad}: {err}");
        }
    }

    #[test]
    fn cpu_is_always_available_and_cuda_is_checked() {
        assert_eq!(parse_device("cpu").unwrap(), Device::Cpu);
        match parse_device("cuda:0") {
            Ok(d) => assert!(Cuda::is_available() && d == Device::Cuda(0)),
            Err(e) => {
                assert!(!Cuda::is_available() || Cuda::device_count() == 0);
                assert!(e.to_string().contains("cuda:0"), "{e}");
            }
        }
        // No machine has this many GPUs.
        assert!(parse_device("cuda:4096").is_err());
    }
}
