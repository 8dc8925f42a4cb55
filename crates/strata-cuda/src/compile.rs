//! Kernels from source: NVRTC compiles CUDA C++ to a cubin for the device's architecture, and
//! an on-disk cache keyed by the source, the options, the architecture and NVRTC's version
//! keeps the second run of a program from compiling at all.

use std::path::PathBuf;

use cudarc::nvrtc::sys;
use strata_core::{Error, Result};

/// Strata's CUDA header library (element types, loads/stores, index arithmetic, the integer
/// semantics of the CPU backend), prepended to every kernel.
pub const HEADER: &str = include_str!("../kernels/strata.cuh");

fn err(message: String) -> Error {
    Error::InvalidArgument { op: "nvrtc", message }
}

/// Whether libnvrtc can be loaded.
pub fn nvrtc_available() -> bool {
    // SAFETY: only tries to open the library.
    unsafe { sys::is_culib_present() }
}

/// NVRTC's version, `(major, minor)`.
pub fn nvrtc_version() -> Result<(i32, i32)> {
    if !nvrtc_available() {
        return Err(err(
            "libnvrtc was not found (install the CUDA toolkit's NVRTC or put it on LD_LIBRARY_PATH)".into()
        ));
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: writes two ints.
    let r = unsafe { sys::nvrtcVersion(&mut major, &mut minor) };
    if r != sys::nvrtcResult::NVRTC_SUCCESS {
        return Err(err(format!("nvrtcVersion failed: {r:?}")));
    }
    Ok((major, minor))
}

/// `STRATA_NVRTC_VERBOSE=1` adds ptxas's resource report (registers, shared memory, spills)
/// and prints NVRTC's log of every compile to stderr.
fn verbose() -> bool {
    std::env::var_os("STRATA_NVRTC_VERBOSE").is_some_and(|v| v != "0")
}

fn options(arch: &str) -> Vec<String> {
    let mut o =
        vec![format!("--gpu-architecture={arch}"), "-std=c++17".into(), "--device-as-default-execution-space".into()];
    if verbose() {
        o.push("--ptxas-options=-v".into());
    }
    o
}

/// Two FNV-1a hashes with different seeds: a 128-bit cache key that is the same in every run.
fn key(parts: &[&[u8]]) -> String {
    let mut out = String::new();
    for seed in [0xcbf2_9ce4_8422_2325u64, 0x6c62_272e_07bb_0142] {
        let mut h = seed;
        for p in parts {
            for &b in p.iter().chain(&[0xffu8]) {
                h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
            }
        }
        out.push_str(&format!("{h:016x}"));
    }
    out
}

/// The cache directory: `$STRATA_CUDA_CACHE`, else `$XDG_CACHE_HOME/strata/cuda`, else
/// `~/.cache/strata/cuda`.
pub fn cache_dir() -> PathBuf {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    env("STRATA_CUDA_CACHE").unwrap_or_else(|| {
        env("XDG_CACHE_HOME")
            .or_else(|| env("HOME").map(|h| h.join(".cache")))
            .unwrap_or_else(std::env::temp_dir)
            .join("strata")
            .join("cuda")
    })
}

/// Compiles `source` (the header is prepended) for `arch` (`sm_90a`, `sm_80`, ...) and returns
/// the cubin, from the disk cache when it is there. A compile error is an `Err` with NVRTC's log.
pub fn compile(source: &str, arch: &str) -> Result<Vec<u8>> {
    let (major, minor) = nvrtc_version()?;
    let full = format!("{HEADER}\n{source}");
    let opts = options(arch);
    let k = key(&[full.as_bytes(), opts.join(" ").as_bytes(), format!("nvrtc {major}.{minor}").as_bytes()]);
    let path = cache_dir().join(format!("{k}.cubin"));
    if let Ok(cubin) = std::fs::read(&path) {
        return Ok(cubin);
    }
    let _span = strata_trace::span("nvrtc compile");
    let cubin = compile_uncached(&full, &opts)?;
    // The cache is an optimisation: failing to write it costs a compile next time, nothing more.
    if std::fs::create_dir_all(cache_dir()).is_ok() {
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, &cubin).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
    }
    Ok(cubin)
}

struct Program(sys::nvrtcProgram);

impl Drop for Program {
    fn drop(&mut self) {
        // SAFETY: the program was created by nvrtcCreateProgram and is destroyed once.
        unsafe { sys::nvrtcDestroyProgram(&mut self.0) };
    }
}

fn compile_uncached(source: &str, opts: &[String]) -> Result<Vec<u8>> {
    use std::ffi::{CString, c_char};
    let src = CString::new(source).map_err(|_| err("kernel source contains a NUL byte".into()))?;
    let name = CString::new("strata.cu").unwrap();
    let mut prog = std::ptr::null_mut();
    // SAFETY: valid C strings; no headers passed.
    let r = unsafe {
        sys::nvrtcCreateProgram(&mut prog, src.as_ptr(), name.as_ptr(), 0, std::ptr::null(), std::ptr::null())
    };
    if r != sys::nvrtcResult::NVRTC_SUCCESS {
        return Err(err(format!("nvrtcCreateProgram failed: {r:?}")));
    }
    let prog = Program(prog);
    let c_opts: Vec<CString> = opts.iter().map(|o| CString::new(o.as_str()).unwrap()).collect();
    let ptrs: Vec<*const c_char> = c_opts.iter().map(|o| o.as_ptr()).collect();
    // SAFETY: `ptrs` points at live C strings for the duration of the call.
    let r = unsafe { sys::nvrtcCompileProgram(prog.0, ptrs.len() as i32, ptrs.as_ptr()) };
    let log = || {
        let mut size = 0usize;
        // SAFETY: the log is read into a buffer of the size NVRTC reports.
        unsafe {
            sys::nvrtcGetProgramLogSize(prog.0, &mut size);
            let mut buf = vec![0u8; size.max(1)];
            sys::nvrtcGetProgramLog(prog.0, buf.as_mut_ptr() as *mut c_char);
            String::from_utf8_lossy(&buf[..size.saturating_sub(1)]).into_owned()
        }
    };
    if r != sys::nvrtcResult::NVRTC_SUCCESS {
        return Err(err(format!("compiling a kernel ({}) failed:\n{}", opts.join(" "), log())));
    }
    if verbose() {
        eprintln!("NVRTC ({}):\n{}", opts.join(" "), log());
    }
    let mut size = 0usize;
    // SAFETY: the cubin is read into a buffer of the size NVRTC reports.
    unsafe {
        let r = sys::nvrtcGetCUBINSize(prog.0, &mut size);
        if r != sys::nvrtcResult::NVRTC_SUCCESS || size == 0 {
            return Err(err(format!("no cubin for {} ({r:?}): use a real architecture such as sm_90a", opts[0])));
        }
        let mut cubin = vec![0u8; size];
        let r = sys::nvrtcGetCUBIN(prog.0, cubin.as_mut_ptr() as *mut c_char);
        if r != sys::nvrtcResult::NVRTC_SUCCESS {
            return Err(err(format!("nvrtcGetCUBIN failed: {r:?}")));
        }
        Ok(cubin)
    }
}
