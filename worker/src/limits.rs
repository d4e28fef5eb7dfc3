//! The worker's memory limit (`worker.memory_limit_mb`).
//!
//! The worker caps its own data segment (RLIMIT_DATA: heap and private anonymous
//! memory, not the mapped dataset files) with util-linux's `prlimit`, so an analysis
//! that would exceed the limit fails its own attempt (the process aborts, the lease
//! runs out, the job is retried and finally dead-lettered) instead of pushing the
//! machine into the kernel's OOM killer. Streaming keeps profile, aggregate and SQL
//! well under the limit on datasets larger than it. In the cloud the ECS task's memory
//! is the limit.

use anyhow::Context as _;
use std::process::Command;

/// Applies the limit to this process. Fails if `prlimit` is missing or refuses.
pub fn limit_memory(limit_mb: u64) -> anyhow::Result<()> {
    let bytes = limit_mb.saturating_mul(1024 * 1024);
    let status = Command::new("prlimit")
        .arg("--pid")
        .arg(std::process::id().to_string())
        .arg(format!("--data={bytes}:{bytes}"))
        .status()
        .context("running prlimit (from util-linux) to apply worker.memory_limit_mb")?;
    anyhow::ensure!(
        status.success(),
        "prlimit refused worker.memory_limit_mb = {limit_mb}: {status}"
    );
    Ok(())
}

/// The data-segment limit of this process, in bytes, as the kernel reports it.
pub fn current_data_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max data size"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_visible_to_the_kernel() {
        // Run in a child so the test process itself stays unlimited.
        let exe = std::env::current_exe().unwrap();
        if std::env::var_os("QUARRY_LIMIT_CHILD").is_some() {
            limit_memory(4096).unwrap();
            assert_eq!(current_data_limit(), Some(4096 * 1024 * 1024));
            return;
        }
        let status = Command::new(exe)
            .args([
                "--exact",
                "limits::tests::the_limit_is_visible_to_the_kernel",
                "--nocapture",
            ])
            .env("QUARRY_LIMIT_CHILD", "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&status.stdout);
        assert!(status.status.success(), "{stdout}");
        // A filter that matched nothing would also exit 0: make sure the child ran it.
        assert!(
            stdout.contains("1 passed"),
            "the child ran no test: {stdout}"
        );
    }
}
