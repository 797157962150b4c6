//! Who placed entries belong to: a root receiver keeping the sender's
//! owners (`Store::set_keep_owners`, only for signed pushes), the
//! `--file-group`, and which entries in place are the store's to change.

use super::Store;
use crate::owners::Ownership;
use mdp_proto::{Entry, Manifest};
use std::fs;

impl Store {
    /// Whether placed files, directories and links get the owner and group
    /// the manifest records for them (by name when this host knows it,
    /// else by number; a `--file-group` still wins for the group). Only a
    /// receiver running as root can; `mdp-recv` keeps them then unless
    /// told `--no-owners`. Off, everything belongs to the receiver's user.
    pub fn set_keep_owners(&mut self, keep: bool) {
        self.keep_owners = keep;
    }

    /// Whether the push [`Store::begin`] takes next is signed by a trusted
    /// key: owners are applied only for such a push (one taken
    /// `--insecure` places everything as the receiver's own).
    pub fn set_push_signed(&mut self, signed: bool) {
        self.push_signed = signed;
    }

    /// Who entry `e` of the current manifest is to belong to here.
    pub(super) fn ownership(&self, e: &Entry) -> Ownership {
        let kept = (e.owner as usize)
            .checked_sub(1)
            .and_then(|i| self.owner_ids.get(i));
        Ownership::new(
            kept.and_then(|k| k.0),
            self.group.or(kept.and_then(|k| k.1)),
        )
    }

    /// True when an entry with metadata `md` is this store's to change: it
    /// belongs to the receiver's user, or to the owner the store gives `e`
    /// (a file of another user, made or linked in by a local user, is
    /// left alone).
    pub(super) fn ours(&self, md: &fs::Metadata, e: &Entry) -> bool {
        use std::os::unix::fs::MetadataExt;
        md.uid() == crate::sys::euid() || self.ownership(e).uid == Some(md.uid())
    }

    /// Maps the owners of `manifest`, the push [`Store::begin`] takes, to
    /// this host's ids, when they are kept (a root receiver, a signed push).
    pub(super) fn take_owners(&mut self, manifest: &Manifest) {
        self.owner_ids = if self.keep_owners && self.push_signed {
            crate::owners::map_owners(&manifest.owners)
        } else {
            Vec::new()
        };
    }
}
