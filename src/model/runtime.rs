//! The ONNX Runtime environment: one per process, loaded from a shared library at run time.
//!
//! ort's `load-dynamic` feature means nothing is linked at build time; the library
//! (`libonnxruntime.so` from the PyPI `onnxruntime` or `onnxruntime-gpu` wheel) is found by
//! [`find_library`] and loaded once. Sessions are created through [`Runtime::session`], which
//! registers the configured execution providers in order and reports which one is used.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::ep::{self, ExecutionProvider};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

/// Where `scripts/setup` installs the library; searched after the explicit settings.
pub const SYSTEM_LIBRARY_DIR: &str = "/usr/local/lib/inspectd";
/// Environment variable that names the library explicitly (ort's own name for it).
pub const LIBRARY_ENV: &str = "ORT_DYLIB_PATH";

/// An ONNX Runtime execution provider inspectd knows how to configure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// NVIDIA TensorRT (needs `onnxruntime-gpu` and TensorRT libraries).
    Tensorrt,
    /// NVIDIA CUDA (needs `onnxruntime-gpu` and the CUDA runtime).
    Cuda,
    /// ONNX Runtime's own CPU kernels; always available.
    Cpu,
}

impl Provider {
    /// The name used in config files and logs.
    pub fn name(self) -> &'static str {
        match self {
            Provider::Tensorrt => "tensorrt",
            Provider::Cuda => "cuda",
            Provider::Cpu => "cpu",
        }
    }

    /// Parses a config name such as `"cuda"`.
    pub fn parse(name: &str) -> Option<Provider> {
        match name.to_ascii_lowercase().as_str() {
            "tensorrt" | "trt" => Some(Provider::Tensorrt),
            "cuda" => Some(Provider::Cuda),
            "cpu" => Some(Provider::Cpu),
            _ => None,
        }
    }

    /// Whether the loaded ONNX Runtime library was built with this provider.
    fn is_compiled_in(self) -> Result<bool, ort::Error> {
        match self {
            Provider::Tensorrt => ep::TensorRT::is_available(),
            Provider::Cuda => ep::CUDA::is_available(),
            Provider::Cpu => Ok(true),
        }
    }

    fn dispatch(self) -> ep::ExecutionProviderDispatch {
        match self {
            Provider::Tensorrt => ep::TensorRT::default().build().error_on_failure(),
            Provider::Cuda => ep::CUDA::default().build().error_on_failure(),
            Provider::Cpu => ep::CPU::default().build().error_on_failure(),
        }
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How sessions are created: validated settings, ready to use.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeSettings {
    /// Explicit path to `libonnxruntime.so` (config `runtime.library`); searched for when `None`.
    pub library: Option<PathBuf>,
    /// Providers to try, in order. CPU is always the last resort unless a provider is required.
    pub providers: Vec<Provider>,
    /// Providers whose absence is a hard error instead of a CPU fallback.
    pub required: Vec<Provider>,
    /// Intra-op threads of the process-wide pool all sessions share; 0 lets ONNX Runtime choose
    /// (one per core). Fixed by the first [`Runtime::init`] of the process.
    pub intra_threads: usize,
}

impl RuntimeSettings {
    /// Settings that try every required provider: one missing from `providers` is tried
    /// first, because a provider that is never tried can never fail.
    pub fn new(
        library: Option<PathBuf>,
        mut providers: Vec<Provider>,
        required: Vec<Provider>,
        intra_threads: usize,
    ) -> RuntimeSettings {
        for p in required.iter().rev() {
            if !providers.contains(p) {
                providers.insert(0, *p);
            }
        }
        RuntimeSettings { library, providers, required, intra_threads }
    }
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        RuntimeSettings {
            library: None,
            providers: vec![Provider::Cpu],
            required: Vec::new(),
            intra_threads: 0,
        }
    }
}

/// Errors from loading ONNX Runtime or creating sessions.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("ONNX Runtime library not found (looked in: {searched}); run scripts/setup, or set runtime.library in the config or {LIBRARY_ENV} to the path of libonnxruntime.so")]
    LibraryNotFound { searched: String },
    #[error("cannot load ONNX Runtime from {path}: {source}; check that it is libonnxruntime.so from the onnxruntime wheel (scripts/setup installs one)")]
    Load { path: PathBuf, source: ort::LoadDynamicError },
    #[error(
        "ONNX Runtime was already initialised from {loaded}, cannot switch to {requested} without a restart"
    )]
    AlreadyLoaded { loaded: PathBuf, requested: PathBuf },
    #[error("execution provider '{provider}' is required but {why}; install onnxruntime-gpu (scripts/setup --gpu) and the NVIDIA libraries, or remove it from runtime.required_providers")]
    ProviderMissing { provider: Provider, why: String },
    #[error("ONNX Runtime: {0}")]
    Ort(String),
    #[error("cannot create an ONNX Runtime session for {model}: {reason}")]
    Session { model: String, reason: String },
}

impl<T> From<ort::Error<T>> for RuntimeError {
    fn from(e: ort::Error<T>) -> Self {
        RuntimeError::Ort(e.to_string())
    }
}

/// The process-wide ONNX Runtime: the library, its environment and the session settings.
#[derive(Clone)]
pub struct Runtime {
    env: Environment,
    settings: RuntimeSettings,
    library: PathBuf,
}

/// The library path and environment of the one environment this process may have.
static ENVIRONMENT: OnceLock<(PathBuf, Environment)> = OnceLock::new();

impl Runtime {
    /// Loads the library (once per process) and returns a runtime with these settings.
    ///
    /// Later calls reuse the environment; asking for a different library is an error because
    /// ONNX Runtime cannot be unloaded.
    pub fn init(settings: RuntimeSettings) -> Result<Runtime, RuntimeError> {
        let library = find_library(settings.library.as_deref())?;
        let (loaded, env) = match ENVIRONMENT.get() {
            Some(existing) => existing.clone(),
            None => {
                let env = ort::init_from(&library)
                    .map_err(|source| RuntimeError::Load { path: library.clone(), source })?
                    .with_name("inspectd")
                    .with_global_thread_pool(thread_pool(settings.intra_threads)?)
                    .build()?;
                info!(library = %library.display(), threads = settings.intra_threads, "ONNX Runtime loaded.");
                ENVIRONMENT.get_or_init(|| (library.clone(), env)).clone()
            }
        };
        if same_file(&loaded, &library) {
            Ok(Runtime { env, settings, library: loaded })
        } else {
            Err(RuntimeError::AlreadyLoaded { loaded, requested: library })
        }
    }

    /// The path of the loaded library.
    pub fn library(&self) -> &Path {
        &self.library
    }

    /// The settings sessions are created with.
    /// Threads the pool runs (`intra_threads`, or one per core when 0): what the CPU kNN
    /// kernel uses too, so the two never oversubscribe the cores.
    pub fn threads(&self) -> usize {
        match self.settings.intra_threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        }
    }

    pub fn settings(&self) -> &RuntimeSettings {
        &self.settings
    }

    /// Creates a session for an ONNX model held in memory, returning it with the provider used.
    ///
    /// `what` names the model in errors and logs (usually its file path).
    pub fn session(&self, what: &str, model: &[u8]) -> Result<(Session, Provider), RuntimeError> {
        let mut builder = Session::builder(&self.env)?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(session_error(what))?;
        if self.settings.intra_threads > 0 {
            builder = builder.with_intra_threads(self.settings.intra_threads).map_err(session_error(what))?;
        }
        let (builder, used) = self.register_providers(builder, what)?;
        let mut builder = builder;
        let session = builder.commit_from_memory(model).map_err(session_error(what))?;
        info!(model = what, provider = %used, "ONNX Runtime session created.");
        Ok((session, used))
    }

    /// A CPU session that runs on its caller's thread alone: its own one-thread pool instead of
    /// the shared one. [`crate::model::lanes`] runs several of these side by side, one image
    /// each, where the shared pool would split every operator of one image across the cores.
    pub fn single_thread_session(&self, what: &str, model: &[u8]) -> Result<Session, RuntimeError> {
        let session = Session::builder(&self.env)?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(session_error(what))?
            .with_independent_thread_pool()
            .map_err(session_error(what))?
            .with_intra_threads(1)
            .map_err(session_error(what))?
            .with_inter_threads(1)
            .map_err(session_error(what))?
            .commit_from_memory(model)
            .map_err(session_error(what))?;
        Ok(session)
    }

    /// Registers providers in the configured order; the first that registers is the one used.
    fn register_providers(
        &self,
        mut builder: ort::session::builder::SessionBuilder,
        what: &str,
    ) -> Result<(ort::session::builder::SessionBuilder, Provider), RuntimeError> {
        let mut used = None;
        for &provider in &self.settings.providers {
            let required = self.settings.required.contains(&provider);
            match try_register(builder, provider) {
                (b, Ok(())) => {
                    builder = b;
                    used.get_or_insert(provider);
                }
                (b, Err(why)) if required => {
                    drop(b);
                    return Err(RuntimeError::ProviderMissing { provider, why });
                }
                (b, Err(why)) => {
                    builder = b;
                    warn!(model = what, provider = %provider, reason = %why, "Execution provider unavailable; falling back.");
                }
            }
            if provider == Provider::Cpu {
                break;
            }
        }
        if used.is_none() {
            warn!(model = what, "No configured execution provider could be used; running on CPU.");
        }
        Ok((builder, used.unwrap_or(Provider::Cpu)))
    }
}

/// Maps a session builder's error to one that names the model.
fn session_error<T>(what: &str) -> impl Fn(ort::Error<T>) -> RuntimeError + '_ {
    move |e| RuntimeError::Session { model: what.to_string(), reason: e.to_string() }
}

/// One intra-op pool for all sessions. Per-session pools would each spin after a run and steal
/// the cores from the next session (backbone, then descriptor), which halved kNN speed here.
/// The pool does not spin either: after the descriptor, the CPU kNN kernel (`cfa::knn`) needs
/// the same cores, and spinning ONNX Runtime threads took them (its batch-1 time rose by 40%).
/// Its threads are ours ([`PoolThreads`]), so that before each run they can be kept off the
/// calling thread's core ([`crate::util::workers::keep_adopted_off_caller`]).
fn thread_pool(intra_threads: usize) -> Result<ort::environment::GlobalThreadPoolOptions, RuntimeError> {
    Ok(ort::environment::GlobalThreadPoolOptions::default()
        .with_intra_threads(intra_threads)?
        .with_inter_threads(1)?
        .with_spin_control(false)?
        .with_thread_manager(PoolThreads)?)
}

/// Creates ONNX Runtime's pool threads as named std threads registered with `util::workers`.
struct PoolThreads;

impl ort::environment::ThreadManager for PoolThreads {
    type Thread = std::thread::JoinHandle<()>;

    fn create(&self, work: impl FnOnce() + Send + 'static) -> ort::Result<Self::Thread> {
        std::thread::Builder::new()
            .name("ort-pool".into())
            .spawn(move || {
                crate::util::workers::adopt_current();
                work()
            })
            .map_err(|e| ort::Error::new(format!("cannot start an ONNX Runtime pool thread: {e}")))
    }

    fn join(thread: Self::Thread) -> ort::Result<()> {
        thread.join().map_err(|_| ort::Error::new("an ONNX Runtime pool thread panicked"))
    }
}

/// Registers one provider, handing the builder back whether or not it worked.
fn try_register(
    builder: ort::session::builder::SessionBuilder,
    provider: Provider,
) -> (ort::session::builder::SessionBuilder, Result<(), String>) {
    match provider.is_compiled_in() {
        Ok(true) => {}
        Ok(false) => {
            let why = format!("the loaded ONNX Runtime library was not built with {provider} support");
            return (builder, Err(why));
        }
        Err(e) => return (builder, Err(e.to_string())),
    }
    match builder.with_execution_providers([provider.dispatch()]) {
        Ok(b) => (b, Ok(())),
        Err(e) => {
            let why = e.to_string();
            (e.recover(), Err(why))
        }
    }
}

/// Finds `libonnxruntime.so`: the explicit path, then `ORT_DYLIB_PATH`, then next to the
/// executable, then the system directory `scripts/setup` installs to, then `.local/lib` of a
/// source checkout.
pub fn find_library(explicit: Option<&Path>) -> Result<PathBuf, RuntimeError> {
    let candidates = library_candidates(explicit);
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    let searched = candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
    Err(RuntimeError::LibraryNotFound { searched })
}

fn library_candidates(explicit: Option<&Path>) -> Vec<PathBuf> {
    // An explicit choice is the only candidate: silently using another library would hide a typo.
    if let Some(path) = explicit {
        return vec![path.to_path_buf()];
    }
    if let Some(path) = std::env::var_os(LIBRARY_ENV).filter(|v| !v.is_empty()) {
        return vec![PathBuf::from(path)];
    }
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) {
        candidates.push(dir.join("libonnxruntime.so"));
        candidates.push(dir.join("../lib/inspectd/libonnxruntime.so"));
    }
    candidates.push(Path::new(SYSTEM_LIBRARY_DIR).join("libonnxruntime.so"));
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join(".local/lib/libonnxruntime.so"));
    candidates
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_names_round_trip() {
        for p in [Provider::Tensorrt, Provider::Cuda, Provider::Cpu] {
            assert_eq!(Provider::parse(p.name()), Some(p));
        }
        assert_eq!(Provider::parse("CUDA"), Some(Provider::Cuda));
        assert_eq!(Provider::parse("opencl"), None);
    }

    #[test]
    fn explicit_missing_library_is_a_clear_error() {
        let err = find_library(Some(Path::new("/nonexistent/libonnxruntime.so"))).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("/nonexistent/libonnxruntime.so"), "{text}");
        assert!(text.contains("scripts/setup"), "{text}");
    }
}
