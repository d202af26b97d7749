//! Choosing the device (`cpu`, `cuda` or `cuda:N`) and the backend (`burn` or `libtorch`)
//! at run time, and running generic code on the pair chosen ([`Opened::run`]).
//!
//! Backends:
//! - `burn`: Burn's own kernels: `flex` (pure Rust) on the CPU, CubeCL on CUDA (feature
//!   `cuda`, which loads the driver and libraries when first used, so the build needs
//!   neither).
//! - `libtorch` (feature `tch`): Burn's `tch` backend, PyTorch's kernels (oneDNN on the
//!   CPU, cuDNN on GPUs), several times faster than flex on the CPU
//!   (`tools/bench/train_vs_pytorch.py`).
//!
//! `auto` (the default) takes LibTorch on the CPU when it is built in, Burn's CUDA backend
//! on GPUs when that is built in, and otherwise whichever is.
//!
//! The CUDA runtimes panic when the driver library is missing or the device does not
//! exist; [`open`] probes the device once, catches that panic and turns it into a
//! [`DeviceError`] that says what is wrong.

use burn::tensor::backend::AutodiffBackend;

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

/// The backend, as `--backend` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// LibTorch on the CPU when built in, Burn's CUDA backend on GPUs when built in.
    #[default]
    Auto,
    /// Burn's own kernels: flex on the CPU, CubeCL on CUDA.
    Burn,
    /// LibTorch (feature `tch`).
    Libtorch,
}

impl std::fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Burn => "burn",
            BackendChoice::Libtorch => "libtorch",
        })
    }
}

impl std::str::FromStr for BackendChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(BackendChoice::Auto),
            "burn" => Ok(BackendChoice::Burn),
            "libtorch" => Ok(BackendChoice::Libtorch),
            _ => Err(format!("`{s}` is not a backend: use auto, burn or libtorch")),
        }
    }
}

/// Why a device cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// CUDA asked for, but this build has no CUDA backend.
    #[error(
        "device {0}: this ctstream was built without CUDA support (rebuild with `cargo build --release --features cuda`), or use the CPU"
    )]
    NotBuilt(DeviceChoice),
    /// LibTorch asked for, but this build has no LibTorch backend.
    #[error(
        "backend libtorch: this ctstream was built without LibTorch (rebuild with tools/libtorch.sh, or `cargo build --release --features tch` with LIBTORCH_USE_PYTORCH=1 and PyTorch 2.9.0 installed), or use --backend burn"
    )]
    NoLibtorch,
    /// CUDA built in, but the driver or the device is not there.
    #[error(
        "device {device}: CUDA cannot be used on this machine ({message}); is the NVIDIA driver installed and the GPU visible (nvidia-smi)? Or use the CPU"
    )]
    Unusable {
        /// The device asked for.
        device: DeviceChoice,
        /// What the CUDA runtime said.
        message: String,
    },
}

/// Whether this build has Burn's CUDA backend.
pub const CUDA_BUILT: bool = cfg!(feature = "cuda");

/// Whether this build has the LibTorch backend.
pub const LIBTORCH_BUILT: bool = cfg!(feature = "tch");

/// The LibTorch backend with autodiff (feature `tch`).
#[cfg(feature = "tch")]
pub type LibtorchBackend = burn::backend::Autodiff<burn::backend::LibTorch<f32>>;

/// The CUDA backend with autodiff (feature `cuda`).
#[cfg(feature = "cuda")]
pub type CudaBackend = burn::backend::Autodiff<burn::backend::Cuda>;

/// Which backend `backend` means for `device` in this build.
///
/// # Errors
/// [`DeviceError::NotBuilt`] or [`DeviceError::NoLibtorch`] when the build lacks it.
pub fn resolve(device: DeviceChoice, backend: BackendChoice) -> Result<Engine, DeviceError> {
    let cuda_ok =
        |n| if CUDA_BUILT { Ok(Engine::BurnCuda(n)) } else { Err(DeviceError::NotBuilt(device)) };
    let torch_ok =
        |d| if LIBTORCH_BUILT { Ok(Engine::Libtorch(d)) } else { Err(DeviceError::NoLibtorch) };
    match (backend, device) {
        (BackendChoice::Burn, DeviceChoice::Cpu) => Ok(Engine::Flex),
        (BackendChoice::Burn, DeviceChoice::Cuda(n)) => cuda_ok(n),
        (BackendChoice::Libtorch, d) => torch_ok(d),
        (BackendChoice::Auto, DeviceChoice::Cpu) => {
            Ok(if LIBTORCH_BUILT { Engine::Libtorch(device) } else { Engine::Flex })
        }
        (BackendChoice::Auto, DeviceChoice::Cuda(n)) => {
            if CUDA_BUILT {
                cuda_ok(n)
            } else {
                torch_ok(device)
            }
        }
    }
}

/// A backend and device pair, resolved but not yet opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// Burn's flex on the CPU.
    Flex,
    /// Burn's CUDA backend on device N.
    BurnCuda(usize),
    /// LibTorch on the device.
    Libtorch(DeviceChoice),
}

impl std::fmt::Display for Engine {
    /// `flex`, `cuda:N` or `libtorch-cpu` / `libtorch-cuda:N` (what `config.json` records).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Engine::Flex => write!(f, "flex"),
            Engine::BurnCuda(n) => write!(f, "cuda:{n}"),
            Engine::Libtorch(d) => write!(f, "libtorch-{d}"),
        }
    }
}

impl Engine {
    /// The backend that `--backend` would name to get this engine again.
    pub fn backend(self) -> BackendChoice {
        match self {
            Engine::Flex | Engine::BurnCuda(_) => BackendChoice::Burn,
            Engine::Libtorch(_) => BackendChoice::Libtorch,
        }
    }

    /// Whether it runs on the CPU.
    pub fn is_cpu(self) -> bool {
        matches!(self, Engine::Flex | Engine::Libtorch(DeviceChoice::Cpu))
    }

    /// Whether one network call already uses every core (LibTorch's intra-op threads), so
    /// that running several calls at once only makes them compete; flex runs a call on one
    /// core.
    pub fn threads_inside(self) -> bool {
        !matches!(self, Engine::Flex)
    }
}

/// Generic code to run on whichever backend was opened: [`Opened::run`] calls
/// [`OnBackend::run`] with the autodiff backend and its device (use `B::InnerBackend` for
/// inference).
pub trait OnBackend {
    /// What the code returns.
    type Output;
    /// Runs on backend `B`.
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output;
}

/// A device opened on a backend, checked to compute.
#[derive(Debug, Clone)]
pub enum Opened {
    /// Burn's flex on the CPU.
    Flex,
    /// Burn's CUDA backend.
    #[cfg(feature = "cuda")]
    BurnCuda(burn::backend::cuda::CudaDevice),
    /// LibTorch.
    #[cfg(feature = "tch")]
    Libtorch(burn::backend::libtorch::LibTorchDevice),
}

impl Opened {
    /// Runs `code` on this backend and device.
    pub fn run<C: OnBackend>(&self, code: C) -> C::Output {
        match self {
            Opened::Flex => code.run::<super::CpuBackend>(Default::default()),
            #[cfg(feature = "cuda")]
            Opened::BurnCuda(d) => code.run::<CudaBackend>(d.clone()),
            #[cfg(feature = "tch")]
            Opened::Libtorch(d) => code.run::<LibtorchBackend>(*d),
        }
    }
}

/// Opens `engine`: the CPU backends as they are, a CUDA device after a test sum.
///
/// # Errors
/// [`DeviceError`] when the engine is not built in or the device cannot compute.
pub fn open(engine: Engine) -> Result<Opened, DeviceError> {
    match engine {
        Engine::Flex => Ok(Opened::Flex),
        #[cfg(feature = "cuda")]
        Engine::BurnCuda(n) => cuda(n).map(Opened::BurnCuda),
        #[cfg(feature = "tch")]
        Engine::Libtorch(DeviceChoice::Cpu) => {
            Ok(Opened::Libtorch(burn::backend::libtorch::LibTorchDevice::Cpu))
        }
        #[cfg(feature = "tch")]
        Engine::Libtorch(DeviceChoice::Cuda(n)) => libtorch_cuda(n).map(Opened::Libtorch),
        #[allow(unreachable_patterns)]
        Engine::BurnCuda(n) => Err(DeviceError::NotBuilt(DeviceChoice::Cuda(n))),
        #[allow(unreachable_patterns)]
        Engine::Libtorch(_) => Err(DeviceError::NoLibtorch),
    }
}

/// Opens CUDA device `n` and checks it computes (a sum read back), turning the runtime's
/// panic on a missing driver or device into an error.
///
/// # Errors
/// [`DeviceError::Unusable`] with the runtime's message.
#[cfg(feature = "cuda")]
pub fn cuda(n: usize) -> Result<burn::backend::cuda::CudaDevice, DeviceError> {
    let device = burn::backend::cuda::CudaDevice::new(n);
    test_sum::<burn::backend::Cuda>(device.clone(), n, "")?;
    Ok(device)
}

/// Opens LibTorch's CUDA device `n` and checks it computes.
#[cfg(feature = "tch")]
fn libtorch_cuda(n: usize) -> Result<burn::backend::libtorch::LibTorchDevice, DeviceError> {
    let device = burn::backend::libtorch::LibTorchDevice::Cuda(n);
    test_sum::<burn::backend::LibTorch<f32>>(device, n, "LibTorch: ")?;
    Ok(device)
}

/// Sums [1, 2, 3] on CUDA device `n` of backend `B` and reads the sum back: 6, or the
/// runtime's panic (its message after `prefix`) as [`DeviceError::Unusable`].
#[cfg_attr(not(any(feature = "cuda", feature = "tch")), allow(dead_code))]
fn test_sum<B: burn::prelude::Backend>(
    device: B::Device,
    n: usize,
    prefix: &str,
) -> Result<(), DeviceError>
where
    B::Device: std::panic::UnwindSafe,
{
    use burn::prelude::*;
    let probe = move || {
        let t = Tensor::<B, 1>::from_floats([1.0, 2.0, 3.0], &device);
        t.sum().into_scalar().elem::<f32>()
    };
    match quietly(probe) {
        Ok(6.0) => Ok(()),
        Ok(v) => Err(DeviceError::Unusable {
            device: DeviceChoice::Cuda(n),
            message: format!("a test sum gave {v}, not 6"),
        }),
        Err(message) => Err(DeviceError::Unusable {
            device: DeviceChoice::Cuda(n),
            message: format!("{prefix}{message}"),
        }),
    }
}

/// Runs `f`, catching a panic without printing it. The error is the first panic message
/// seen while `f` ran, on any thread: the CUDA runtime panics on its own server thread
/// (with the cause, e.g. the driver library not found) and then on the caller's thread
/// (with a mere `RecvError`).
#[cfg_attr(not(any(feature = "cuda", feature = "tch")), allow(dead_code))]
fn quietly<T>(f: impl FnOnce() -> T + std::panic::UnwindSafe) -> Result<T, String> {
    use std::sync::{Arc, Mutex};
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let hook = std::panic::take_hook();
    {
        let seen = seen.clone();
        std::panic::set_hook(Box::new(move |info| {
            let p = info.payload();
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
            if let Ok(mut v) = seen.lock() {
                v.push(msg.unwrap_or_else(|| "the CUDA runtime panicked".to_string()));
            }
        }));
    }
    let r = std::panic::catch_unwind(f);
    std::panic::set_hook(hook);
    r.map_err(|_| {
        let first = seen
            .lock()
            .ok()
            .and_then(|v| v.first().cloned())
            .unwrap_or_else(|| "the CUDA runtime panicked".to_string());
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
        assert_eq!(
            "cuda:2".parse::<DeviceChoice>().map(|d| d.to_string()),
            Ok("cuda:2".to_string())
        );
        assert!("cuda:x".parse::<DeviceChoice>().is_err());
        assert!("gpu".parse::<DeviceChoice>().is_err());
    }

    /// The refusal a build without CUDA gives (checked in every build: the message is
    /// the same; which builds refuse is `CUDA_BUILT`).
    #[test]
    fn cuda_without_the_feature_is_a_clear_error() {
        let msg = DeviceError::NotBuilt(DeviceChoice::Cuda(1)).to_string();
        assert!(
            msg.contains("cuda:1")
                && msg.contains("without CUDA")
                && msg.contains("--features cuda"),
            "{msg}"
        );
        assert!(resolve(DeviceChoice::Cpu, BackendChoice::Burn).is_ok());
        assert_eq!(resolve(DeviceChoice::Cuda(1), BackendChoice::Burn).is_ok(), CUDA_BUILT);
    }

    #[test]
    fn backends_resolve_as_documented() {
        assert_eq!("libtorch".parse(), Ok(BackendChoice::Libtorch));
        assert_eq!(BackendChoice::default().to_string(), "auto");
        assert!("torch".parse::<BackendChoice>().is_err());
        assert_eq!(resolve(DeviceChoice::Cpu, BackendChoice::Burn).ok(), Some(Engine::Flex));
        let auto_cpu =
            if LIBTORCH_BUILT { Engine::Libtorch(DeviceChoice::Cpu) } else { Engine::Flex };
        assert_eq!(resolve(DeviceChoice::Cpu, BackendChoice::Auto).ok(), Some(auto_cpu));
        assert_eq!(resolve(DeviceChoice::Cpu, BackendChoice::Libtorch).is_ok(), LIBTORCH_BUILT);
        if CUDA_BUILT {
            assert_eq!(
                resolve(DeviceChoice::Cuda(1), BackendChoice::Auto).ok(),
                Some(Engine::BurnCuda(1))
            );
        }
        assert_eq!(Engine::Libtorch(DeviceChoice::Cuda(0)).to_string(), "libtorch-cuda:0");
        assert_eq!(Engine::Flex.to_string(), "flex");
        assert!(Engine::Flex.is_cpu() && !Engine::Flex.threads_inside());
        let msg = DeviceError::NoLibtorch.to_string();
        assert!(msg.contains("--features tch") && msg.contains("--backend burn"), "{msg}");
    }

    #[test]
    fn a_caught_panic_becomes_its_first_line() {
        assert_eq!(quietly(|| 3), Ok(3));
        assert_eq!(
            quietly(|| -> u8 { panic!("no libcuda.so\nmore") }),
            Err("no libcuda.so".to_string())
        );
        // The first panic wins, also from another thread (the runtime's server thread).
        let r = quietly(|| -> u8 {
            let _ = std::thread::spawn(|| panic!("Unable to load libcuda.so")).join();
            panic!("RecvError")
        });
        assert_eq!(r, Err("Unable to load libcuda.so".to_string()));
    }
}
