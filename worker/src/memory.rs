//! Process-wide heap settings for training.

/// Keeps memory that libtorch frees inside the process, for the next step to reuse, instead
/// of handing it back to the kernel. Returns whether the settings took effect.
///
/// A training step allocates and frees the same large activation and gradient buffers every
/// step. By default glibc serves blocks above its mmap threshold with fresh `mmap`s and unmaps
/// them on free, so every step faults its whole working set in again: AlexNet at 224², batch
/// 32, made 1.23 M minor page faults and spent 3.1 s in the kernel over 9 steps. Serving every
/// block from the heap and never trimming it left 0.31 M faults and 0.9 s, and 13–20 % more
/// images per second. The price: the worker's resident memory stays at its peak, as it does
/// with PyTorch's CUDA caching allocator.
///
/// Call it first thing in `main`, before other threads start. Other C libraries: no effect.
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes allocator parameters; called before threads exist.
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, 0) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
