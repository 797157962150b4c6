//! An XFS file system with reflink, in a sparse image file mounted on a
//! loop device under target/bench, for the cases whose receivers write to
//! a file system that can share extents (what a delta push's copies of
//! unchanged blocks become there). Unmounted and removed when dropped.

use anyhow::{Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The mounted file system.
pub struct Xfs {
    image: PathBuf,
    mount: PathBuf,
}

impl Xfs {
    /// Makes and mounts a `gib` GiB XFS (reflink on) under `dir`.
    pub fn new(dir: &Path, gib: u64) -> Result<Xfs> {
        super::packages::ensure_xfs_tools()?;
        let image = dir.join("xfs.img");
        let mount = dir.join("xfs");
        let _ = Command::new("umount").arg(&mount).status();
        let _ = fs::remove_file(&image);
        fs::create_dir_all(&mount)?;
        fs::File::create(&image)?.set_len(gib << 30)?;
        super::net::sh(&[
            "mkfs.xfs",
            "-q",
            "-f",
            "-m",
            "reflink=1",
            &image.display().to_string(),
        ])
        .context("mkfs.xfs")?;
        super::net::sh(&[
            "mount",
            "-o",
            "loop",
            &image.display().to_string(),
            &mount.display().to_string(),
        ])
        .context("mounting the XFS image on a loop device")?;
        Ok(Xfs { image, mount })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.mount
    }
}

impl Drop for Xfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount).status();
        let _ = fs::remove_file(&self.image);
    }
}
