//! Owners of pushed entries. The sender records each entry's user and group
//! in the manifest's owner table ([`OwnerTable`], names looked up once per
//! id); a receiver running as root maps that table to its own ids
//! ([`map_owners`]: by name when it knows the name, else the sender's
//! number, as rsync does), and the store gives each placed entry its owner.

use mdp_proto::manifest::{check_name, Owner, MAX_OWNERS};
use std::collections::HashMap;

/// The owner table of a manifest being built.
#[derive(Debug, Default)]
pub struct OwnerTable {
    /// `(uid, gid)` → its number in the table (1-based, as
    /// [`mdp_proto::Entry::owner`]).
    index: HashMap<(u32, u32), u32>,
    owners: Vec<Owner>,
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
}

impl OwnerTable {
    /// The number of the owner `(uid, gid)` for [`mdp_proto::Entry::owner`],
    /// added on first sight; 0 (not recorded) once the table holds
    /// [`MAX_OWNERS`].
    pub fn number(&mut self, uid: u32, gid: u32) -> u32 {
        if let Some(&n) = self.index.get(&(uid, gid)) {
            return n;
        }
        if self.owners.len() >= MAX_OWNERS {
            return 0;
        }
        // A name a receiver would refuse travels as none: the number
        // still does.
        let portable = |n: Option<String>| n.filter(|n| check_name(n).is_ok()).unwrap_or_default();
        let user = self
            .users
            .entry(uid)
            .or_insert_with(|| portable(crate::sys::user_name(uid)))
            .clone();
        let group = self
            .groups
            .entry(gid)
            .or_insert_with(|| portable(crate::sys::group_name(gid)))
            .clone();
        self.owners.push(Owner {
            uid,
            gid,
            user,
            group,
        });
        let n = self.owners.len() as u32;
        self.index.insert((uid, gid), n);
        n
    }

    /// The table, for [`mdp_proto::Manifest::owners`].
    pub fn into_owners(self) -> Vec<Owner> {
        self.owners
    }
}

/// How a name of the sender's maps here.
#[derive(Clone, Copy)]
enum Found {
    /// This host knows the name: its id.
    Id(u32),
    /// This host has no such name: the sender's number is used.
    Unknown,
    /// The lookup failed (a directory service down): nothing is applied,
    /// rather than a number that may belong to someone else here.
    Failed,
}

impl Found {
    fn of(r: std::io::Result<Option<u32>>) -> Found {
        match r {
            Ok(Some(id)) => Found::Id(id),
            Ok(None) => Found::Unknown,
            Err(_) => Found::Failed,
        }
    }

    fn or_number(self, number: u32) -> Option<u32> {
        match self {
            Found::Id(id) => Some(id),
            Found::Unknown => Some(number),
            Found::Failed => None,
        }
    }
}

/// This host's `(uid, gid)` for each of `owners`: the ids of the names when
/// this host knows them, else the sender's numbers (as rsync does without
/// `--numeric-ids`); `None` for one whose lookup failed (the entry keeps
/// the receiver's own then).
pub fn map_owners(owners: &[Owner]) -> Vec<(Option<u32>, Option<u32>)> {
    let mut users: HashMap<&str, Found> = HashMap::new();
    let mut groups: HashMap<&str, Found> = HashMap::new();
    owners
        .iter()
        .map(|o| {
            let uid = match o.user.as_str() {
                "" => Found::Unknown,
                name => *users
                    .entry(name)
                    .or_insert_with(|| Found::of(crate::sys::user_id(name))),
            };
            let gid = match o.group.as_str() {
                "" => Found::Unknown,
                // A name of digits only would be read as a number there.
                name if name.bytes().all(|b| b.is_ascii_digit()) => Found::Unknown,
                name => *groups
                    .entry(name)
                    .or_insert_with(|| Found::of(crate::sys::group_id(name))),
            };
            (uid.or_number(o.uid), gid.or_number(o.gid))
        })
        .collect()
}

/// Who a placed entry belongs to: a user and a group id, each `None` to
/// leave it as the entry was created (the receiver's own).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Ownership {
    pub(crate) uid: Option<u32>,
    pub(crate) gid: Option<u32>,
}

impl Ownership {
    /// `(uid, gid)`, each unless it is `u32::MAX` (`-1`, "no change" to
    /// the kernel).
    pub(crate) fn new(uid: Option<u32>, gid: Option<u32>) -> Ownership {
        Ownership {
            uid: uid.filter(|&u| u != u32::MAX),
            gid: gid.filter(|&g| g != u32::MAX),
        }
    }

    /// True when an entry with metadata `md` already has it.
    pub(crate) fn holds(self, md: &std::fs::Metadata) -> bool {
        use std::os::unix::fs::MetadataExt;
        self.uid.is_none_or(|u| md.uid() == u) && self.gid.is_none_or(|g| md.gid() == g)
    }

    /// Gives the open `file` this owner (before its mode is set: a change
    /// of owner may clear mode bits).
    pub(crate) fn apply(self, file: &std::fs::File) -> std::io::Result<()> {
        if self == Ownership::default() {
            return Ok(());
        }
        Ok(rustix::fs::fchown(
            file,
            self.uid.map(rustix::fs::Uid::from_raw),
            self.gid.map(rustix::fs::Gid::from_raw),
        )?)
    }

    /// Gives the entry `name` of directory `dir` this owner, without
    /// following it if it is a symbolic link (an empty `name`: `dir` is a
    /// descriptor of the entry itself, `O_PATH` included).
    pub(crate) fn apply_at(self, dir: impl std::os::fd::AsFd, name: &str) -> std::io::Result<()> {
        if self == Ownership::default() {
            return Ok(());
        }
        let flags = if name.is_empty() {
            rustix::fs::AtFlags::EMPTY_PATH | rustix::fs::AtFlags::SYMLINK_NOFOLLOW
        } else {
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW
        };
        Ok(rustix::fs::chownat(
            dir,
            name,
            self.uid.map(rustix::fs::Uid::from_raw),
            self.gid.map(rustix::fs::Gid::from_raw),
            flags,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_holds_each_pair_once_with_its_names() {
        let mut t = OwnerTable::default();
        assert_eq!(t.number(0, 0), 1);
        assert_eq!(t.number(4_000_000_001, 0), 2);
        assert_eq!(t.number(0, 0), 1);
        let owners = t.into_owners();
        assert_eq!(owners.len(), 2);
        assert_eq!(
            (owners[0].user.as_str(), owners[0].group.as_str()),
            ("root", "root")
        );
        assert_eq!(owners[1].user, "", "no such user here: the number only");
    }

    #[test]
    fn names_map_to_this_hosts_ids_and_unknown_ones_keep_their_number() {
        let owner = |uid, gid, user: &str, group: &str| Owner {
            uid,
            gid,
            user: user.into(),
            group: group.into(),
        };
        let mapped = map_owners(&[
            // Known here by name: the sender's numbers do not matter.
            owner(1000, 1000, "root", "root"),
            // Unknown names, or none: the sender's numbers.
            owner(1234, 2345, "no-such-user-mdp", "no-such-group-mdp"),
            owner(77, 88, "", ""),
        ]);
        assert_eq!(
            mapped,
            [
                (Some(0), Some(0)),
                (Some(1234), Some(2345)),
                (Some(77), Some(88))
            ]
        );
    }
}
