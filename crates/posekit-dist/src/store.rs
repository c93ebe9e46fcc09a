//! A connection to the rendezvous store (c10d::TCPStore), for the group's own bookkeeping:
//! heartbeats and the notes ranks leave when they go (see `heartbeat`).

use std::ffi::CString;
use std::time::Duration;

use crate::ffi;

/// One client connection (the rank hosting the store also runs its server). A connection is
/// used by one thread at a time: give another thread its own with `try_clone`.
pub(crate) struct Store {
    raw: *mut ffi::PkStore,
}

// SAFETY: the shim's store is a heap object with no thread affinity; `Store` is not `Sync`, so
// one thread at a time uses a connection.
unsafe impl Send for Store {}

fn c_string(text: &str) -> Result<CString, String> {
    CString::new(text).map_err(|_| format!("'{text}' contains a NUL byte"))
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis())
        .unwrap_or(i64::MAX)
        .max(1)
}

impl Store {
    /// Connects to the store at `addr:port`, first starting its server there when `host` is
    /// set. Waits up to `timeout` for the server (a client) or for all `world_size` ranks to
    /// connect (the host).
    pub fn connect(
        addr: &str,
        port: u16,
        host: bool,
        world_size: usize,
        timeout: Duration,
    ) -> Result<Store, String> {
        let c_addr = c_string(addr)?;
        let world = i32::try_from(world_size).map_err(|_| "world size too large".to_string())?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: valid NUL-terminated string and out-pointer.
        ffi::check(unsafe {
            ffi::pk_store_new(
                c_addr.as_ptr(),
                port,
                host as i32,
                world,
                millis(timeout),
                &mut raw,
            )
        })?;
        Ok(Store { raw })
    }

    /// A second connection to the same store.
    pub fn try_clone(&self) -> Result<Store, String> {
        let mut raw = std::ptr::null_mut();
        // SAFETY: self.raw is a live store.
        ffi::check(unsafe { ffi::pk_store_clone(self.raw, &mut raw) })?;
        Ok(Store { raw })
    }

    /// How long an operation may wait for the server (and `get` for a key).
    pub fn set_timeout(&self, timeout: Duration) -> Result<(), String> {
        // SAFETY: self.raw is a live store.
        ffi::check(unsafe { ffi::pk_store_set_timeout(self.raw, millis(timeout)) })
    }

    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), String> {
        let key = c_string(key)?;
        // SAFETY: key is NUL-terminated; value points at value.len() bytes.
        ffi::check(unsafe {
            ffi::pk_store_set(self.raw, key.as_ptr(), value.as_ptr(), value.len())
        })
    }

    /// Adds `delta` to the counter `key` (created at 0) and returns the new value.
    pub fn add(&self, key: &str, delta: i64) -> Result<i64, String> {
        let key = c_string(key)?;
        let mut value = 0;
        // SAFETY: key is NUL-terminated; value is a valid out-pointer.
        ffi::check(unsafe { ffi::pk_store_add(self.raw, key.as_ptr(), delta, &mut value) })?;
        Ok(value)
    }

    /// The value of `key`, or `None` if it was never set; never waits for it.
    pub fn try_get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        let key = c_string(key)?;
        let (mut data, mut len, mut found) = (std::ptr::null_mut(), 0usize, 0);
        // SAFETY: key is NUL-terminated; the out-pointers are valid.
        ffi::check(unsafe {
            ffi::pk_store_try_get(self.raw, key.as_ptr(), &mut data, &mut len, &mut found)
        })?;
        if found == 0 {
            return Ok(None);
        }
        // SAFETY: on success with found, data holds len bytes malloc'ed by the shim.
        let bytes = unsafe { std::slice::from_raw_parts(data, len) }.to_vec();
        unsafe { ffi::pk_free_bytes(data) };
        Ok(Some(bytes))
    }

    pub(crate) fn raw(&self) -> *mut ffi::PkStore {
        self.raw
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // SAFETY: self.raw came from pk_store_new/clone and is freed once.
        unsafe { ffi::pk_store_free(self.raw) };
    }
}
