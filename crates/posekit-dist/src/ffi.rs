//! The shim's C interface (`csrc/posekit_dist.h`), and the conversion of its error strings.

use std::ffi::{c_char, c_int, c_void, CStr};

#[repr(C)]
pub struct PkStore {
    _private: [u8; 0],
}

#[repr(C)]
pub struct PkGroup {
    _private: [u8; 0],
}

#[repr(C)]
pub struct PkWork {
    _private: [u8; 0],
}

extern "C" {
    fn pk_free_error(error: *mut c_char);
    pub fn pk_free_bytes(bytes: *mut u8);

    pub fn pk_store_new(
        host: *const c_char,
        port: u16,
        is_server: c_int,
        world_size: i32,
        timeout_ms: i64,
        out: *mut *mut PkStore,
    ) -> *mut c_char;
    pub fn pk_store_clone(store: *mut PkStore, out: *mut *mut PkStore) -> *mut c_char;
    pub fn pk_store_set_timeout(store: *mut PkStore, timeout_ms: i64) -> *mut c_char;
    pub fn pk_store_set(
        store: *mut PkStore,
        key: *const c_char,
        data: *const u8,
        len: usize,
    ) -> *mut c_char;
    pub fn pk_store_add(
        store: *mut PkStore,
        key: *const c_char,
        delta: i64,
        value: *mut i64,
    ) -> *mut c_char;
    pub fn pk_store_try_get(
        store: *mut PkStore,
        key: *const c_char,
        data: *mut *mut u8,
        len: *mut usize,
        found: *mut c_int,
    ) -> *mut c_char;
    pub fn pk_store_free(store: *mut PkStore);

    pub fn pk_gloo_compiled() -> c_int;
    pub fn pk_gloo_new(
        store: *mut PkStore,
        prefix: *const c_char,
        rank: i32,
        size: i32,
        timeout_ms: i64,
        interfaces: *const c_char,
        hostname: *const c_char,
        out: *mut *mut PkGroup,
    ) -> *mut c_char;
    pub fn pk_nccl_compiled() -> c_int;
    pub fn pk_nccl_new(
        store: *mut PkStore,
        prefix: *const c_char,
        rank: i32,
        size: i32,
        timeout_ms: i64,
        device: i32,
        out: *mut *mut PkGroup,
    ) -> *mut c_char;
    pub fn pk_group_free(group: *mut PkGroup);

    pub fn pk_group_broadcast_start(
        group: *mut PkGroup,
        tensor: *mut c_void,
        root: i32,
        out: *mut *mut PkWork,
    ) -> *mut c_char;
    pub fn pk_group_allreduce_start(
        group: *mut PkGroup,
        tensor: *mut c_void,
        op: i32,
        out: *mut *mut PkWork,
    ) -> *mut c_char;
    pub fn pk_group_allgather_start(
        group: *mut PkGroup,
        input: *mut c_void,
        outputs: *const *mut c_void,
        n: usize,
        out: *mut *mut PkWork,
    ) -> *mut c_char;
    pub fn pk_group_barrier_start(
        group: *mut PkGroup,
        timeout_ms: i64,
        out: *mut *mut PkWork,
    ) -> *mut c_char;
    pub fn pk_work_wait(work: *mut PkWork) -> *mut c_char;
    pub fn pk_work_free(work: *mut PkWork);

    pub fn pk_tensor_set_grad(tensor: *mut c_void, grad: *mut c_void) -> *mut c_char;

    pub fn pk_allreduce_sum_autograd(
        group: *mut PkGroup,
        input: *mut c_void,
        out: *mut c_void,
    ) -> *mut c_char;
}

/// Turns a shim return value into `Ok(())` or the error message it carries (and frees it).
pub fn check(error: *mut c_char) -> Result<(), String> {
    if error.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null return is a NUL-terminated string malloc'ed by the shim, owned by us.
    let message = unsafe { CStr::from_ptr(error) }
        .to_string_lossy()
        .trim()
        .to_string();
    unsafe { pk_free_error(error) };
    Err(message)
}

/// The `torch::Tensor*` behind a tch tensor, as the shim takes it.
pub fn tensor_ptr(tensor: &tch::Tensor) -> *mut c_void {
    tensor.as_ptr() as *mut c_void
}
