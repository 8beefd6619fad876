//! Readings of /proc: a process's CPU time, memory and open-file limit, the machine's busy
//! ticks, and processes found by name. Linux only, as the stack is. The load generator, the
//! measuring tools and the tests read them; no stage does.

use crate::{Error, Result};

/// CPU time a process has used (user + system), seconds, from /proc/PID/stat (USER_HZ = 100,
/// as on every mainstream Linux). `pid` may be `self`, or `PID/task/TID` for one thread.
#[allow(clippy::cast_precision_loss)]
pub fn cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// Each thread of a process still running: its name (`comm`, e.g. `tokio-rt-worker`,
/// `rdk:broker1`) and its `PID/task/TID` (for [`cpu_secs`] and [`switches`]).
fn threads(pid: &str) -> Vec<(String, String)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| {
            let task = format!("{pid}/task/{}", task.file_name().to_str()?);
            let comm = std::fs::read_to_string(format!("/proc/{task}/comm")).ok()?;
            Some((comm.trim_end().to_owned(), task))
        })
        .collect()
}

/// CPU seconds of each thread of a process still running, summed by thread name, from
/// /proc/PID/task/*/stat.
pub fn thread_cpu_secs(pid: &str) -> std::collections::BTreeMap<String, f64> {
    let mut by_name = std::collections::BTreeMap::new();
    for (name, task) in threads(pid) {
        if let Some(cpu) = cpu_secs(&task) {
            *by_name.entry(name).or_insert(0.0) += cpu;
        }
    }
    by_name
}

/// Context switches of a process's main thread or of one thread (`pid` may be `thread-self`
/// or `PID/task/TID`), from /proc/PID/status: (voluntary, involuntary). A voluntary switch is
/// the thread blocking (to be woken again); an involuntary one, the scheduler taking the core
/// from it.
pub fn switches(pid: &str) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    Some((
        field("voluntary_ctxt_switches")?,
        field("nonvoluntary_ctxt_switches")?,
    ))
}

/// [`switches`] of each thread of a process still running, summed by thread name.
pub fn thread_switches(pid: &str) -> std::collections::BTreeMap<String, (u64, u64)> {
    let mut by_name = std::collections::BTreeMap::new();
    for (name, task) in threads(pid) {
        if let Some((vol, invol)) = switches(&task) {
            let entry = by_name.entry(name).or_insert((0, 0));
            *entry = (entry.0 + vol, entry.1 + invol);
        }
    }
    by_name
}

/// A `Vm*` line of /proc/PID/status (`VmRSS`, `VmHWM`, ...), in KiB.
pub fn vm_kib(pid: &str, field: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status =
        std::fs::read_to_string(&path).map_err(|e| Error::Proc(format!("reading {path}: {e}")))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| Error::Proc(format!("no {field} in {path}")))
}

/// The machine's CPU ticks so far: (busy, total), from the `cpu` line of /proc/stat.
pub fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .filter_map(|t| t.parse().ok())
        .collect();
    let total: u64 = ticks.iter().take(8).sum();
    // idle and iowait are the 4th and 5th.
    let idle = ticks.get(3)? + ticks.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// How busy the whole machine was since a [`machine_ticks`] reading, as a share of all cores.
#[allow(clippy::cast_precision_loss)]
pub fn busy_share(before: Option<(u64, u64)>) -> Option<f64> {
    match (before, machine_ticks()) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => Some((b1 - b0) as f64 / (t1 - t0) as f64),
        _ => None,
    }
}

/// The open-file limit (soft, hard) of a process, from /proc/PID/limits.
pub fn nofile(pid: &str) -> Option<(String, String)> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut words = line["Max open files".len()..].split_whitespace();
    Some((words.next()?.to_owned(), words.next()?.to_owned()))
}

/// A limit as /proc prints it (`unlimited` or a number).
pub fn parse_limit(s: &str) -> u64 {
    if s == "unlimited" {
        u64::MAX
    } else {
        s.parse().unwrap_or(0)
    }
}

/// Raises this process's soft open-file limit to `want` (or the hard limit, if lower; as root,
/// the hard limit too). The workspace forbids `unsafe`, so no setrlimit(2): `prlimit(1)` does
/// it. Returns the soft limit in force afterwards.
pub fn raise_nofile(want: u64) -> u64 {
    let me = std::process::id().to_string();
    let read = || nofile(&me).map(|(s, h)| (parse_limit(&s), parse_limit(&h)));
    let Some((soft, hard)) = read() else {
        return 0;
    };
    if soft >= want {
        return soft;
    }
    for (new_soft, new_hard) in [(want, hard.max(want)), (hard.min(want), hard)] {
        let hard_s = if new_hard == u64::MAX {
            "unlimited".to_owned()
        } else {
            new_hard.to_string()
        };
        let ok = std::process::Command::new("prlimit")
            .args(["--pid", &me, &format!("--nofile={new_soft}:{hard_s}")])
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            break;
        }
    }
    read().map_or(soft, |(s, _)| s)
}

/// Every process: its pid, `comm` (trimmed; the kernel cuts it to 15 bytes) and command line
/// (arguments NUL-separated, as the kernel gives it).
pub fn processes() -> Vec<(u32, String, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .map(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).into_owned();
            (pid, comm.trim_end().to_owned(), cmdline)
        })
        .collect()
}

/// The processes running the program `name`: `comm` is `name`'s first 15 bytes and
/// `argv[0]` ends in `name`.
pub fn pids_named(name: &str) -> Vec<u32> {
    processes()
        .into_iter()
        .filter(|(_, comm, cmdline)| {
            comm == &name[..name.len().min(15)]
                && cmdline
                    .split('\0')
                    .next()
                    .and_then(|argv0| argv0.rsplit('/').next())
                    .is_some_and(|base| base == name)
        })
        .map(|(pid, _, _)| pid)
        .collect()
}

/// The local stack's processes (as `stack/stack.sh` runs them) by role: `redis`, `cassandra`,
/// `kafka`. Redis rewrites its title (`redis-server ADDR:PORT`), so only its `comm` tells;
/// Java's command line says which program it runs.
pub fn stack_pids() -> Vec<(&'static str, u32)> {
    let mut found: Vec<(&'static str, u32)> = processes()
        .into_iter()
        .filter_map(|(pid, comm, cmdline)| {
            let role = match comm.as_str() {
                "redis-server" => "redis",
                "java" if cmdline.contains("CassandraDaemon") => "cassandra",
                "java" if cmdline.contains("kafka.Kafka") => "kafka",
                _ => return None,
            };
            Some((role, pid))
        })
        .collect();
    found.sort_unstable();
    found
}

/// The one process running `name`; an error when there is none or several.
pub fn pid_named(name: &str) -> Result<u32> {
    match pids_named(name).as_slice() {
        [pid] => Ok(*pid),
        [] => Err(Error::Proc(format!("no {name} process is running"))),
        many => Err(Error::Proc(format!(
            "several {name} processes {many:?}: give its pid"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_can_be_read() {
        assert!(cpu_secs("self").is_some());
        assert!(vm_kib("self", "VmRSS").expect("rss") > 0);
        assert!(nofile("self").is_some());
        let busy = machine_ticks().expect("ticks");
        assert!(busy.0 <= busy.1);
    }

    #[test]
    fn a_thread_that_sleeps_is_counted_as_woken() {
        let name = "procfs-sleeper";
        let sleeper = std::thread::Builder::new()
            .name(name.into())
            .spawn(|| {
                for _ in 0..5 {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                std::thread::sleep(std::time::Duration::from_millis(300));
            })
            .expect("spawn");
        std::thread::sleep(std::time::Duration::from_millis(100));
        let (voluntary, _) = thread_switches("self")[name];
        assert!(voluntary >= 5, "{voluntary} voluntary switches");
        sleeper.join().expect("join");
    }
}
