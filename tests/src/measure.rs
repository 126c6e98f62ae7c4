//! Helpers of the benchmarks: a process's CPU time and memory, medians
//! and percentiles, settings from the environment.

use std::time::Duration;

/// The setting `name` from the environment, else `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A duration in milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The CPU time the live threads of process `pid` have used, summed from
/// their schedstat (nanoseconds; `/proc/PID/stat` counts 10 ms ticks).
pub fn threads_cpu(pid: u32) -> Duration {
    let mut total = Duration::ZERO;
    let tasks = format!("/proc/{pid}/task");
    for task in std::fs::read_dir(&tasks)
        .unwrap_or_else(|e| panic!("cannot read {tasks}: {e}"))
        .flatten()
    {
        // A thread that ended meanwhile has nothing more to count.
        let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        let nanos: u64 = stat
            .split_whitespace()
            .next()
            .and_then(|ns| ns.parse().ok())
            .expect("a schedstat line");
        total += Duration::from_nanos(nanos);
    }
    total
}

/// A figure of `/proc/PID/status` (`VmRSS:`, `VmHWM:`), in KiB.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read the status of PID {pid}: {e}"))
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in the status of PID {pid}"))
}

/// The CPU time of the calling thread, exact: a running thread's
/// schedstat lags by up to a scheduler tick (4 ms), as much as a small
/// floor takes.
pub fn this_thread_cpu() -> Duration {
    cpu_clock(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
}

/// The CPU time of this process, every thread (ended ones too), exact.
pub fn this_process_cpu() -> Duration {
    cpu_clock(nix::time::ClockId::CLOCK_PROCESS_CPUTIME_ID)
}

fn cpu_clock(clock: nix::time::ClockId) -> Duration {
    let now = nix::time::clock_gettime(clock).expect("a CPU clock");
    Duration::new(now.tv_sec() as u64, now.tv_nsec() as u32)
}

/// The id of the calling thread.
pub fn this_thread_id() -> u32 {
    let link = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
    link.file_name()
        .and_then(|name| name.to_str())
        .and_then(|name| name.parse().ok())
        .expect("a thread id")
}

/// The user+system CPU time process `pid` has used so far, from
/// `/proc/<pid>/stat` (in 10 ms ticks: USER_HZ is 100).
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("cannot read the stat of PID {pid}: {e}"));
    // The command name may contain spaces; the fields after it do not.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("a /proc stat line")
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// The PID of the rig's host dockerd, from its pidfile; fails the
/// benchmark or test when it cannot be read.
pub fn host_dockerd_pid() -> u32 {
    crate::rig::host_dockerd_pid().unwrap_or_else(|e| panic!("{e}"))
}

/// The median (the upper one of an even count); `NaN` when empty.
pub fn median(values: &[f64]) -> f64 {
    percentile(values, 50.0)
}

/// The `p`th percentile by the nearest-rank method; `NaN` when empty.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), 50.0);
        assert_eq!(percentile(&values, 99.0), 99.0);
        assert_eq!(percentile(&values, 100.0), 100.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn our_own_cpu_time_is_readable() {
        let spent = cpu_time(std::process::id());
        assert!(spent < Duration::from_secs(3600));
    }
}
