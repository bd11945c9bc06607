//! A real local Redis Cluster for a test: `masters` primaries (the slots split evenly) and
//! `replicas` replicas of each, made with `redis-cli --cluster create`, all on 127.0.0.1.

use std::time::Duration;

use super::redis_server::RedisServer;

/// The nodes of a running cluster, stopped when dropped.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

/// How long the cluster may take to form, or to fail over.
const FORM: Duration = Duration::from_secs(30);

impl RedisCluster {
    /// Starts the nodes, joins them into a cluster, and waits until every node says the cluster
    /// is `ok`, every replica has synced with its primary, and every node sees every other.
    ///
    /// # Panics
    ///
    /// If `redis-server` or `redis-cli` are missing (Debian's `redis-server` package has both;
    /// `.ci/run` installs it), or the cluster does not form within 30 s.
    pub async fn start(masters: usize, replicas: usize) -> Self {
        let mut nodes = Vec::new();
        for _ in 0..masters * (1 + replicas) {
            nodes.push(RedisServer::start_cluster_node().await);
        }
        let mut create = tokio::process::Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in &nodes {
            create.arg(format!("127.0.0.1:{}", node.port()));
        }
        let made = create
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .await
            .expect("redis-cli runs (Debian package redis-server)");
        assert!(made.success(), "redis-cli --cluster create failed");
        let cluster = Self { nodes };
        cluster
            .wait_until("the cluster to form", |infos| {
                infos.iter().all(|info| {
                    info.cluster.contains("cluster_state:ok")
                        && info
                            .cluster
                            .contains(&format!("cluster_known_nodes:{}", masters * (1 + replicas)))
                        && (!info.replication.contains("role:slave")
                            || info.replication.contains("master_link_status:up"))
                })
            })
            .await;
        cluster
    }

    /// `redis://127.0.0.1:<port>` of every node (seed nodes for the layer).
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// Kills the primary that owns the slot of hash tag `tag` (as a crash would) and returns its
    /// port.
    pub async fn kill_primary_of(&mut self, tag: &str) -> u16 {
        let port = self.primary_of(tag).await;
        let node = self
            .nodes
            .iter_mut()
            .find(|node| node.port() == port)
            .expect("the primary is one of ours");
        node.kill().await;
        port
    }

    /// Waits until a replica has taken over the slot of `tag` from the killed primary `was`,
    /// and the cluster is `ok` again as the living nodes see it.
    pub async fn wait_for_failover(&self, tag: &str, was: u16) {
        let deadline = tokio::time::Instant::now() + FORM;
        loop {
            if let Some(port) = self.try_primary_of(tag, Some(was)).await {
                if port != was {
                    let all_ok = self
                        .infos(Some(was))
                        .await
                        .iter()
                        .all(|info| info.cluster.contains("cluster_state:ok"));
                    if all_ok {
                        return;
                    }
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no failover within {FORM:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await; // polling the cluster's view
        }
    }

    /// The port of the primary that owns the slot of hash tag `tag`.
    pub async fn primary_of(&self, tag: &str) -> u16 {
        self.try_primary_of(tag, None)
            .await
            .expect("some node knows the slot's owner")
    }

    async fn try_primary_of(&self, tag: &str, skip: Option<u16>) -> Option<u16> {
        for node in self.nodes.iter().filter(|n| Some(n.port()) != skip) {
            let Ok(mut connection) = connect(node).await else {
                continue;
            };
            let Ok(slot) = redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(tag)
                .query_async::<u16>(&mut connection)
                .await
            else {
                continue;
            };
            let Ok(nodes) = redis::cmd("CLUSTER")
                .arg("NODES")
                .query_async::<String>(&mut connection)
                .await
            else {
                continue;
            };
            // `<id> <ip:port@bus> <flags> <primary> <ping> <pong> <epoch> <link> <slot ranges>`
            for line in nodes.lines() {
                let fields: Vec<&str> = line.split_whitespace().collect();
                if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                    continue;
                }
                let owns = fields[8..].iter().any(|range| {
                    let (low, high) = range.split_once('-').unwrap_or((range, range));
                    match (low.parse::<u16>(), high.parse::<u16>()) {
                        (Ok(low), Ok(high)) => (low..=high).contains(&slot),
                        _ => false,
                    }
                });
                if owns {
                    let address = fields[1].split('@').next()?;
                    return address.rsplit_once(':')?.1.parse().ok();
                }
            }
        }
        None
    }

    async fn infos(&self, skip: Option<u16>) -> Vec<Info> {
        let mut infos = Vec::new();
        for node in self.nodes.iter().filter(|n| Some(n.port()) != skip) {
            let info = async {
                let mut connection = connect(node).await.ok()?;
                let cluster: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async(&mut connection)
                    .await
                    .ok()?;
                let replication: String = redis::cmd("INFO")
                    .arg("replication")
                    .query_async(&mut connection)
                    .await
                    .ok()?;
                Some(Info {
                    cluster,
                    replication,
                })
            };
            infos.push(info.await.unwrap_or_default());
        }
        infos
    }

    async fn wait_until(&self, what: &str, done: impl Fn(&[Info]) -> bool) {
        let deadline = tokio::time::Instant::now() + FORM;
        while !done(&self.infos(None).await) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await; // polling the cluster's view
        }
    }
}

#[derive(Default)]
struct Info {
    cluster: String,
    replication: String,
}

async fn connect(node: &RedisServer) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(node.url())?;
    tokio::time::timeout(
        Duration::from_secs(2),
        client.get_multiplexed_async_connection(),
    )
    .await
    .map_err(|_| redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)))?
}
