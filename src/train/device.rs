//! Choosing the device at run time: `cpu`, `cuda` or `cuda:N`.
//!
//! CUDA needs the cargo feature `cuda` at build time (Burn's CUDA backend, which loads the
//! driver and libraries when first used, so the build needs neither) and a working driver
//! at run time. Burn's CUDA runtime panics when the driver library is missing or the
//! device does not exist; [`cuda`] probes the device once, catches that panic and turns
//! it into a [`DeviceError`] that says what is wrong.

/// The device to train on, as `--device` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    /// The CPU (flex backend).
    Cpu,
    /// CUDA device N.
    Cuda(usize),
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceChoice::Cpu => write!(f, "cpu"),
            DeviceChoice::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl std::str::FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => Ok(DeviceChoice::Cuda(n)),
                _ => Err(format!("`{s}` is not a device: use cpu, cuda or cuda:N")),
            },
        }
    }
}

/// Why a device cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// CUDA asked for, but this build has no CUDA backend.
    #[error("device {0}: this ctstream was built without CUDA support (rebuild with `cargo build --release --features cuda`), or use the CPU")]
    NotBuilt(DeviceChoice),
    /// CUDA built in, but the driver or the device is not there.
    #[error("device {device}: CUDA cannot be used on this machine ({message}); is the NVIDIA driver installed and the GPU visible (nvidia-smi)? Or use the CPU")]
    Unusable {
        /// The device asked for.
        device: DeviceChoice,
        /// What the CUDA runtime said.
        message: String,
    },
}

/// Whether this build has the CUDA backend.
pub const CUDA_BUILT: bool = cfg!(feature = "cuda");

/// The CUDA backend with autodiff (feature `cuda`).
#[cfg(feature = "cuda")]
pub type CudaBackend = burn::backend::Autodiff<burn::backend::Cuda>;

/// Checks that `choice` can be used by this build, without touching any GPU: the CPU
/// always, CUDA only with the feature `cuda`.
///
/// # Errors
/// [`DeviceError::NotBuilt`].
pub fn check_built(choice: DeviceChoice) -> Result<(), DeviceError> {
    match choice {
        DeviceChoice::Cuda(_) if !CUDA_BUILT => Err(DeviceError::NotBuilt(choice)),
        _ => Ok(()),
    }
}

/// Opens CUDA device `n` and checks it computes (a sum read back), turning the runtime's
/// panic on a missing driver or device into an error.
///
/// # Errors
/// [`DeviceError::Unusable`] with the runtime's message.
#[cfg(feature = "cuda")]
pub fn cuda(n: usize) -> Result<burn::backend::cuda::CudaDevice, DeviceError> {
    use burn::prelude::*;
    let device = burn::backend::cuda::CudaDevice::new(n);
    let probe = {
        let device = device.clone();
        move || {
            let t = Tensor::<burn::backend::Cuda, 1>::from_floats([1.0, 2.0, 3.0], &device);
            t.sum().into_scalar().elem::<f32>()
        }
    };
    match quietly(probe) {
        Ok(6.0) => Ok(device),
        Ok(v) => Err(DeviceError::Unusable { device: DeviceChoice::Cuda(n), message: format!("a test sum gave {v}, not 6") }),
        Err(message) => Err(DeviceError::Unusable { device: DeviceChoice::Cuda(n), message }),
    }
}

/// Runs `f`, catching a panic without printing it. The error is the first panic message
/// seen while `f` ran, on any thread: the CUDA runtime panics on its own server thread
/// (with the cause, e.g. the driver library not found) and then on the caller's thread
/// (with a mere `RecvError`).
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
fn quietly<T>(f: impl FnOnce() -> T + std::panic::UnwindSafe) -> Result<T, String> {
    use std::sync::{Arc, Mutex};
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let hook = std::panic::take_hook();
    {
        let seen = seen.clone();
        std::panic::set_hook(Box::new(move |info| {
            let p = info.payload();
            let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
            if let Ok(mut v) = seen.lock() {
                v.push(msg.unwrap_or_else(|| "the CUDA runtime panicked".to_string()));
            }
        }));
    }
    let r = std::panic::catch_unwind(f);
    std::panic::set_hook(hook);
    r.map_err(|_| {
        let first = seen.lock().ok().and_then(|v| v.first().cloned()).unwrap_or_else(|| "the CUDA runtime panicked".to_string());
        // cudarc lists every library name it tried; the first clause says enough.
        let line = first.lines().next().unwrap_or_default();
        line.split(" - searched for library names").next().unwrap_or(line).to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_parse_and_print() {
        assert_eq!("cpu".parse(), Ok(DeviceChoice::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceChoice::Cuda(0)));
        assert_eq!("cuda:2".parse::<DeviceChoice>().map(|d| d.to_string()), Ok("cuda:2".to_string()));
        assert!("cuda:x".parse::<DeviceChoice>().is_err());
        assert!("gpu".parse::<DeviceChoice>().is_err());
    }

    /// The refusal a build without CUDA gives (checked in every build: the message is
    /// the same; which builds refuse is `CUDA_BUILT`).
    #[test]
    fn cuda_without_the_feature_is_a_clear_error() {
        let msg = DeviceError::NotBuilt(DeviceChoice::Cuda(1)).to_string();
        assert!(msg.contains("cuda:1") && msg.contains("without CUDA") && msg.contains("--features cuda"), "{msg}");
        assert!(check_built(DeviceChoice::Cpu).is_ok());
        assert_eq!(check_built(DeviceChoice::Cuda(1)).is_ok(), CUDA_BUILT);
    }

    #[test]
    fn a_caught_panic_becomes_its_first_line() {
        assert_eq!(quietly(|| 3), Ok(3));
        assert_eq!(quietly(|| -> u8 { panic!("no libcuda.so\nmore") }), Err("no libcuda.so".to_string()));
        // The first panic wins, also from another thread (the runtime's server thread).
        let r = quietly(|| -> u8 {
            let _ = std::thread::spawn(|| panic!("Unable to load libcuda.so")).join();
            panic!("RecvError")
        });
        assert_eq!(r, Err("Unable to load libcuda.so".to_string()));
    }
}
