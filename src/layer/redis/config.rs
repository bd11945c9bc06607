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
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisConfig {
    /// The server, as a `redis://[user:password@]host[:port][/db]` URL (with
    /// [`cluster`](Self::cluster): the first seed node).
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
        }
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
