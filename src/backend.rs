//! Choosing where tensors live, once, at start-up: burn's wgpu backend on a GPU, burn's `flex`
//! CPU backend otherwise. The rest of the code takes the resulting [`Device`] and is written
//! once for both.
//!
//! `auto` takes wgpu only for a hardware adapter (discrete, integrated or virtual GPU). A
//! software Vulkan device such as lavapipe is much slower than `flex` for training (see
//! ARCHITECTURE.md), so it is used only when asked for with `gpu`.
//!
//! The adapters are probed once per process, quietly: wgpu enables `VK_KHR_wayland_surface` on
//! every Vulkan instance, so Mesa's device-selection layer asks Wayland for the default GPU,
//! and libwayland prints "error: XDG_RUNTIME_DIR is invalid or not set in the environment." on
//! each try where that variable is missing (a container, a CI job, `sudo`). wgpu has no option
//! to leave the extension out, so the binary first sets the variable to
//! [`fallback_runtime_dir`], the replacement folder the XDG Base Directory spec asks for.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use burn::tensor::wgpu::wgpu;
use burn::tensor::{Device, DeviceKind};

/// What the user asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// wgpu on a hardware GPU when there is one, flex on the CPU otherwise.
    #[default]
    Auto,
    /// wgpu on the best adapter there is (a software one if nothing else).
    Gpu,
    /// burn's flex backend on the CPU.
    Cpu,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    Flex,
    Wgpu,
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Flex => "flex (CPU)",
            Self::Wgpu => "wgpu",
        }
    }
}

/// The chosen device, without autodiff (training takes `device.clone().autodiff()`).
#[derive(Clone, Debug)]
pub struct Backend {
    pub device: Device,
    pub kind: BackendKind,
    /// The adapter's name and type, or the CPU description.
    pub adapter: String,
    /// Why this backend was taken, in a sentence.
    pub reason: String,
    /// The wgpu instance, adapter, device and queue burn trains on (wgpu only): the app
    /// hands them to eframe so that training and rendering share one device.
    pub wgpu_setup: Option<burn::tensor::wgpu::WgpuSetup>,
}

impl Backend {
    pub fn flex(reason: impl Into<String>) -> Self {
        crate::keep_freed_memory();
        Self {
            device: Device::flex(),
            kind: BackendKind::Flex,
            adapter: cpu_and_threads(),
            reason: reason.into(),
            wgpu_setup: None,
        }
    }

    /// One line for logs and the status bar.
    pub fn describe(&self) -> String {
        format!("{} on {} ({})", self.kind.name(), self.adapter, self.reason)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(
        "no wgpu adapter found (no Vulkan, Metal or DX12 driver answered). Install a GPU driver \
         (on Debian, mesa-vulkan-drivers gives a software one for testing) or use --backend cpu"
    )]
    NoAdapter,
    #[error("could not start wgpu on {adapter}: {message}. Use --backend cpu to train on the CPU")]
    Init { adapter: String, message: String },
}

/// `run` on one of rayon's threads (the global pool's), where flex's and msbreg's parallel
/// loops run. Called from outside the pool, each parallel loop is a job handed to the pool
/// while the calling thread sleeps until it is done: one hand-off and wake-up per operation,
/// several hundred per training step. From inside, the calling worker takes the first part
/// of each loop itself and the others steal the rest. The training step runs here: 1.03x
/// images/s at one thread, 1.08x at two (AMD EPYC, AVX2; BENCHMARKS.md). Inside the pool already, `run`
/// runs on the calling thread.
pub fn on_cpu_threads<R: Send>(run: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| run())
}

/// The CPU's model as the kernel reports it (`/proc/cpuinfo`), `None` where it does not.
pub fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split(':').nth(1))
        .map(|model| model.trim().to_owned())
        .filter(|model| !model.is_empty())
}

/// "AMD EPYC, 2 threads": what flex computes on, for logs and the status bar.
fn cpu_and_threads() -> String {
    let threads = rayon::current_num_threads();
    let model = cpu_model().unwrap_or_else(|| "the CPU".into());
    let plural = if threads == 1 { "" } else { "s" };
    format!("{model}, {threads} thread{plural}")
}

/// A wgpu adapter as found by [`probe_adapters`].
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    pub name: String,
    pub device_type: wgpu::DeviceType,
    pub backend: wgpu::Backend,
    /// Which [`DeviceKind`] selects this adapter in burn.
    pub kind: DeviceKind,
}

impl AdapterSummary {
    pub fn is_hardware(&self) -> bool {
        !matches!(
            self.device_type,
            wgpu::DeviceType::Cpu | wgpu::DeviceType::Other
        )
    }

    pub fn describe(&self) -> String {
        let kind = match self.device_type {
            wgpu::DeviceType::DiscreteGpu => "discrete GPU",
            wgpu::DeviceType::IntegratedGpu => "integrated GPU",
            wgpu::DeviceType::VirtualGpu => "virtual GPU",
            wgpu::DeviceType::Cpu => "software rasteriser on the CPU",
            wgpu::DeviceType::Other => "unknown device type",
        };
        format!("{} ({kind}, {:?})", self.name, self.backend)
    }
}

/// The adapters, probed once per process: the list does not change while it runs, and each
/// probe creates a wgpu instance, which loads every Vulkan driver installed.
static ADAPTERS: OnceLock<Vec<AdapterSummary>> = OnceLock::new();

/// Adapters of the native graphics APIs (Vulkan, Metal, DX12), in enumeration order. The
/// first call probes; later calls return the same list.
///
/// Call [`fallback_runtime_dir`] first, where the environment may lack `XDG_RUNTIME_DIR`.
pub fn probe_adapters() -> Vec<AdapterSummary> {
    ADAPTERS.get_or_init(probe_adapters_now).clone()
}

fn probe_adapters_now() -> Vec<AdapterSummary> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: wgpu::Backends::PRIMARY,
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::PRIMARY));
    let mut counts = [0usize; 3];
    adapters
        .iter()
        .map(|adapter| {
            let info = adapter.get_info();
            let mut next = |slot: usize| {
                let index = counts[slot];
                counts[slot] += 1;
                index
            };
            let kind = match info.device_type {
                wgpu::DeviceType::DiscreteGpu => DeviceKind::DiscreteGpu(next(0)),
                wgpu::DeviceType::IntegratedGpu => DeviceKind::IntegratedGpu(next(1)),
                wgpu::DeviceType::VirtualGpu => DeviceKind::VirtualGpu(next(2)),
                wgpu::DeviceType::Cpu | wgpu::DeviceType::Other => DeviceKind::Cpu,
            };
            AdapterSummary {
                name: info.name,
                device_type: info.device_type,
                backend: info.backend,
                kind,
            }
        })
        .collect()
}

/// A private replacement for `XDG_RUNTIME_DIR` when the environment has none (or one that is not
/// an absolute path): `msbreg-runtime-UID` in the temp folder, made with mode 0700 if it does
/// not exist. `None` when the variable is fine, or when that folder is not a real folder owned
/// by this user with mode 0700 (someone else made it: then it is not used).
///
/// This only finds the folder; the caller sets the variable, before any thread starts.
#[cfg(target_os = "linux")]
pub fn fallback_runtime_dir() -> Option<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};

    let current = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
    if current.is_some_and(|dir| dir.is_absolute()) {
        return None;
    }
    // The owner of this process's /proc entry is its effective user.
    let uid = std::fs::metadata("/proc/self").ok()?.uid();
    let dir = std::env::temp_dir().join(format!("msbreg-runtime-{uid}"));
    // Fails when it exists (mkdir does not follow a symbolic link): checked below either way.
    let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
    let meta = std::fs::symlink_metadata(&dir).ok()?;
    let private = meta.is_dir() && meta.uid() == uid && meta.permissions().mode() & 0o777 == 0o700;
    private.then_some(dir)
}

/// Elsewhere libwayland is not in the probe.
#[cfg(not(target_os = "linux"))]
pub fn fallback_runtime_dir() -> Option<PathBuf> {
    None
}

/// The wgpu device of this process, made once: burn's runtime for an adapter cannot be
/// initialised twice.
static WGPU: Mutex<Option<Backend>> = Mutex::new(None);

fn wgpu_backend(adapter: &AdapterSummary, reason: String) -> Result<Backend, BackendError> {
    let mut cached = WGPU
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(backend) = cached.as_ref() {
        return Ok(backend.clone());
    }
    let (device, setup) = Device::wgpu_options()
        .device_kind(adapter.kind.clone())
        .init_with_setup()
        .map_err(|err| BackendError::Init {
            adapter: adapter.describe(),
            message: err.to_string(),
        })?;
    let backend = Backend {
        device,
        kind: BackendKind::Wgpu,
        adapter: adapter.describe(),
        reason,
        wgpu_setup: Some(setup),
    };
    *cached = Some(backend.clone());
    Ok(backend)
}

/// The backend for `choice`, with the reason it was taken.
///
/// # Errors
/// With `gpu` when no adapter exists or wgpu fails to start on it. `auto` never fails: it
/// falls back to the CPU and says why.
pub fn select(choice: BackendChoice) -> Result<Backend, BackendError> {
    match choice {
        BackendChoice::Cpu => Ok(Backend::flex("asked for with --backend cpu")),
        BackendChoice::Gpu => {
            let adapters = probe_adapters();
            let best = adapters
                .iter()
                .find(|adapter| adapter.is_hardware())
                .or_else(|| adapters.first())
                .ok_or(BackendError::NoAdapter)?;
            let reason = if best.is_hardware() {
                "asked for with --backend gpu".to_owned()
            } else {
                "asked for with --backend gpu; this is a software adapter, far slower than \
                 --backend cpu for training"
                    .to_owned()
            };
            wgpu_backend(best, reason)
        }
        BackendChoice::Auto => {
            let adapters = probe_adapters();
            match adapters.iter().find(|adapter| adapter.is_hardware()) {
                Some(gpu) => match wgpu_backend(gpu, "a hardware GPU was found".to_owned()) {
                    Ok(backend) => Ok(backend),
                    Err(err) => Ok(Backend::flex(format!("wgpu failed to start: {err}"))),
                },
                None if adapters.is_empty() => Ok(Backend::flex("no GPU adapter was found")),
                None => Ok(Backend::flex(format!(
                    "no hardware GPU; only {}",
                    adapters
                        .iter()
                        .map(AdapterSummary::describe)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))),
            }
        }
    }
}
