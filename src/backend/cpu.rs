//! CPU backend helpers: the GEMM entry point used by conv2d and linear.
//!
//! `gemm` (with its `x86-v4` feature) picks AVX-512/AVX2/SSE kernels at run time.

/// Makes glibc keep freed memory for reuse instead of returning it to the kernel: by default
/// every allocation over 32 MiB is its own `mmap` (and smaller ones grow the threshold only up
/// to there), so each large activation was page-faulted in afresh and unmapped on drop. Measured
/// (`spadework bench --backend cpu --only "SPADE ade20k" --runs 5`, two alternated runs each):
/// 1563 / 1553 → 1484 / 1468 ms, peak RSS 746 → 781 MiB. Called once by the binaries at start;
/// a no-op off glibc.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_MMAP_MAX: i32 = -4;
        // SAFETY: mallopt only changes allocator tuning parameters; both values are valid.
        unsafe {
            mallopt(M_MMAP_MAX, 0);
            mallopt(M_TRIM_THRESHOLD, i32::MAX);
        }
    }
}

/// Returns the free memory [`keep_freed_memory`] holds to the kernel (glibc `malloc_trim`), so a
/// measurement that follows starts from what is live (the bench calls it between workloads).
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: malloc_trim only releases free heap memory; it has no preconditions.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// `len` floats not yet written, for an output that its producer writes completely: skips the
/// zeroing `vec![0.0; len]` costs (3.5 % of the ade20k forward in `perf`). Turn it into the
/// result with [`assume_written`].
pub fn unwritten(len: usize) -> Vec<std::mem::MaybeUninit<f32>> {
    let mut v = Vec::with_capacity(len);
    // SAFETY: MaybeUninit needs no initialization; the capacity is `len`.
    unsafe { v.set_len(len) };
    v
}

/// The floats of [`unwritten`] once every element has been written.
///
/// # Safety
/// Every element of `v` must have been written.
pub unsafe fn assume_written(v: Vec<std::mem::MaybeUninit<f32>>) -> Vec<f32> {
    let mut v = std::mem::ManuallyDrop::new(v);
    let (ptr, len, cap) = (v.as_mut_ptr(), v.len(), v.capacity());
    // SAFETY: MaybeUninit<f32> has the layout of f32, the allocation is handed over whole, and
    // the caller guarantees every element is initialized.
    unsafe { Vec::from_raw_parts(ptr.cast::<f32>(), len, cap) }
}

/// Row-major matrix views for [`sgemm`]: element (i, j) is at `ptr[i*rs + j*cs]`.
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rs: isize,
    pub cs: isize,
}

/// `dst[m×n] (row stride dst_rs) = (accumulate ? dst : 0) + a[m×k] · b[k×n]`.
///
/// Bounds are checked here so that the unsafe call below cannot touch memory outside the slices.
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    a: MatRef,
    b: MatRef,
    threads: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |r: MatRef, rows: usize, cols: usize| -> usize {
        (rows.saturating_sub(1)) * r.rs as usize + (cols.saturating_sub(1)) * r.cs as usize
    };
    assert!(a.rs >= 0 && a.cs >= 0 && b.rs >= 0 && b.cs >= 0);
    assert!(
        k == 0 || last(a, m, k) < a.data.len(),
        "sgemm: lhs out of bounds"
    );
    assert!(
        k == 0 || last(b, k, n) < b.data.len(),
        "sgemm: rhs out of bounds"
    );
    assert!(
        (m - 1) * dst_rs + n - 1 < dst.len(),
        "sgemm: dst out of bounds"
    );
    let par = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: every index touched is inside the slices (checked above); dst does not alias a or b.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs,
            a.rs,
            b.data.as_ptr(),
            b.cs,
            b.rs,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            par,
        );
    }
}

/// Which SIMD level the CPU offers (for the stderr banner and bench JSON).
pub fn simd_level() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            return "avx512";
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return "avx2+fma";
        }
        "sse2"
    }
    #[cfg(target_arch = "aarch64")]
    {
        "neon"
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        "scalar"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn sgemm_matches_naive_with_strided_dst() {
        let (m, n, k) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
        let dst_rs = 10;
        let mut d = vec![1.0f32; m * dst_rs];
        sgemm(
            m,
            n,
            k,
            &mut d,
            dst_rs,
            true,
            MatRef {
                data: &a,
                rs: k as isize,
                cs: 1,
            },
            MatRef {
                data: &b,
                rs: n as isize,
                cs: 1,
            },
            1,
        );
        for i in 0..m {
            for j in 0..dst_rs {
                let want = if j < n {
                    1.0 + (0..k).map(|t| a[i * k + t] * b[t * n + j]).sum::<f32>()
                } else {
                    1.0
                };
                assert!((d[i * dst_rs + j] - want).abs() < 1e-5);
            }
        }
    }
}
