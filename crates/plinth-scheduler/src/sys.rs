//! The few operating-system calls the local executor needs: signals to a process group, a
//! process's start time (to tell it from a later process with the same pid), and the memory a
//! process group holds, read from `/proc`.

use std::path::Path;

/// Sends `signal` to every process of group `pgid`; a group that is gone is not an error.
pub(crate) fn kill_group(pgid: i32, signal: i32) {
    if pgid > 1 {
        // SAFETY: kill(2) takes plain integers and touches no memory of ours.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

/// Sends `signal` to one process.
pub(crate) fn kill_process(pid: i32, signal: i32) {
    if pid > 1 {
        // SAFETY: as above.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

/// Blocks until child `pid` has ended, without reaping it (its owner reaps it with `try_wait`).
pub(crate) fn wait_for_exit(pid: i32) {
    // SAFETY: waitid writes only into `info`, a zeroed siginfo_t this function owns; WNOWAIT leaves
    // the child to be reaped by its `Child`.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        while libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOWAIT) != 0 {
            if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                return;
            }
        }
    }
}

/// The fields of `/proc/<pid>/stat` after the command name (which may hold spaces and parentheses).
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &text[text.rfind(')')? + 1..];
    Some(after.split_whitespace().map(str::to_owned).collect())
}

/// When process `pid` started, in clock ticks since boot; `None` when there is no such process.
pub(crate) fn start_ticks(pid: i32) -> Option<u64> {
    // Field 22 of stat; the list starts at field 3 (the state).
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// Whether `pid` is the process that started at `ticks` and has not ended (a zombie has ended).
pub(crate) fn is_same_process(pid: i32, ticks: u64) -> bool {
    match stat_fields(pid) {
        Some(fields) => fields.first().is_some_and(|state| state != "Z") && fields.get(19).and_then(|t| t.parse().ok()) == Some(ticks),
        None => false,
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf reads a constant of the system.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(4096)
}

/// What a process group uses now: resident memory in bytes, and CPU time in clock ticks (user and
/// system, of the processes alive now).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct GroupUsage {
    pub(crate) rss_bytes: u64,
    pub(crate) cpu_ticks: u64,
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
pub(crate) fn ticks_per_second() -> u64 {
    // SAFETY: sysconf reads a constant of the system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|t| *t > 0).unwrap_or(100)
}

/// The resident memory and CPU time of every process in group `pgid`, summed.
pub(crate) fn group_usage(pgid: i32) -> GroupUsage {
    let Ok(entries) = std::fs::read_dir("/proc") else { return GroupUsage::default() };
    let page = page_size();
    let mut usage = GroupUsage::default();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let Some(fields) = stat_fields(pid) else { continue };
        // Field 5 is the process group; fields 14 and 15 the user and system time in ticks; field
        // 24 the resident set in pages.
        if fields.get(2).and_then(|g| g.parse::<i32>().ok()) == Some(pgid) {
            let number = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            usage.rss_bytes += number(21) * page;
            usage.cpu_ticks += number(11) + number(12);
        }
    }
    usage
}

/// A signal's name, for messages.
pub(crate) fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

/// Whether the host offers cgroup v2 with the memory controller to this process's cgroup.
pub(crate) fn cgroup_v2_memory() -> bool {
    let controllers = Path::new("/sys/fs/cgroup/cgroup.controllers");
    std::fs::read_to_string(controllers).is_ok_and(|text| text.split_whitespace().any(|c| c == "memory"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_itself_and_holds_memory() {
        let me = std::process::id() as i32;
        let ticks = start_ticks(me).expect("own start time");
        assert!(is_same_process(me, ticks));
        assert!(!is_same_process(me, ticks + 1));
        // SAFETY: getpgrp has no arguments and cannot fail.
        let group = unsafe { libc::getpgrp() };
        assert!(group_usage(group).rss_bytes > 0);
    }
}
