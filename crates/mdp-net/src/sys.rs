//! System calls that std does not wrap (besides the socket ones in
//! `udp.rs`): free disk space, early writeback of a file, and the host's
//! network interfaces with their MTUs.

use std::io;
use std::net::IpAddr;
use std::path::Path;

/// A network interface of this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// Its name (`eth0`).
    pub name: String,
    /// Its index (`if_nametoindex`).
    pub index: u32,
    /// It is up (`IFF_UP`).
    pub up: bool,
    /// It does multicast (`IFF_MULTICAST`; loopback counts: Linux loops
    /// multicast back on it).
    pub multicast: bool,
    /// Its addresses.
    pub addrs: Vec<IpAddr>,
    /// Its networks: each address with its prefix length (from the
    /// netmask `getifaddrs` gives beside it).
    pub nets: Vec<(IpAddr, u8)>,
    /// Its MTU in bytes (`SIOCGIFMTU`; `None` if the kernel did not say).
    pub mtu: Option<u32>,
}

/// The host's interfaces (`getifaddrs`), in the kernel's order.
pub fn interfaces() -> Vec<Interface> {
    let mut out: Vec<Interface> = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates a list we walk read-only and free once.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned; its name
        // is a NUL-terminated string and its address, when not null, a
        // sockaddr of the family it names.
        unsafe {
            let ifa = &*cur;
            let name = std::ffi::CStr::from_ptr(ifa.ifa_name)
                .to_string_lossy()
                .into_owned();
            let flags = ifa.ifa_flags;
            let addr = ip_of(ifa.ifa_addr);
            let prefix = ip_of(ifa.ifa_netmask).map(|m| match m {
                IpAddr::V4(m) => u32::from(m).leading_ones() as u8,
                IpAddr::V6(m) => u128::from(m).leading_ones() as u8,
            });
            let i = match out.iter().position(|x| x.name == name) {
                Some(i) => i,
                None => {
                    let index = libc::if_nametoindex(ifa.ifa_name);
                    out.push(Interface {
                        name,
                        index,
                        up: flags & libc::IFF_UP as u32 != 0,
                        multicast: flags & (libc::IFF_MULTICAST | libc::IFF_LOOPBACK) as u32 != 0,
                        addrs: Vec::new(),
                        nets: Vec::new(),
                        mtu: None,
                    });
                    out.len() - 1
                }
            };
            if let Some(a) = addr {
                out[i].addrs.push(a);
                if let Some(p) = prefix {
                    out[i].nets.push((a, p));
                }
            }
            cur = ifa.ifa_next;
        }
    }
    // SAFETY: the list came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    for i in &mut out {
        i.mtu = mtu(&i.name);
    }
    out
}

/// The address in `sa`, when it is an IPv4 or IPv6 one.
///
/// # Safety
/// `sa` is null or points to a sockaddr of the family it names.
unsafe fn ip_of(sa: *const libc::sockaddr) -> Option<IpAddr> {
    if sa.is_null() {
        return None;
    }
    // SAFETY: the caller's promise: a sockaddr of the family it names.
    unsafe {
        match (*sa).sa_family as libc::c_int {
            libc::AF_INET => {
                let a = &*(sa as *const libc::sockaddr_in);
                Some(IpAddr::from(u32::from_be(a.sin_addr.s_addr).to_be_bytes()))
            }
            libc::AF_INET6 => {
                let a = &*(sa as *const libc::sockaddr_in6);
                Some(IpAddr::from(a.sin6_addr.s6_addr))
            }
            _ => None,
        }
    }
}

/// True when `addr` lies in the network `(net, prefix)`.
pub fn in_network(addr: IpAddr, (net, prefix): (IpAddr, u8)) -> bool {
    match (addr, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// The MTU of the interface `name`, asked of the kernel (`SIOCGIFMTU`) in
/// this process's network namespace (unlike `/sys/class/net`, which shows
/// the namespace sysfs was mounted in).
fn mtu(name: &str) -> Option<u32> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ {
        return None;
    }
    // SAFETY: a plain datagram socket, closed below; an all-zero ifreq is
    // valid, its name is NUL-terminated (shorter than IFNAMSIZ, checked
    // above), and SIOCGIFMTU writes only the union's `ifru_mtu`.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return None;
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (d, &b) in req.ifr_name.iter_mut().zip(bytes) {
            *d = b as libc::c_char;
        }
        let ok = libc::ioctl(fd, libc::SIOCGIFMTU as _, &mut req) == 0;
        libc::close(fd);
        let mtu = req.ifr_ifru.ifru_mtu;
        (ok && mtu > 0).then_some(mtu as u32)
    }
}

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

/// Asks the kernel to start writing `file`'s dirty pages to the disk now,
/// without waiting for them (`sync_file_range(SYNC_FILE_RANGE_WRITE)` on
/// Linux; nothing elsewhere). A later `fsync` then waits for less, and the
/// pages of several files go out together. Errors are ignored: the `fsync`
/// that follows reports any that matters.
pub fn start_writeback(file: &std::fs::File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: plain system call on a descriptor `file` keeps open; it
        // reads no memory of ours.
        unsafe {
            libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

/// Sends SIGKILL to every process of the process group `pgid` (a hook and
/// whatever it started). Errors (the group is gone already) are ignored.
pub fn kill_process_group(pgid: u32) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    if pgid <= 1 {
        return; // never the whole session or init
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

/// Linux capabilities that give a process power over the network:
/// `CAP_NET_BIND_SERVICE`, `CAP_NET_BROADCAST`, `CAP_NET_ADMIN`,
/// `CAP_NET_RAW`.
const NET_CAPABILITIES: [u32; 4] = [10, 11, 12, 13];

/// Makes `cmd`'s child drop the network capabilities before it runs
/// ([`drop_network_capabilities`], between fork and exec).
pub fn without_network_capabilities(cmd: &mut std::process::Command) -> &mut std::process::Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and makes
    // system calls only (no allocation, no lock).
    unsafe { cmd.pre_exec(drop_network_capabilities) }
}

/// This process's effective user id.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// True when this process runs as root (effective user id 0).
pub fn is_root() -> bool {
    euid() == 0
}

/// Drops the network capabilities (`CAP_NET_BIND_SERVICE`, `CAP_NET_BROADCAST`, `CAP_NET_ADMIN`, `CAP_NET_RAW`) from this process
/// for good: from the bounding set (so that neither an `exec` nor a
/// set-user-id program can bring them back), the ambient set, and the
/// effective, permitted and inheritable sets. Meant for a hook's child
/// between `fork` and `exec` (`pre_exec`): it makes system calls only, no
/// allocation. Dropping from the bounding set needs `CAP_SETPCAP`; a
/// process without it never had these capabilities to drop there.
pub fn drop_network_capabilities() -> io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    for cap in NET_CAPABILITIES {
        // SAFETY: prctl with integer arguments touches no memory of ours.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if r != 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EPERM) {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: as above. Fails only on kernels without ambient
    // capabilities (before 4.3), which have none to clear.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
    }
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capget writes two `Data` (version 3) into `data`, which has
    // room for them, and reads `header`.
    if unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    for cap in NET_CAPABILITIES {
        let (word, bit) = ((cap / 32) as usize, 1u32 << (cap % 32));
        data[word].effective &= !bit;
        data[word].permitted &= !bit;
        data[word].inheritable &= !bit;
    }
    // SAFETY: capset reads `header` and two `Data`.
    if unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One NSS lookup (`getpwnam_r` and its kin): calls `call` with a record,
/// a buffer, its length and the result pointer, growing the buffer on
/// `ERANGE`, and hands the record found to `take` while the buffer its
/// strings point into is alive. `None` when there is no such entry.
///
/// # Safety
/// `T` is a plain C struct for which all-zero bytes are a valid value
/// (`libc::passwd`, `libc::group`), and `call` is one of the reentrant NSS
/// functions for it.
unsafe fn nss_lookup<T, R>(
    mut call: impl FnMut(*mut T, *mut libc::c_char, usize, *mut *mut T) -> libc::c_int,
    take: impl FnOnce(&T) -> R,
) -> io::Result<Option<R>> {
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: a zeroed passwd or group is a valid value of those plain
        // C structs; `call` fills it, its strings pointing into `buf`.
        let mut record: T = unsafe { std::mem::zeroed() };
        let mut found: *mut T = std::ptr::null_mut();
        let r = call(&mut record, buf.as_mut_ptr().cast(), buf.len(), &mut found);
        match r {
            0 if found.is_null() => return Ok(None),
            0 => return Ok(Some(take(&record))),
            libc::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 2, 0),
            e => return Err(io::Error::from_raw_os_error(e)),
        }
    }
}

fn c_name(name: &str) -> io::Result<std::ffi::CString> {
    std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in a name"))
}

/// A C string NSS returned, as UTF-8 (`None` when it is not).
///
/// # Safety
/// `p` is null or points to a NUL-terminated string that is alive.
unsafe fn c_text(p: *const libc::c_char) -> Option<String> {
    if p.is_null() {
        return None;
    }
    // SAFETY: the caller's promise.
    unsafe { std::ffi::CStr::from_ptr(p) }
        .to_str()
        .ok()
        .map(str::to_string)
}

/// The id of the group named `name` (through NSS, as `getent group` sees
/// it), or `name` itself when it is a number; `None` when no such group
/// exists.
pub fn group_id(name: &str) -> io::Result<Option<u32>> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(Some(gid));
    }
    let c = c_name(name)?;
    // SAFETY: `libc::group` may be all zeros and `getgrnam_r` fills it;
    // every pointer is to a live value of the right type, and the buffer's
    // length is passed with it.
    unsafe {
        nss_lookup(
            |g, buf, len, found| libc::getgrnam_r(c.as_ptr(), g, buf, len, found),
            |g: &libc::group| g.gr_gid,
        )
    }
}

/// The id of the user named `name` (through NSS, as `getent passwd` sees
/// it); `None` when no such user exists.
pub fn user_id(name: &str) -> io::Result<Option<u32>> {
    let c = c_name(name)?;
    // SAFETY: as in `group_id`, for `libc::passwd` and `getpwnam_r`.
    unsafe {
        nss_lookup(
            |p, buf, len, found| libc::getpwnam_r(c.as_ptr(), p, buf, len, found),
            |p: &libc::passwd| p.pw_uid,
        )
    }
}

/// The name of user `uid`, when NSS knows one and it is UTF-8.
pub fn user_name(uid: u32) -> Option<String> {
    // SAFETY: as in `user_id`, for `getpwuid_r`; the name is read while
    // the buffer it points into lives.
    unsafe {
        nss_lookup(
            |p, buf, len, found| libc::getpwuid_r(uid, p, buf, len, found),
            |p: &libc::passwd| c_text(p.pw_name),
        )
    }
    .ok()
    .flatten()
    .flatten()
}

/// The name of group `gid`, when NSS knows one and it is UTF-8.
pub fn group_name(gid: u32) -> Option<String> {
    // SAFETY: as in `group_id`, for `getgrgid_r`; the name is read while
    // the buffer it points into lives.
    unsafe {
        nss_lookup(
            |g, buf, len, found| libc::getgrgid_r(gid, g, buf, len, found),
            |g: &libc::group| c_text(g.gr_name),
        )
    }
    .ok()
    .flatten()
    .flatten()
}

/// What to do about an I/O error, as a clause to append to its message
/// (`": check the path"`), or "" when there is nothing to add.
pub fn io_fix(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::ENOENT) => ": check the path",
        Some(libc::EACCES) | Some(libc::EPERM) => {
            ": run as a user who may, or change the permissions"
        }
        Some(libc::EROFS) => ": the file system is read-only; choose a place on a writable one",
        Some(libc::ENOTDIR) | Some(libc::EEXIST) => ": a file is in the way of a directory",
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => {
            ": free some space, or choose another file system"
        }
        Some(libc::EMFILE) | Some(libc::ENFILE) => ": raise the open-files limit (ulimit -n)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    #[test]
    fn an_address_is_in_a_network_by_its_prefix() {
        use super::in_network;
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(in_network(ip("10.78.2.3"), (ip("10.78.2.1"), 24)));
        assert!(!in_network(ip("10.78.1.2"), (ip("10.78.2.1"), 24)));
        assert!(in_network(ip("10.78.1.2"), (ip("10.78.2.1"), 16)));
        assert!(in_network(ip("192.0.2.9"), (ip("10.0.0.1"), 0)));
        assert!(!in_network(ip("10.0.0.2"), (ip("10.0.0.1"), 32)));
        assert!(in_network(ip("fd00::1:5"), (ip("fd00::1:1"), 112)));
        assert!(!in_network(ip("fd00::2:5"), (ip("fd00::1:1"), 112)));
        assert!(
            !in_network(ip("10.0.0.1"), (ip("::1"), 0)),
            "families differ"
        );
    }

    #[test]
    fn loopback_has_its_network() {
        let lo = super::interfaces()
            .into_iter()
            .find(|i| i.name == "lo")
            .expect("lo");
        let v4: IpAddr = "127.0.0.1".parse().unwrap();
        if lo.addrs.contains(&v4) {
            assert!(lo.nets.contains(&(v4, 8)), "{:?}", lo.nets);
        }
    }

    #[test]
    fn loopback_is_listed_with_its_addresses() {
        let all = super::interfaces();
        let lo = all.iter().find(|i| i.name == "lo").expect("lo exists");
        assert!(lo.index > 0 && lo.multicast);
        // Linux gives loopback a large MTU (64 KiB since 3.x).
        assert!(lo.mtu.is_some_and(|m| m >= 1500), "{lo:?}");
        assert!(lo.addrs.contains(&"127.0.0.1".parse().unwrap()), "{lo:?}");
    }

    #[test]
    fn the_temporary_directory_has_some_free_space() {
        let free = super::free_bytes(&std::env::temp_dir()).expect("statvfs works");
        assert!(free > 0);
        assert_eq!(
            super::free_bytes(std::path::Path::new("/no/such/dir")),
            None
        );
    }

    #[test]
    fn group_ids_by_name_and_number() {
        assert_eq!(super::group_id("root").unwrap(), Some(0));
        assert_eq!(super::group_id("4242").unwrap(), Some(4242));
        assert_eq!(super::group_id("no-such-group-mdp").unwrap(), None);
        assert_eq!(super::user_id("root").unwrap(), Some(0));
        assert_eq!(super::user_id("no-such-user-mdp").unwrap(), None);
        assert_eq!(super::user_name(0).as_deref(), Some("root"));
        assert_eq!(super::group_name(0).as_deref(), Some("root"));
        assert_eq!(super::user_name(4_000_000_000), None);
    }

    #[test]
    fn io_errors_come_with_what_to_do() {
        let e = |n| std::io::Error::from_raw_os_error(n);
        assert_eq!(super::io_fix(&e(libc::ENOENT)), ": check the path");
        assert!(super::io_fix(&e(libc::EACCES)).contains("permissions"));
        assert!(super::io_fix(&e(libc::ENOSPC)).contains("space"));
        assert_eq!(super::io_fix(&e(libc::EINTR)), "");
    }
}
