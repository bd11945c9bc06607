//! A real `redis-server` for a test: started on a free port of 127.0.0.1, stopped when dropped.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Numbers cluster nodes' configuration files.
static NODE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// One `redis-server` process with no persistence, listening on 127.0.0.1 only.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts a server on a free port.
    ///
    /// # Panics
    ///
    /// If `redis-server` is not installed (the Debian package `redis-server`; `.ci/run` installs
    /// it) or does not start within 10 s.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts a server on a free port with extra `redis-server` arguments (e.g. `--timeout 1`);
    /// `{port}` in them is that port (`--port 0 --tls-port {port}`: TLS only).
    pub async fn start_with(extra: &[&str]) -> Self {
        Self::start_on_free_port(extra, |_| true).await
    }

    /// Starts a Redis Cluster node (no slots yet) on a free port whose cluster-bus port (the
    /// port + 10000) is free too, with a node timeout of 1 s (failures found fast).
    pub async fn start_cluster_node() -> Self {
        let config = std::env::temp_dir().join(format!(
            "switchboard-test-cluster-{}-{}.conf",
            std::process::id(),
            NODE.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&config);
        let config = config.to_string_lossy().into_owned();
        let extra = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            &config,
            "--cluster-node-timeout",
            "1000",
        ];
        Self::start_on_free_port(&extra, |port| {
            port < 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok()
        })
        .await
    }

    async fn start_on_free_port(extra: &[&str], usable: impl Fn(u16) -> bool) -> Self {
        for _ in 0..50 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .expect("a free port")
                .port();
            if !usable(port) {
                continue;
            }
            if let Some(child) = spawn(port, extra).await {
                return Self {
                    child: Some(child),
                    port,
                    extra: extra.iter().map(|a| (*a).to_owned()).collect(),
                };
            }
        }
        panic!("redis-server did not start on any of the free ports tried");
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (as a crash would) and waits for it to be gone.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts the server again on the same port, empty.
    pub async fn restart(&mut self) {
        self.kill().await;
        self.child = Some(
            spawn(
                self.port,
                &self.extra.iter().map(String::as_str).collect::<Vec<_>>(),
            )
            .await
            .expect("redis-server restarts on its port"),
        );
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

/// Starts `redis-server` on `port` and waits for its "Ready to accept connections" line; `None`
/// if it exited first (port taken).
async fn spawn(port: u16, extra: &[&str]) -> Option<Child> {
    let extra: Vec<String> = extra
        .iter()
        .map(|arg| arg.replace("{port}", &port.to_string()))
        .collect();
    let mut child = match Command::new("redis-server")
        .args(["--port", &port.to_string()])
        .args(&extra)
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        // Never load a dump.rdb from the working directory (a Redis run there by hand leaves
        // one): a file of its own that does not exist.
        .arg("--dir")
        .arg(std::env::temp_dir())
        .args([
            "--dbfilename",
            &format!("switchboard-test-{}-{port}.rdb", std::process::id()),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(error) => panic!(
            "cannot run redis-server ({error}): the Redis tests need the Debian package \
             redis-server (`apt-get install redis-server`; .ci/run installs it)"
        ),
    };
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("Ready to accept connections") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    if !ready {
        let _ = child.kill().await;
        return None;
    }
    // Keep reading its log so that it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Some(child)
}
