//! System calls that std does not wrap (besides the socket ones in
//! `udp.rs`): free disk space.

use std::path::Path;

/// Bytes free for unprivileged users on the file system of `path`.
pub fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: an all-zero statvfs is a valid value; statvfs reads the
    // NUL-terminated path and writes the struct, both valid for the call.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::statvfs(path.as_ptr(), &mut st) } == 0;
    ok.then(|| st.f_bavail as u64 * st.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_temporary_directory_has_some_free_space() {
        let free = super::free_bytes(&std::env::temp_dir()).expect("statvfs works");
        assert!(free > 0);
        assert_eq!(
            super::free_bytes(std::path::Path::new("/no/such/dir")),
            None
        );
    }
}
