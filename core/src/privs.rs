//! `-Z USER`: after everything that needs privilege is open (BPF programs
//! loaded and attached, ring buffers mapped), the process becomes USER, its
//! supplementary groups USER's primary group alone, and keeps no capability
//! (a set-user-ID change from root clears them). What it holds open keeps
//! working: ring buffers are read through memory and epoll, counters
//! through the map file descriptors it already has.

use std::ffi::{CStr, CString};

use crate::{Error, Result};

/// A user to become: name, uid and primary gid.
#[derive(Clone, Debug)]
pub struct User {
    pub name: String,
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
}

/// Look USER up (a name, or a numeric uid) in the password database.
pub fn lookup(name: &str) -> Result<User> {
    let bad = || Error::input(format!("-Z: no user '{name}'"));
    let cname = CString::new(name).map_err(|_| bad())?;
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the call; buf outlives pw's use.
    let rc = unsafe {
        match name.parse::<libc::uid_t>() {
            Ok(uid) => libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut out),
            Err(_) => libc::getpwnam_r(
                cname.as_ptr(),
                &mut pw,
                buf.as_mut_ptr(),
                buf.len(),
                &mut out,
            ),
        }
    };
    if rc != 0 || out.is_null() {
        return Err(bad());
    }
    // SAFETY: getpwnam_r filled pw_name with a string inside buf.
    let name = unsafe { CStr::from_ptr(pw.pw_name) }
        .to_string_lossy()
        .into_owned();
    Ok(User {
        name,
        uid: pw.pw_uid,
        gid: pw.pw_gid,
    })
}

/// Whether the process runs as root (tcpdump drops only then).
pub fn is_root() -> bool {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() == 0 || libc::getuid() == 0 }
}

/// Become `u` for good: groups, gid, then uid; then check that root cannot
/// be had back.
pub fn become_user(u: &User) -> Result<()> {
    let fail = |what: &str| {
        Error::runtime(format!(
            "-Z {}: {what}: {}",
            u.name,
            std::io::Error::last_os_error()
        ))
    };
    // SAFETY: plain system calls on this process's credentials.
    unsafe {
        if libc::setgroups(1, &u.gid) != 0 {
            return Err(fail("setgroups"));
        }
        if libc::setresgid(u.gid, u.gid, u.gid) != 0 {
            return Err(fail("setresgid"));
        }
        if libc::setresuid(u.uid, u.uid, u.uid) != 0 {
            return Err(fail("setresuid"));
        }
        if u.uid != 0 && (libc::setuid(0) == 0 || libc::seteuid(0) == 0) {
            return Err(Error::runtime(format!(
                "-Z {}: root could be regained; stopping",
                u.name
            )));
        }
    }
    Ok(())
}
