//! A TUN device opened in a given network namespace: raw IPv4/IPv6 packets in and out of a file.
//!
//! The only `unsafe` of the crate is the one `TUNSETIFF` ioctl that attaches the file to a new
//! device: no crate exposes it as a safe call that also gives a plain `File` (which the forwarder
//! needs for `poll`, non-blocking batched reads and `try_clone` into its two threads).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::OpenOptionsExt;

use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};

/// `_IOW('T', 202, int)` from `<linux/if_tun.h>`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: u16 = 0x0001;
const IFF_NO_PI: u16 = 0x1000;
/// `struct ifreq`: a 16-byte name, then a union whose first member is the flags (`short`).
const IFREQ_LEN: usize = 40;

/// Opens a new TUN device `name` (no packet-info header) inside the network namespace `netns`
/// (a name under /run/netns), and moves the calling thread back to its own namespace after.
pub fn open_in_namespace(netns: &str, name: &str) -> io::Result<File> {
    let home = File::open("/proc/thread-self/ns/net")?;
    let target = File::open(format!("/run/netns/{netns}"))?;
    move_into_link_name_space(target.as_fd(), Some(LinkNameSpaceType::Network))?;
    let opened = open(name);
    move_into_link_name_space(home.as_fd(), Some(LinkNameSpaceType::Network))?;
    opened
}

fn open(name: &str) -> io::Result<File> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= 16 || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a device name has 1 to 15 bytes",
        ));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")?;
    let mut ifreq = [0u8; IFREQ_LEN];
    ifreq[..bytes.len()].copy_from_slice(bytes);
    ifreq[16..18].copy_from_slice(&(IFF_TUN | IFF_NO_PI).to_ne_bytes());
    // SAFETY: `file` is an open /dev/net/tun descriptor and `ifreq` is a live, writable buffer of
    // the size of `struct ifreq`, which TUNSETIFF reads and may write back (the device name).
    #[allow(unsafe_code)]
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, ifreq.as_mut_ptr()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}
