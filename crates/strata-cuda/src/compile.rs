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

/// The kernel `key`'s source as it is compiled, and the C symbol of its entry point: every
/// kernel source names its entry `strata_kernel`, defined here as the key's symbol, so that
/// profilers and compute-sanitizer name the kernel they report ("gemm ws float8_e4m3fn ...
/// cols: 224" becomes `strata_gemm_ws_float8_e4m3fn_..._cols_224`): letters and digits kept,
/// every run of other characters one underscore; past 160 characters, cut and followed by a
/// hash of the whole key, so that two long keys still differ.
pub fn named(key: &str, source: &str) -> (String, String) {
    let mut name = String::from("strata_");
    for c in key.chars() {
        if c.is_ascii_alphanumeric() {
            name.push(c);
        } else if !name.ends_with('_') {
            name.push('_');
        }
    }
    let mut name = name.trim_end_matches('_').to_owned();
    if name.len() > 160 {
        name.truncate(140);
        name = format!("{}_{}", name.trim_end_matches('_'), &self::key(&[key.as_bytes()])[..16]);
    }
    let source = format!("#define strata_kernel {name}\n{source}");
    (name, source)
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

#[cfg(test)]
mod tests {
    /// Kernel symbols are C identifiers that say which kernel they are, and long keys stay apart.
    #[test]
    fn kernels_are_named_by_their_keys() {
        let key = "gemm ws float8_e4m3fn float8_e4m3fn bfloat16 None WsConfig { right_k_major: true, cluster: 1, \
                   pingpong: false, cols: 224 }";
        let (name, source) = super::named(key, "extern \"C\" __global__ void strata_kernel() {}");
        assert_eq!(
            name,
            "strata_gemm_ws_float8_e4m3fn_float8_e4m3fn_bfloat16_None_WsConfig_right_k_major_true_cluster_1_\
             pingpong_false_cols_224"
        );
        assert!(source.starts_with(&format!("#define strata_kernel {name}\n")), "{source}");
        assert_eq!(super::named("random_bits", "").0, "strata_random_bits");
        let (a, b) =
            (super::named(&"fused (x + y) ".repeat(40), "").0, super::named(&"fused (x + z) ".repeat(40), "").0);
        assert!(a.len() <= 160 && b.len() <= 160, "{a} {b}");
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{a}");
        assert_ne!(a, b);
    }
}
