//! What the load generator reads about the machine and its processes:
//! resident memory and CPU time of a process (`/proc/<pid>/…`), the load
//! average, UDP drop counters, and the limits that bound a run (open files,
//! socket buffers). Linux only, like the rest of this bench.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Resident memory of `pid`, KiB (`VmRSS`).
pub fn rss_kib(pid: u32) -> u64 {
    status_field(pid, "VmRSS:").unwrap_or(0)
}

/// Anonymous resident memory of `pid`, KiB (`RssAnon`: heap and stacks, not the binary's pages).
pub fn rss_anon_kib(pid: u32) -> u64 {
    status_field(pid, "RssAnon:").unwrap_or(0)
}

/// Threads of `pid`.
pub fn threads(pid: u32) -> u64 {
    status_field(pid, "Threads:").unwrap_or(0)
}

fn status_field(pid: u32, name: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

/// CPU time `pid` has used (user + system, all threads).
pub fn cpu_time(pid: u32) -> Duration {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return Duration::ZERO };
    // Fields after the command name (which may hold spaces) start at state (field 3).
    let Some(rest) = text.rsplit_once(')').map(|(_, r)| r) else { return Duration::ZERO };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // utime is field 14, stime 15: indices 11 and 12 counted from field 3.
    Duration::from_secs_f64((ticks(11) + ticks(12)) as f64 / clock_ticks() as f64)
}

fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100)
    })
}

/// The 1-minute load average (what `uptime` shows first).
pub fn load1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|f| f.parse().ok()))
        .unwrap_or(f64::NAN)
}

/// `uptime`'s three load averages, as text.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// UDP datagrams the kernel dropped for a full receive or send buffer, and
/// for memory (this network namespace, all sockets): `RcvbufErrors`,
/// `SndbufErrors`, `MemErrors` of `/proc/net/snmp`.
#[derive(Clone, Copy, Default, Debug)]
pub struct UdpDrops {
    pub rcvbuf: u64,
    pub sndbuf: u64,
    pub mem: u64,
}

impl UdpDrops {
    pub fn read() -> UdpDrops {
        let text = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
        let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
        let (Some(names), Some(values)) = (udp.next(), udp.next()) else { return UdpDrops::default() };
        let get = |name: &str| {
            names
                .split_whitespace()
                .position(|n| n == name)
                .and_then(|i| values.split_whitespace().nth(i))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        UdpDrops { rcvbuf: get("RcvbufErrors"), sndbuf: get("SndbufErrors"), mem: get("MemErrors") }
    }

    pub fn since(self, before: UdpDrops) -> UdpDrops {
        UdpDrops {
            rcvbuf: self.rcvbuf.saturating_sub(before.rcvbuf),
            sndbuf: self.sndbuf.saturating_sub(before.sndbuf),
            mem: self.mem.saturating_sub(before.mem),
        }
    }

    pub fn total(&self) -> u64 {
        self.rcvbuf + self.sndbuf + self.mem
    }
}

/// Datagrams dropped on the UDP sockets bound to local `port` (`drops` of `/proc/net/udp`).
pub fn socket_drops(port: u16) -> u64 {
    let text = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    let want = format!("{port:04X}");
    text.lines()
        .skip(1)
        .filter(|l| l.split_whitespace().nth(1).and_then(|a| a.split(':').nth(1)) == Some(want.as_str()))
        .filter_map(|l| l.split_whitespace().last().and_then(|d| d.parse::<u64>().ok()))
        .sum()
}

/// The limits that bound this run, as one line for the report.
pub fn limits() -> String {
    let sysctl = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().replace('\t', " ")).unwrap_or("?".into());
    let open_files = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .map(|l| l.split_whitespace().nth(3).unwrap_or("?").to_string())
        })
        .unwrap_or("?".into());
    format!(
        "open files (soft) {open_files}; net.core.rmem_default {} rmem_max {} wmem_default {} wmem_max {}; ip_local_port_range {}",
        sysctl("/proc/sys/net/core/rmem_default"),
        sysctl("/proc/sys/net/core/rmem_max"),
        sysctl("/proc/sys/net/core/wmem_default"),
        sysctl("/proc/sys/net/core/wmem_max"),
        sysctl("/proc/sys/net/ipv4/ip_local_port_range"),
    )
}

/// The machine, as one line for the report.
pub fn describe() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let mem =
        status_like("/proc/meminfo", "MemTotal:").map(|k| format!("{} GiB", k / (1024 * 1024))).unwrap_or_default();
    let kernel =
        std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    format!("{cores} cores ({cpu}), {mem}, Linux {kernel}")
}

fn status_like(path: &str, name: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

/// Now, as UTC text (for the report).
pub fn utc_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M:%S UTC"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// A child process of this bench (it re-executes itself in another role):
/// lines it prints come through a channel; closing its stdin tells it to
/// finish; it is killed if still running when dropped.
pub struct Process {
    child: Child,
    stdin: Option<ChildStdin>,
    /// In a mutex only so a `Process` can be shared across tasks.
    lines: std::sync::Mutex<mpsc::Receiver<String>>,
    pub pid: u32,
}

impl Process {
    /// Starts this executable with `role` and `env`; its stderr goes to `log`.
    pub fn spawn(role: &str, env: &[(&str, String)], log: &std::path::Path) -> Process {
        let err = std::fs::File::create(log).expect("child log file");
        let exe = std::env::current_exe().expect("exe");
        let mut cmd = match std::env::var("AGENTWIRE_SCALE_WRAP") {
            Ok(w) if std::env::var("AGENTWIRE_SCALE_WRAP_ROLE").as_deref() == Ok(role) => {
                let mut parts = w.split_whitespace();
                let mut c = Command::new(parts.next().expect("AGENTWIRE_SCALE_WRAP names a command"));
                c.args(parts);
                c.arg(exe);
                c
            }
            _ => Command::new(exe),
        };
        cmd.env(super::ROLE_ENV, role).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(err);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("re-executing the bench");
        let pid = child.id();
        let stdin = child.stdin.take();
        let out = child.stdout.take().expect("child stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Process { child, stdin, lines: std::sync::Mutex::new(lines), pid }
    }

    /// The next line that starts with `prefix` (others are skipped), within `timeout`.
    pub fn expect(&self, prefix: &str, timeout: Duration) -> Result<String, String> {
        let deadline = std::time::Instant::now() + timeout;
        let lines = self.lines.lock().map_err(|_| "poisoned".to_string())?;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match lines.recv_timeout(left) {
                Ok(l) if l.starts_with(prefix) => return Ok(l[prefix.len()..].trim().to_string()),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => return Err(format!("no `{prefix}` line within {timeout:?}")),
                Err(mpsc::RecvTimeoutError::Disconnected) => return Err(format!("exited before printing `{prefix}`")),
            }
        }
    }

    /// Sends one command line.
    pub fn send(&mut self, line: &str) {
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = writeln!(stdin, "{line}");
            let _ = stdin.flush();
        }
    }

    /// Its live heap, KiB, as its allocator counts it (0 if it does not answer).
    pub fn heap_kib(&mut self) -> u64 {
        self.send("heap");
        self.expect("HEAP", Duration::from_secs(10)).ok().and_then(|b| b.parse::<u64>().ok()).map_or(0, |b| b / 1024)
    }

    /// Closes its stdin (it finishes, prints what it has, and exits).
    pub fn finish(&mut self) {
        self.stdin = None;
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
