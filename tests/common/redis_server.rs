//! A real `redis-server` for a test: started on a free port of 127.0.0.1, stopped when dropped.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

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

    /// Starts a server on a free port with extra `redis-server` arguments (e.g. `--timeout 1`).
    pub async fn start_with(extra: &[&str]) -> Self {
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .expect("a free port")
                .port();
            if let Some(child) = spawn(port, extra).await {
                return Self {
                    child: Some(child),
                    port,
                    extra: extra.iter().map(|a| (*a).to_owned()).collect(),
                };
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
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
    let mut child = match Command::new("redis-server")
        .args(["--port", &port.to_string()])
        .args(extra)
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
