//! `--delete`: removing what the pushed directories hold beyond the
//! manifest, like rsync's `--delete`.
//!
//! **Invariant:** pruning only looks below the manifest's top-level
//! directories, never follows a symbolic link (links are removed as
//! links), and leaves names that are not UTF-8 alone.

use super::safe_path::safe_dirs;
use super::Store;
use mdp_proto::EntryKind;
use std::collections::HashMap;
use std::fs;

impl Store {
    /// `--delete`: removes, below each top-level directory of the
    /// manifest, every entry the manifest does not list (like rsync's
    /// `--delete`): extra files, symbolic links and whole directories.
    /// Symbolic links are removed, never followed. Returns the paths
    /// removed, relative to the cache directory. Call it only after a
    /// complete push.
    pub fn prune(&mut self) -> Vec<String> {
        let manifest = self.manifest.clone();
        let listed: HashMap<&str, bool> = manifest
            .entries
            .iter()
            .map(|e| (e.path.as_str(), e.kind == EntryKind::Dir))
            .collect();
        let mut removed = Vec::new();
        for e in &manifest.entries {
            if e.kind == EntryKind::Dir && !e.path.contains('/') {
                self.prune_dir(&listed, &e.path, &mut removed);
            }
        }
        removed
    }

    fn prune_dir(&self, listed: &HashMap<&str, bool>, rel: &str, removed: &mut Vec<String>) {
        let Ok(dir) = safe_dirs(&self.root, rel.split('/')) else {
            return;
        };
        let Ok(entries) = fs::read_dir(&dir) else {
            return;
        };
        for entry in entries.flatten() {
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue; // not UTF-8: never pushed by mdp, left alone
            };
            let child = format!("{rel}/{name}");
            let Ok(ft) = entry.file_type() else { continue };
            match listed.get(child.as_str()) {
                Some(true) if ft.is_dir() => self.prune_dir(listed, &child, removed),
                Some(_) => {}
                None => {
                    let gone = if ft.is_dir() {
                        // remove_dir_all does not follow symbolic links.
                        fs::remove_dir_all(entry.path())
                    } else {
                        fs::remove_file(entry.path())
                    };
                    if gone.is_ok() {
                        removed.push(child);
                    }
                }
            }
        }
    }
}
