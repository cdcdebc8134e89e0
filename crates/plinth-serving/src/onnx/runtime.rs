//! The ONNX Runtime shared library: where it is found, loading it once per process, and its
//! version. The rule for finding it is in the `onnx` module's doc.

use std::ffi::CStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use ort::environment::Environment;

/// The environment variable that names the library when the configuration does not (the name
/// the `ort` crate and its users already know).
pub const LIBRARY_ENV: &str = "ORT_DYLIB_PATH";

/// ONNX Runtime, loaded into this process: cheap to clone, shared by every model.
#[derive(Clone)]
pub struct OnnxRuntime {
    inner: Arc<Loaded>,
}

struct Loaded {
    environment: Environment,
    library: PathBuf,
    origin: LibraryOrigin,
    version: String,
}

/// How the library's path was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LibraryOrigin {
    /// Named by the caller (the configuration).
    Configured,
    /// Named by the `ORT_DYLIB_PATH` environment variable.
    Environment,
    /// Found in the `onnxruntime` package of the `python3` on `PATH`.
    Python,
}

impl fmt::Display for LibraryOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LibraryOrigin::Configured => "configured",
            LibraryOrigin::Environment => "from ORT_DYLIB_PATH",
            LibraryOrigin::Python => "found in python3's onnxruntime package",
        })
    }
}

/// Why ONNX Runtime cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "no ONNX Runtime library to load: name one in the configuration, set ORT_DYLIB_PATH to the \
         path of libonnxruntime, or install the onnxruntime Python package for the python3 on PATH \
         (looking there: {discovery})"
    )]
    NotFound { discovery: String },
    #[error("the ONNX Runtime library {} ({origin}) cannot be used: {reason}", path.display())]
    Unusable { path: PathBuf, origin: LibraryOrigin, reason: String },
    #[error("ONNX Runtime is already loaded from {}; one process cannot also load {}", loaded.display(), requested.display())]
    AlreadyLoaded { loaded: PathBuf, requested: PathBuf },
    #[error("ONNX Runtime could not create its environment: {0}")]
    Environment(String),
}

/// The runtime once loaded; set only on success, so a failed attempt can be retried.
static RUNTIME: OnceLock<OnnxRuntime> = OnceLock::new();
/// The library `ort` holds, once it has loaded one: it cannot load another afterwards.
static LIBRARY: OnceLock<PathBuf> = OnceLock::new();
/// Serialises first loads (ONNX Runtime allows one environment per process).
static LOADING: Mutex<()> = Mutex::new(());

impl OnnxRuntime {
    /// Loads ONNX Runtime from `configured`, else from `ORT_DYLIB_PATH`, else from python3's
    /// onnxruntime package. A later call with the same library answers the runtime already
    /// loaded; one with another library is refused (`AlreadyLoaded`). A missing or unloadable
    /// library is an error; nothing here panics.
    pub fn init(configured: Option<&Path>) -> Result<OnnxRuntime, RuntimeError> {
        let (path, origin) = locate(configured)?;
        let unusable = |reason: String| RuntimeError::Unusable { path: path.clone(), origin, reason };
        // An absolute, resolved path: ort resolves a relative one against the executable's
        // directory, and two spellings of one file are one library.
        let library = std::fs::canonicalize(&path).map_err(|e| unusable(e.to_string()))?;
        if !library.is_file() {
            return Err(unusable("not a file".into()));
        }
        let _loading = LOADING.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(loaded) = LIBRARY.get()
            && *loaded != library
        {
            return Err(RuntimeError::AlreadyLoaded { loaded: loaded.clone(), requested: library });
        }
        if let Some(runtime) = RUNTIME.get() {
            return Ok(runtime.clone());
        }
        let builder = ort::init_from(&library).map_err(|e| unusable(e.to_string()))?;
        let _ = LIBRARY.set(library.clone());
        let version = library_version(&library).map_err(unusable)?;
        let environment =
            builder.with_name("plinth").with_telemetry(false).build().map_err(|e| RuntimeError::Environment(e.to_string()))?;
        let runtime = OnnxRuntime { inner: Arc::new(Loaded { environment, library, origin, version }) };
        let _ = RUNTIME.set(runtime.clone());
        Ok(runtime)
    }

    /// The library's version, as it reports it (e.g. `1.31.1`).
    pub fn version(&self) -> &str {
        &self.inner.version
    }

    /// The library loaded, its path resolved.
    pub fn library(&self) -> &Path {
        &self.inner.library
    }

    pub fn origin(&self) -> LibraryOrigin {
        self.inner.origin
    }

    pub(crate) fn environment(&self) -> &Environment {
        &self.inner.environment
    }
}

impl fmt::Debug for OnnxRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnnxRuntime")
            .field("version", &self.inner.version)
            .field("library", &self.inner.library)
            .field("origin", &self.inner.origin)
            .finish_non_exhaustive()
    }
}

/// The library's path by the rule: the configured one, the environment's, python3's.
fn locate(configured: Option<&Path>) -> Result<(PathBuf, LibraryOrigin), RuntimeError> {
    if let Some(path) = configured {
        return Ok((path.to_path_buf(), LibraryOrigin::Configured));
    }
    if let Some(path) = std::env::var_os(LIBRARY_ENV).filter(|p| !p.is_empty()) {
        return Ok((PathBuf::from(path), LibraryOrigin::Environment));
    }
    match python_package_dir() {
        Ok(package) => {
            let capi = package.join("capi");
            find_library_in(&capi).map(|path| (path, LibraryOrigin::Python)).ok_or_else(|| RuntimeError::NotFound {
                discovery: format!(
                    "the package at {} has no {}onnxruntime library in capi/",
                    package.display(),
                    std::env::consts::DLL_PREFIX
                ),
            })
        }
        Err(discovery) => Err(RuntimeError::NotFound { discovery }),
    }
}

/// The directory of the onnxruntime package python3 would import, found without importing it.
fn python_package_dir() -> Result<PathBuf, String> {
    const FIND: &str = "import importlib.util as u\n\
                        s = u.find_spec('onnxruntime')\n\
                        print(list(s.submodule_search_locations or [])[0] if s else '')";
    let out =
        Command::new("python3").args(["-c", FIND]).stdin(Stdio::null()).output().map_err(|e| format!("python3 could not be run: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!("python3 failed ({}): {}", out.status, stderr.trim().lines().last().unwrap_or("")));
    }
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if dir.is_empty() {
        return Err("python3 has no onnxruntime package".into());
    }
    Ok(PathBuf::from(dir))
}

/// The ONNX Runtime library in a package's `capi` directory (`libonnxruntime.so.1.31.1`, say,
/// but not `libonnxruntime_providers_shared.so`); the last by name when there are several.
pub(crate) fn find_library_in(capi: &Path) -> Option<PathBuf> {
    let stem = format!("{}onnxruntime", std::env::consts::DLL_PREFIX);
    let suffix = std::env::consts::DLL_SUFFIX;
    let mut found: Vec<PathBuf> = std::fs::read_dir(capi)
        .ok()?
        .filter_map(Result::ok)
        .filter(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.strip_prefix(&stem).is_some_and(|rest| rest.starts_with('.') && rest.contains(suffix))
        })
        .map(|entry| entry.path())
        .filter(|path| path.is_file())
        .collect();
    found.sort();
    found.pop()
}

/// The version the library reports through `OrtGetApiBase()->GetVersionString()`, which `ort`
/// reads when loading it but does not expose.
fn library_version(library: &Path) -> Result<String, String> {
    type GetApiBase = unsafe extern "C" fn() -> *const ort::sys::OrtApiBase;
    // SAFETY: `ort` has just loaded this library and found ONNX Runtime's entry point in it;
    // opening it again only adds a reference to the handle the process already has.
    let lib = unsafe { libloading::Library::new(library) }.map_err(|e| e.to_string())?;
    // SAFETY: `OrtGetApiBase` has this signature in every ONNX Runtime (onnxruntime_c_api.h).
    let get_api_base = unsafe { lib.get::<GetApiBase>(b"OrtGetApiBase\0") }.map_err(|e| e.to_string())?;
    // SAFETY: the entry point takes nothing and answers a pointer to a static table, or null.
    let base = unsafe { get_api_base() };
    if base.is_null() {
        return Err("OrtGetApiBase answered nothing".into());
    }
    // SAFETY: `base` points to ONNX Runtime's static `OrtApiBase`; `GetVersionString` answers a
    // static, NUL-terminated string (or null), which is copied before the handle is dropped.
    let text = unsafe { ((*base).GetVersionString)() };
    if text.is_null() {
        return Err("the library reports no version".into());
    }
    // SAFETY: as above: non-null, NUL-terminated, alive as long as the library.
    Ok(unsafe { CStr::from_ptr(text) }.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_is_picked_out_of_the_package_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(find_library_in(dir.path()), None);
        let prefix = std::env::consts::DLL_PREFIX;
        let suffix = std::env::consts::DLL_SUFFIX;
        for name in
            [format!("{prefix}onnxruntime_providers_shared{suffix}"), "__init__.py".into(), format!("{prefix}onnxruntime{suffix}.1.31.1")]
        {
            std::fs::write(dir.path().join(name), b"").expect("write");
        }
        assert_eq!(find_library_in(dir.path()), Some(dir.path().join(format!("{prefix}onnxruntime{suffix}.1.31.1"))));
        assert_eq!(find_library_in(&dir.path().join("absent")), None);
    }

    #[test]
    fn a_missing_configured_library_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("libonnxruntime.so");
        let err = OnnxRuntime::init(Some(&missing)).expect_err("missing");
        let text = err.to_string();
        assert!(matches!(err, RuntimeError::Unusable { origin: LibraryOrigin::Configured, .. }), "{text}");
        assert!(text.contains("libonnxruntime.so (configured) cannot be used"), "{text}");
        let not_a_library = dir.path().join("libonnxruntime.so.1");
        std::fs::write(&not_a_library, b"not a shared library").expect("write");
        let err = OnnxRuntime::init(Some(&not_a_library)).expect_err("not a library");
        assert!(matches!(err, RuntimeError::Unusable { .. }), "{err}");
    }
}
