//! [`RedisConfig`]: the Redis layer's settings.

use std::time::Duration;

/// Settings of a [`RedisChannelLayer`](super::RedisChannelLayer). Capacity and expiries default to Channels'
/// (`channels_redis`) values.
///
/// ```
/// use std::time::Duration;
/// use switchboard::layer::RedisConfig;
///
/// let config = RedisConfig::new("redis://127.0.0.1:6379")
///     .prefix("myapp")
///     .capacity(500)
///     .command_timeout(Duration::from_secs(1));
/// assert_eq!(config.prefix, "myapp");
/// ```
///
/// Credentials and TLS come with the URL: `redis://:password@host` (`requirepass`),
/// `redis://user:password@host` (an ACL user), `rediss://host` (TLS, verified against the
/// system's roots or [`tls_root_certificates`](Self::tls_root_certificates)). The `Debug` output
/// shows URLs with their passwords replaced by `***`.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisConfig {
    /// The server, as a `redis://[user:password@]host[:port][/db]` URL, or `rediss://..` for
    /// TLS (with [`cluster`](Self::cluster): the first seed node).
    pub url: String,
    /// Seed nodes of a Redis Cluster (`redis://host:port` each; any few of its nodes, the rest
    /// are found from them); empty for a single server at [`url`](Self::url). Made by
    /// [`RedisConfig::cluster`].
    pub cluster_nodes: Vec<String>,
    /// Start of every Redis key and channel the layer uses, so that several apps can share one
    /// server. Default `"switchboard"` (Channels: `"asgi"`).
    pub prefix: String,
    /// Messages a channel holds before `send` fails with `ChannelFull` (count), unless a
    /// [`channel_capacity`](Self::channel_capacity) pattern says otherwise. Default 100.
    pub capacity: usize,
    /// How long a message waits to be received before it is dropped. Default 60 s.
    pub expiry: Duration,
    /// How long a group membership lasts after its last `group_add`. Default 86400 s.
    pub group_expiry: Duration,
    /// Longest wait for one Redis command; past it the operation fails with
    /// [`LayerError::Unavailable`](crate::layer::LayerError::Unavailable). Default 3 s. The subscription connection has no read timeout:
    /// an idle subscriber is never cut off (the failure `channels_redis` users meet in
    /// django/channels_redis#422); it is checked by a `PING` every
    /// [`health_check_interval`](Self::health_check_interval) instead.
    pub command_timeout: Duration,
    /// How often the subscription connection is checked with a `PING`. Default 15 s.
    pub health_check_interval: Duration,
    /// How long a process counts as alive after its last heartbeat (for presence lists); it
    /// beats three times per period. Default 30 s.
    pub process_ttl: Duration,
    /// How often messages found lost are logged, and groups that lost their last local member
    /// are checked for (they are also unsubscribed as soon as a member leaves). Default 30 s.
    pub unsubscribe_interval: Duration,
    /// Capacities by channel-name pattern, first match first.
    pub(super) capacities: crate::layer::Capacities,
    /// Groups that keep a stream, by name pattern.
    pub(super) histories: crate::layer::Histories,
    /// With a window, each process sends a group's presence changes as one
    /// [`PRESENCE_DIFF`](crate::layer::PRESENCE_DIFF) event per window. Default `None`.
    pub presence_window: Option<Duration>,
    /// CA certificates (PEM) that a `rediss://` server's certificate must chain to, instead of
    /// the system's roots.
    pub(super) tls_root_certificates: Option<Vec<u8>>,
    /// Certificate chain and private key (PEM) this client shows a `rediss://` server that asks
    /// for one (`tls-auth-clients yes`).
    pub(super) tls_client_certificate: Option<(Vec<u8>, Vec<u8>)>,
}

/// `url` with the password of its userinfo (`user:password@`) replaced by `***`.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***{}", &rest[at..]),
        None => url.to_owned(),
    }
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let nodes: Vec<String> = self.cluster_nodes.iter().map(|n| redact_url(n)).collect();
        f.debug_struct("RedisConfig")
            .field("url", &redact_url(&self.url))
            .field("cluster_nodes", &nodes)
            .field("prefix", &self.prefix)
            .field("capacity", &self.capacity)
            .field("expiry", &self.expiry)
            .field("group_expiry", &self.group_expiry)
            .field("command_timeout", &self.command_timeout)
            .field("health_check_interval", &self.health_check_interval)
            .field("process_ttl", &self.process_ttl)
            .field("unsubscribe_interval", &self.unsubscribe_interval)
            .field("capacities", &self.capacities)
            .field("histories", &self.histories)
            .field("presence_window", &self.presence_window)
            .field(
                "tls_root_certificates",
                &self.tls_root_certificates.as_ref().map(Vec::len),
            )
            .field(
                "tls_client_certificate",
                &self.tls_client_certificate.as_ref().map(|_| "***"),
            )
            .finish()
    }
}

impl RedisConfig {
    /// Settings for the server at `url` with the defaults.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            cluster_nodes: Vec::new(),
            prefix: "switchboard".to_owned(),
            capacity: 100,
            expiry: Duration::from_secs(60),
            group_expiry: Duration::from_secs(86_400),
            command_timeout: Duration::from_secs(3),
            health_check_interval: Duration::from_secs(15),
            process_ttl: Duration::from_secs(30),
            unsubscribe_interval: Duration::from_secs(30),
            capacities: crate::layer::Capacities::default(),
            histories: crate::layer::Histories::default(),
            presence_window: None,
            tls_root_certificates: None,
            tls_client_certificate: None,
        }
    }

    /// Trusts the CA certificates in `pem` (one or more PEM blocks) for `rediss://` servers,
    /// instead of the system's roots: a deployment's own CA.
    pub fn tls_root_certificates(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_root_certificates = Some(pem.into());
        self
    }

    /// Shows `certificate_chain` (PEM) with its `private_key` (PEM: PKCS#8, PKCS#1 or SEC1) to
    /// `rediss://` servers that authenticate clients by certificate (`tls-auth-clients yes`).
    pub fn tls_client_certificate(
        mut self,
        certificate_chain: impl Into<Vec<u8>>,
        private_key: impl Into<Vec<u8>>,
    ) -> Self {
        self.tls_client_certificate = Some((certificate_chain.into(), private_key.into()));
        self
    }

    /// The TLS material for the redis crate, when any was given.
    pub(super) fn tls_certificates(&self) -> Option<redis::TlsCertificates> {
        if self.tls_root_certificates.is_none() && self.tls_client_certificate.is_none() {
            return None;
        }
        Some(redis::TlsCertificates {
            client_tls: self.tls_client_certificate.as_ref().map(|(cert, key)| {
                redis::ClientTlsConfig {
                    client_cert: cert.clone(),
                    client_key: key.clone(),
                }
            }),
            root_cert: self.tls_root_certificates.clone(),
        })
    }

    /// Settings for a Redis Cluster (Redis 7 or later) reached through `nodes`, seed node URLs
    /// (`redis://host:port`), with the defaults. The layer then keeps each group's keys in one
    /// hash slot (`{<group>}` in their names), talks to groups and processes by sharded pub/sub
    /// (`SPUBLISH`, `SSUBSCRIBE`: a message goes only to the shard that owns its channel, not
    /// to every node), follows `MOVED` and `ASK` redirections, and finds the cluster's new shape
    /// after a failover by itself. See [`RedisChannelLayer`](super::RedisChannelLayer).
    ///
    /// ```
    /// use switchboard::layer::RedisConfig;
    ///
    /// let config = RedisConfig::cluster(["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"]);
    /// assert_eq!(config.cluster_nodes.len(), 2);
    /// assert_eq!(config.url, "redis://10.0.0.1:7000");
    /// ```
    ///
    /// # Panics
    ///
    /// If `nodes` is empty.
    #[track_caller]
    pub fn cluster<I>(nodes: I) -> Self
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        let nodes: Vec<String> = nodes.into_iter().map(Into::into).collect();
        assert!(
            !nodes.is_empty(),
            "a Redis Cluster needs at least one seed node"
        );
        Self {
            cluster_nodes: nodes.clone(),
            ..Self::new(nodes[0].clone())
        }
    }

    /// Whether this is a Redis Cluster configuration ([`cluster`](Self::cluster)).
    pub fn is_cluster(&self) -> bool {
        !self.cluster_nodes.is_empty()
    }

    /// Gives channels whose name matches `pattern` (a glob) a capacity of `messages`, as
    /// [`InMemoryConfig::channel_capacity`](crate::layer::InMemoryConfig::channel_capacity)
    /// (Channels' `channel_capacity`). It applies to this process's channels and to `send`s to
    /// named channels; a `group_send` reaching a named channel added to a group by another process
    /// uses [`capacity`](Self::capacity).
    ///
    /// # Panics
    ///
    /// If `pattern` is not a valid glob, or `messages` is 0.
    #[track_caller]
    pub fn channel_capacity(mut self, pattern: &str, messages: usize) -> Self {
        self.capacities.add(pattern, messages);
        self
    }

    /// Makes groups whose name matches `pattern` keep a stream in Redis of their last `events`
    /// events, for `age` at most, as
    /// [`InMemoryConfig::group_history`](crate::layer::InMemoryConfig::group_history): a Redis
    /// stream per group (`<prefix>:s:{<group>}`, exact `MAXLEN`), an epoch and an offset counter
    /// beside it, all three expiring after `age` without events (then a new epoch begins, as
    /// after a `FLUSHALL`).
    ///
    /// # Panics
    ///
    /// If `pattern` is not a valid glob, or `events` is 0.
    #[track_caller]
    pub fn group_history(mut self, pattern: &str, events: usize, age: Duration) -> Self {
        self.histories.add(pattern, events, age);
        self
    }

    /// Gathers the presence changes this process makes in each group over `window` and sends
    /// them as one [`PRESENCE_DIFF`](crate::layer::PRESENCE_DIFF) event, as
    /// [`InMemoryConfig::presence_window`](crate::layer::InMemoryConfig::presence_window) (each
    /// process sends its own diffs: a group hears at most one per process per window).
    pub fn presence_window(mut self, window: Duration) -> Self {
        self.presence_window = Some(window);
        self
    }

    /// The capacity of the channel named `channel` (the first matching pattern's, or
    /// [`capacity`](Self::capacity)).
    pub fn capacity_for(&self, channel: &str) -> usize {
        self.capacities.of(channel, self.capacity)
    }

    /// Sets [`prefix`](Self::prefix).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets [`capacity`](Self::capacity): messages per channel.
    pub fn capacity(mut self, messages: usize) -> Self {
        self.capacity = messages;
        self
    }

    /// Sets [`expiry`](Self::expiry): how long a message may wait.
    pub fn expiry(mut self, expiry: Duration) -> Self {
        self.expiry = expiry;
        self
    }

    /// Sets [`group_expiry`](Self::group_expiry): how long a membership lasts.
    pub fn group_expiry(mut self, expiry: Duration) -> Self {
        self.group_expiry = expiry;
        self
    }

    /// Sets [`command_timeout`](Self::command_timeout).
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// Sets [`health_check_interval`](Self::health_check_interval).
    pub fn health_check_interval(mut self, interval: Duration) -> Self {
        self.health_check_interval = interval;
        self
    }

    /// Sets [`process_ttl`](Self::process_ttl).
    pub fn process_ttl(mut self, ttl: Duration) -> Self {
        self.process_ttl = ttl;
        self
    }

    /// Sets [`unsubscribe_interval`](Self::unsubscribe_interval).
    pub fn unsubscribe_interval(mut self, interval: Duration) -> Self {
        self.unsubscribe_interval = interval;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_passwords() {
        assert_eq!(
            redact_url("redis://layer:s3cret@10.0.0.1:6379/0"),
            "redis://layer:***@10.0.0.1:6379/0"
        );
        assert_eq!(redact_url("rediss://:s3cret@host"), "rediss://:***@host");
        assert_eq!(redact_url("redis://host:6379"), "redis://host:6379");
        assert_eq!(redact_url("redis://user@host"), "redis://user@host");
        assert_eq!(redact_url("redis://host/a@b"), "redis://host/a@b");
        let config = RedisConfig::cluster(["redis://u:p4ss@a:1", "redis://u:p4ss@b:2"])
            .tls_client_certificate("CERT", "KEY");
        let debug = format!("{config:?}");
        assert!(!debug.contains("p4ss") && !debug.contains("KEY"), "{debug}");
        assert!(debug.contains("redis://u:***@b:2"), "{debug}");
    }
}
