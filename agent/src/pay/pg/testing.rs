//! A throwaway PostgreSQL cluster for tests and benchmarks: `initdb` in a
//! temporary directory (trust authentication), the server on a free
//! loopback port with its socket in that directory, `fsync` and
//! `synchronous_commit` on; stopped and removed on drop. `initdb` and
//! `postgres` refuse to run as root, so as root they run as the `postgres`
//! user (`runuser`), which owns the directory.
//!
//! PostgreSQL 15 or newer is looked for in `AGENTWIRE_PG_BIN`, then
//! `/usr/lib/postgresql/<version>/bin` (Debian's packages; `scripts/test.sh`
//! installs them), then `PATH`. When it cannot be found or started the error
//! says what is missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// A running throwaway cluster.
pub struct TempCluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

static CLUSTERS: AtomicU32 = AtomicU32::new(0);

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

/// The directory of `initdb` and `pg_ctl` of PostgreSQL 15 or newer.
pub fn find_bin() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("AGENTWIRE_PG_BIN") {
        let dir = PathBuf::from(dir);
        return if dir.join("initdb").exists() {
            Ok(dir)
        } else {
            Err(format!("AGENTWIRE_PG_BIN={} has no initdb", dir.display()))
        };
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(v, bin): &(u32, PathBuf)| *v >= 15 && bin.join("initdb").exists())
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    if let Ok(o) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
        if o.status.success() && dir.join("initdb").exists() {
            return Ok(dir);
        }
    }
    Err("PostgreSQL 15 or newer is not installed (no initdb under /usr/lib/postgresql/*/bin, AGENTWIRE_PG_BIN or \
         pg_config): install the Debian package `postgresql` (bash scripts/test.sh does) or set AGENTWIRE_PG_BIN"
        .into())
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free loopback port: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

impl TempCluster {
    /// Creates and starts a cluster (a few seconds).
    pub fn start() -> Result<TempCluster, String> {
        let bin = find_bin()?;
        let as_postgres = is_root();
        let n = CLUSTERS.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("agentwire-pg-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut cluster = TempCluster { dir, bin, port: 0, as_postgres };
        if as_postgres {
            let o = Command::new("chown")
                .args(["postgres", cluster.dir.to_str().unwrap_or_default()])
                .output()
                .map_err(|e| format!("chown: {e}"))?;
            if !o.status.success() {
                return Err(format!(
                    "running as root, the cluster must belong to the `postgres` user (initdb refuses root), but \
                     chown failed: {} (install the Debian package `postgresql`, which creates the user)",
                    text(&o)
                ));
            }
        }
        let data = cluster.data();
        let o = cluster.run("initdb", &["-D", &data, "--auth=trust", "-U", "postgres", "-N", "-E", "UTF8"])?;
        if !o.status.success() {
            return Err(format!("initdb failed: {}", text(&o)));
        }
        let mut last = String::new();
        for _ in 0..3 {
            cluster.port = free_port()?;
            match cluster.start_again() {
                Ok(()) => return Ok(cluster),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<Output, String> {
        let path = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        cmd.args(args).current_dir(&self.dir);
        cmd.output().map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Starts the server (again) on its port; waits until it accepts connections.
    pub fn start_again(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log").display().to_string();
        let o = self.run("pg_ctl", &["-D", &self.data(), "-o", &options, "-l", &log, "-w", "-t", "60", "start"])?;
        if !o.status.success() {
            let server_log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
            return Err(format!("pg_ctl start failed: {}\nserver log:\n{server_log}", text(&o)));
        }
        Ok(())
    }

    /// Stops the server: `fast` ends sessions and shuts down cleanly;
    /// `immediate` is a crash (recovery from the WAL at the next start).
    pub fn stop(&self, mode: &str) -> Result<(), String> {
        let o = self.run("pg_ctl", &["-D", &self.data(), "-m", mode, "-w", "-t", "60", "stop"])?;
        if !o.status.success() {
            return Err(format!("pg_ctl stop failed: {}", text(&o)));
        }
        Ok(())
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's directory (data, socket, server log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        let _ = self.stop("immediate");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
