//! The kernel's view of a test's own TCP sockets (Linux only): proves that socket options
//! a manager was given reached the socket, read from outside it.

use std::time::Duration;

/// The timer the kernel has armed on an established IPv4 loopback socket, found by its local
/// port in `/proc/net/tcp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelTimer {
    /// The timer kind: `0` none, `1` retransmit, `2` keepalive, `3` TIME_WAIT, `4` zero window.
    pub kind: u32,
    /// Ticks (1/100 s) until it fires.
    pub ticks: u64,
}

/// The timer on the established loopback socket with local port `local_port`, now.
///
/// # Panics
/// When `/proc/net/tcp` cannot be read or has no established socket on that port (a test
/// helper: the caller's test fails with the reason).
pub fn kernel_timer(local_port: u16) -> KernelTimer {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let local = format!("0100007F:{local_port:04X}");
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() > 5 && f[1] == local && f[3] == "01" {
            let (kind, when) = f[5].split_once(':').expect("tr:tm->when in /proc/net/tcp");
            return KernelTimer {
                kind: u32::from_str_radix(kind, 16).expect("hex timer kind"),
                ticks: u64::from_str_radix(when, 16).expect("hex timer ticks"),
            };
        }
    }
    panic!("no established socket on local port {local_port} in /proc/net/tcp");
}

/// The timer on an idle socket once nothing is in flight: a delayed ACK's retransmit timer
/// (kind `1`) is waited out, polling the kernel's table for at most two seconds, since the
/// kernel offers no event to wait on. What is left is the keepalive timer or none.
pub async fn idle_kernel_timer(local_port: u16) -> KernelTimer {
    let mut timer = kernel_timer(local_port);
    for _ in 0..200 {
        if timer.kind != 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        timer = kernel_timer(local_port);
    }
    timer
}
