//! What the kernel knows about a process: its CPU time and peak RSS.

/// User + system CPU seconds so far, 0 if the process is gone.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start at ") ".
    let Some((_, rest)) = stat.rsplit_once(") ") else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after ") ".
    let ticks: u64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    // SAFETY: sysconf reads a constant of the running kernel.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    ticks as f64 / hz
}

/// Peak resident set size (VmHWM) in KiB, 0 if the process is gone.
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_used_cpu_and_memory() {
        let me = std::process::id();
        let started = std::time::Instant::now();
        let mut spin = 0u64;
        // CPU time counts in clock ticks: spin until one has been charged.
        while cpu_seconds(me) == 0.0 {
            assert!(started.elapsed().as_secs() < 10, "no CPU time charged");
            spin = (0..100_000u64).fold(spin, |a, x| a.wrapping_add(x * x));
        }
        assert!(peak_rss_kib(me) > 0);
        assert_eq!(cpu_seconds(u32::MAX), 0.0);
    }
}
