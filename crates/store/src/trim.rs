//! Handing freed memory back to the system after a large read.

/// Gives the memory freed since the last call back to the system. glibc keeps freed memory
/// in its arenas (one per thread that allocated, and the daemon's blocking threads change)
/// and returns only the top of each heap; after a burst of requests, or a verification that
/// read the whole chain on threads of its own, the daemon held several times its live heap
/// (docs/benchmarks.md, memory). `malloc_trim` also releases the free pages inside them.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: malloc_trim takes no pointers and is thread-safe; it only hands free pages
        // of the allocator's own heaps back to the kernel.
        unsafe {
            malloc_trim(0);
        }
    }
}
