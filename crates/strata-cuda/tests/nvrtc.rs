//! Every kernel the backend can generate compiles through NVRTC for Ampere (sm_80) and Hopper
//! (sm_90a), without a GPU: CI runs this with the NVRTC of the PyPI wheel `nvidia-cuda-nvrtc`
//! (`scripts/test` puts it on `LD_LIBRARY_PATH` and sets `STRATA_REQUIRE_NVRTC=1`, so a
//! missing library fails instead of skipping).

#[test]
fn every_kernel_compiles_for_sm80_and_sm90a() {
    if !strata_cuda::compile::nvrtc_available() {
        assert!(
            std::env::var_os("STRATA_REQUIRE_NVRTC").is_none(),
            "STRATA_REQUIRE_NVRTC is set but libnvrtc cannot be loaded (LD_LIBRARY_PATH?)"
        );
        eprintln!("libnvrtc not found: kernels not compiled (scripts/test provides it)");
        return;
    }
    let (major, minor) = strata_cuda::compile::nvrtc_version().unwrap();
    // A private cache directory: this test must really compile.
    let cache = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("nvrtc-cache-{}", std::process::id()));
    unsafe { std::env::set_var("STRATA_CUDA_CACHE", &cache) };
    // STRATA_NVRTC_ONLY=gemm (say) compiles one family, for quick work on one kernel file.
    let only = std::env::var("STRATA_NVRTC_ONLY").ok();
    let mut jobs: Vec<(&str, &str, String)> = Vec::new();
    for (family, src) in strata_cuda::all_kernel_sources() {
        if only.as_deref().is_none_or(|o| o == family) {
            for arch in ["sm_80", "sm_90a"] {
                jobs.push((family, arch, src.clone()));
            }
        }
    }
    assert!(!jobs.is_empty(), "no kernel family is named {only:?}");
    // Two workers (the CI machine's cores): NVRTC compiles independent programs in parallel.
    let queue = std::sync::Mutex::new(jobs);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    loop {
                        let Some((family, arch, src)) = queue.lock().unwrap().pop() else { break };
                        let t = std::time::Instant::now();
                        let cubin = strata_cuda::compile::compile(&src, arch)
                            .unwrap_or_else(|e| panic!("{family} for {arch}: {e}"));
                        assert!(cubin.starts_with(b"\x7fELF"), "a cubin is an ELF image");
                        eprintln!(
                            "NVRTC {major}.{minor}: {family} kernels for {arch} in {:.1} s ({} KiB)",
                            t.elapsed().as_secs_f64(),
                            cubin.len() / 1024
                        );
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("a compile worker panicked");
        }
    });
    // A kernel is compiled under its key's name, which the cubin's symbol carries.
    let (name, src) = strata_cuda::compile::named(
        "gemm splitk bfloat16 Relu",
        "extern \"C\" __global__ void strata_kernel(float* x) { x[threadIdx.x] = 1.f; }",
    );
    let cubin = strata_cuda::compile::compile(&src, "sm_80").unwrap();
    assert_eq!(name, "strata_gemm_splitk_bfloat16_Relu");
    assert!(cubin.windows(name.len()).any(|w| w == name.as_bytes()), "no symbol {name} in the cubin");
    // A kernel that does not compile is an error carrying NVRTC's log.
    let err = strata_cuda::compile::compile("extern \"C\" __global__ void k() { undeclared(); }", "sm_80").unwrap_err();
    assert!(err.to_string().contains("undeclared"), "{err}");
    let _ = std::fs::remove_dir_all(cache);
}
