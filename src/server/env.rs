//! [`ServerConfig`] from environment variables, for deployments configured the twelve-factor way.

use std::time::Duration;

use super::config::{InboundRateLimit, Rate, RateLimitPolicy, ServerConfig, SlowClientPolicy};
use crate::middleware::OriginCheck;

/// A variable of [`ServerConfig::from_env`] whose value could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}={value:?}: expected {expected}")]
#[non_exhaustive]
pub struct ConfigError {
    /// The variable's name, e.g. `SWITCHBOARD_PING_INTERVAL`.
    pub variable: &'static str,
    /// Its value as found.
    pub value: String,
    /// What it should have been.
    pub expected: &'static str,
}

const SECONDS: &str = "a number of seconds (e.g. 20 or 0.5)";
const SECONDS_OR_OFF: &str = "a number of seconds, or \"off\"";
const BYTES: &str = "a number of bytes";
const COUNT_OR_NONE: &str = "a count, or \"none\"";
const COUNT: &str = "a count above 0";
const ON_OFF: &str = "\"on\" or \"off\"";
const PROXIES: &str = "addresses or networks, comma-separated (e.g. 127.0.0.1,10.0.0.0/8)";
const ORIGINS: &str =
    "origin patterns, comma-separated (e.g. https://example.com,*.example.com), or *";
const ROOT_PATH: &str = "a path starting with / (e.g. /chat)";
const RATE: &str = "a rate per second and a burst, comma-separated (e.g. 20,40), or \"off\"";
const RATE_POLICY: &str = "\"drop\", or \"close:<dropped messages in a row>\" (e.g. close:100)";
const SLOW_CLIENT: &str = "\"drop\", or the seconds a write may wait before disconnecting";

fn seconds(value: &str) -> Option<Duration> {
    let seconds: f64 = value.trim().parse().ok()?;
    Duration::try_from_secs_f64(seconds).ok()
}

fn is_off(value: &str, word: &str) -> bool {
    value.trim().eq_ignore_ascii_case(word)
}

impl ServerConfig {
    /// The defaults, with what the environment sets: each variable below that is present
    /// replaces one field. Durations are seconds (fractions allowed), sizes are bytes.
    ///
    /// | variable | field |
    /// |---|---|
    /// | `SWITCHBOARD_SHUTDOWN_TIMEOUT` | [`shutdown_timeout`](Self::shutdown_timeout): the grace period of a shutdown (SIGTERM) |
    /// | `SWITCHBOARD_CLOSE_TIMEOUT` | [`close_timeout`](Self::close_timeout) |
    /// | `SWITCHBOARD_HEADER_READ_TIMEOUT` | [`header_read_timeout`](Self::header_read_timeout) |
    /// | `SWITCHBOARD_HANDSHAKE_TIMEOUT` | [`handshake_timeout`](Self::handshake_timeout) |
    /// | `SWITCHBOARD_MAX_MESSAGE_SIZE` | [`max_message_size`](Self::max_message_size) |
    /// | `SWITCHBOARD_MAX_FRAME_SIZE` | [`max_frame_size`](Self::max_frame_size) |
    /// | `SWITCHBOARD_READ_BUFFER_SIZE` | [`read_buffer_size`](Self::read_buffer_size) |
    /// | `SWITCHBOARD_WRITE_BUFFER_SIZE` | [`write_buffer_size`](Self::write_buffer_size) |
    /// | `SWITCHBOARD_SLOW_CLIENT` | [`slow_client`](Self::slow_client): `drop`, or seconds before disconnecting |
    /// | `SWITCHBOARD_PING_INTERVAL` | [`ping_interval`](Self::ping_interval): seconds, or `off` |
    /// | `SWITCHBOARD_PONG_TIMEOUT` | [`pong_timeout`](Self::pong_timeout) |
    /// | `SWITCHBOARD_MAX_CONNECTIONS` | [`max_connections`](Self::max_connections): a count, or `none` |
    /// | `SWITCHBOARD_MAX_CONNECTIONS_PER_CLIENT` | [`max_connections_per_client`](Self::max_connections_per_client): a count, or `none` |
    /// | `SWITCHBOARD_ALLOWED_ORIGINS` | [`origin_check`](Self::origin_check): the same origin and these [patterns](crate::OriginCheck::allow), comma-separated (`*`: any origin) |
    /// | `SWITCHBOARD_RATE_LIMIT_MESSAGES` | [`inbound_rate_limit`](Self::inbound_rate_limit)'s messages: `<per second>,<burst>`, or `off` |
    /// | `SWITCHBOARD_RATE_LIMIT_BYTES` | its payload bytes: `<per second>,<burst>`, or `off` |
    /// | `SWITCHBOARD_RATE_LIMIT_POLICY` | its policy: `drop`, or `close:<n>` (close with 1008 after `n` dropped in a row) |
    /// | `SWITCHBOARD_HTTP2` | [`http2`](Self::http2): `on` (the default settings) or `off` (HTTP/1.1 only) |
    /// | `SWITCHBOARD_MAX_WEBSOCKETS_PER_CONNECTION` | [`Http2Config::max_websockets_per_connection`](crate::Http2Config::max_websockets_per_connection) (when HTTP/2 is on) |
    /// | `SWITCHBOARD_HTTP2_MAX_CONCURRENT_STREAMS` | [`Http2Config::max_concurrent_streams`](crate::Http2Config::max_concurrent_streams) |
    /// | `SWITCHBOARD_HTTP2_IDLE_TIMEOUT` | [`Http2Config::idle_timeout`](crate::Http2Config::idle_timeout): seconds, or `off` |
    /// | `SWITCHBOARD_HTTP2_KEEP_ALIVE_INTERVAL` | [`Http2Config::keep_alive_interval`](crate::Http2Config::keep_alive_interval): seconds, or `off` |
    /// | `SWITCHBOARD_TRUSTED_PROXIES` | [`trusted_proxies`](Self::trusted_proxies): addresses or networks, comma-separated |
    /// | `SWITCHBOARD_ROOT_PATH` | [`root_path`](Self::root_path) |
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first variable whose value does not parse.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::default().apply_env()
    }

    /// As [`from_env`](Self::from_env), reading the variables from `vars` (name, value) instead
    /// of the process's environment: for tests, or a configuration file read into pairs.
    ///
    /// ```
    /// use std::time::Duration;
    /// use switchboard::ServerConfig;
    ///
    /// let config = ServerConfig::from_vars([
    ///     ("SWITCHBOARD_PING_INTERVAL", "off"),
    ///     ("SWITCHBOARD_SHUTDOWN_TIMEOUT", "30"),
    /// ])?;
    /// assert_eq!(config.ping_interval, None);
    /// assert_eq!(config.shutdown_timeout, Duration::from_secs(30));
    /// # Ok::<(), switchboard::ConfigError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`from_env`](Self::from_env).
    pub fn from_vars<K, V>(vars: impl IntoIterator<Item = (K, V)>) -> Result<Self, ConfigError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let vars: Vec<(String, String)> = vars
            .into_iter()
            .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()))
            .collect();
        Self::default().apply_lookup(|name| {
            vars.iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    }

    /// `self`, with what the environment sets (the variables of [`from_env`](Self::from_env)):
    /// an app's own defaults first, then the deployment's. A rate-limit variable changes only
    /// its part of [`inbound_rate_limit`](Self::inbound_rate_limit) (`POLICY` alone keeps the
    /// app's rates).
    ///
    /// ```
    /// use switchboard::{InboundRateLimit, Rate, ServerConfig};
    ///
    /// let mut config = ServerConfig::default();
    /// config.inbound_rate_limit = Some(InboundRateLimit::messages(Rate::new(20.0, 40.0)));
    /// let config = config.apply_env()?;
    /// # drop(config);
    /// # Ok::<(), switchboard::ConfigError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`from_env`](Self::from_env).
    pub fn apply_env(self) -> Result<Self, ConfigError> {
        self.apply_lookup(|name| std::env::var(name).ok())
    }

    fn apply_lookup(self, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut config = self;
        let parse = |variable: &'static str, expected: &'static str, ok: Option<()>| {
            ok.ok_or_else(|| ConfigError {
                variable,
                value: lookup(variable).unwrap_or_default(),
                expected,
            })
        };
        let durations: [(&'static str, &mut Duration); 5] = [
            ("SWITCHBOARD_SHUTDOWN_TIMEOUT", &mut config.shutdown_timeout),
            ("SWITCHBOARD_CLOSE_TIMEOUT", &mut config.close_timeout),
            (
                "SWITCHBOARD_HEADER_READ_TIMEOUT",
                &mut config.header_read_timeout,
            ),
            (
                "SWITCHBOARD_HANDSHAKE_TIMEOUT",
                &mut config.handshake_timeout,
            ),
            ("SWITCHBOARD_PONG_TIMEOUT", &mut config.pong_timeout),
        ];
        for (variable, field) in durations {
            if let Some(value) = lookup(variable) {
                let found = seconds(&value);
                parse(variable, SECONDS, found.map(|_| ()))?;
                *field = found.unwrap_or(*field);
            }
        }
        let sizes: [(&'static str, &mut usize); 4] = [
            ("SWITCHBOARD_MAX_MESSAGE_SIZE", &mut config.max_message_size),
            ("SWITCHBOARD_MAX_FRAME_SIZE", &mut config.max_frame_size),
            ("SWITCHBOARD_READ_BUFFER_SIZE", &mut config.read_buffer_size),
            (
                "SWITCHBOARD_WRITE_BUFFER_SIZE",
                &mut config.write_buffer_size,
            ),
        ];
        for (variable, field) in sizes {
            if let Some(value) = lookup(variable) {
                let found: Option<usize> = value.trim().parse().ok().filter(|&n| n > 0);
                parse(variable, BYTES, found.map(|_| ()))?;
                *field = found.unwrap_or(*field);
            }
        }
        if let Some(value) = lookup("SWITCHBOARD_SLOW_CLIENT") {
            config.slow_client = if is_off(&value, "drop") {
                SlowClientPolicy::DropMessages
            } else {
                let after = seconds(&value);
                parse("SWITCHBOARD_SLOW_CLIENT", SLOW_CLIENT, after.map(|_| ()))?;
                SlowClientPolicy::Disconnect {
                    after: after.unwrap_or_default(),
                }
            };
        }
        if let Some(value) = lookup("SWITCHBOARD_PING_INTERVAL") {
            config.ping_interval = if is_off(&value, "off") {
                None
            } else {
                let every = seconds(&value).filter(|d| !d.is_zero());
                parse(
                    "SWITCHBOARD_PING_INTERVAL",
                    SECONDS_OR_OFF,
                    every.map(|_| ()),
                )?;
                every
            };
        }
        for (variable, field) in [
            ("SWITCHBOARD_MAX_CONNECTIONS", &mut config.max_connections),
            (
                "SWITCHBOARD_MAX_CONNECTIONS_PER_CLIENT",
                &mut config.max_connections_per_client,
            ),
        ] {
            if let Some(value) = lookup(variable) {
                *field = if is_off(&value, "none") {
                    None
                } else {
                    let count: Option<usize> = value.trim().parse().ok();
                    parse(variable, COUNT_OR_NONE, count.map(|_| ()))?;
                    count
                };
            }
        }
        if let Some(value) = lookup("SWITCHBOARD_HTTP2") {
            let on = is_off(&value, "on");
            parse(
                "SWITCHBOARD_HTTP2",
                ON_OFF,
                (on || is_off(&value, "off")).then_some(()),
            )?;
            config.http2 = match (on, config.http2) {
                (false, _) => None,
                (true, Some(http2)) => Some(http2),
                (true, None) => Some(crate::Http2Config::default()),
            };
        }
        if let Some(value) = lookup("SWITCHBOARD_MAX_WEBSOCKETS_PER_CONNECTION") {
            let count: Option<usize> = value.trim().parse().ok().filter(|n| *n > 0);
            parse(
                "SWITCHBOARD_MAX_WEBSOCKETS_PER_CONNECTION",
                COUNT,
                count.map(|_| ()),
            )?;
            if let (Some(http2), Some(count)) = (config.http2.as_mut(), count) {
                http2.max_websockets_per_connection = count;
            }
        }
        if let Some(value) = lookup("SWITCHBOARD_HTTP2_MAX_CONCURRENT_STREAMS") {
            let count: Option<u32> = value.trim().parse().ok().filter(|n| *n > 0);
            parse(
                "SWITCHBOARD_HTTP2_MAX_CONCURRENT_STREAMS",
                COUNT,
                count.map(|_| ()),
            )?;
            if let (Some(http2), Some(count)) = (config.http2.as_mut(), count) {
                http2.max_concurrent_streams = count;
            }
        }
        for variable in [
            "SWITCHBOARD_HTTP2_IDLE_TIMEOUT",
            "SWITCHBOARD_HTTP2_KEEP_ALIVE_INTERVAL",
        ] {
            if let Some(value) = lookup(variable) {
                let every = if is_off(&value, "off") {
                    None
                } else {
                    let every = seconds(&value).filter(|d| !d.is_zero());
                    parse(variable, SECONDS_OR_OFF, every.map(|_| ()))?;
                    every
                };
                if let Some(http2) = config.http2.as_mut() {
                    match variable {
                        "SWITCHBOARD_HTTP2_IDLE_TIMEOUT" => http2.idle_timeout = every,
                        _ => http2.keep_alive_interval = every,
                    }
                }
            }
        }
        if let Some(value) = lookup("SWITCHBOARD_ALLOWED_ORIGINS") {
            let patterns: Vec<&str> = value
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .collect();
            let valid = patterns
                .iter()
                .all(|p| !p.contains(char::is_whitespace) && *p != "null");
            parse("SWITCHBOARD_ALLOWED_ORIGINS", ORIGINS, valid.then_some(()))?;
            config.origin_check = OriginCheck::same_origin().allow(patterns);
        }
        if let Some(value) = lookup("SWITCHBOARD_TRUSTED_PROXIES") {
            let mut proxies = Vec::new();
            for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                let net = item.parse::<ipnet::IpNet>().ok().or_else(|| {
                    item.parse::<std::net::IpAddr>()
                        .ok()
                        .map(ipnet::IpNet::from)
                });
                parse("SWITCHBOARD_TRUSTED_PROXIES", PROXIES, net.map(|_| ()))?;
                proxies.extend(net);
            }
            config.trusted_proxies = proxies;
        }
        let rate = |variable: &'static str| -> Result<Option<Option<Rate>>, ConfigError> {
            let Some(value) = lookup(variable) else {
                return Ok(None);
            };
            if is_off(&value, "off") {
                return Ok(Some(None));
            }
            let parsed = value.split_once(',').and_then(|(per_second, burst)| {
                let per_second: f64 = per_second.trim().parse().ok()?;
                let burst: f64 = burst.trim().parse().ok()?;
                (per_second.is_finite() && per_second > 0.0 && burst.is_finite() && burst > 0.0)
                    .then(|| Rate::new(per_second, burst))
            });
            parse(variable, RATE, parsed.map(|_| ()))?;
            Ok(Some(parsed))
        };
        let messages = rate("SWITCHBOARD_RATE_LIMIT_MESSAGES")?;
        let bytes = rate("SWITCHBOARD_RATE_LIMIT_BYTES")?;
        let policy = match lookup("SWITCHBOARD_RATE_LIMIT_POLICY") {
            None => None,
            Some(value) if is_off(&value, "drop") => Some(RateLimitPolicy::Drop),
            Some(value) => {
                let after = value
                    .trim()
                    .strip_prefix("close:")
                    .and_then(|n| n.trim().parse::<u32>().ok())
                    .filter(|n| *n > 0);
                parse(
                    "SWITCHBOARD_RATE_LIMIT_POLICY",
                    RATE_POLICY,
                    after.map(|_| ()),
                )?;
                after.map(|after| RateLimitPolicy::Close { after })
            }
        };
        if messages.is_some() || bytes.is_some() || policy.is_some() {
            let mut limit = config.inbound_rate_limit.unwrap_or(InboundRateLimit {
                messages: None,
                bytes: None,
                policy: RateLimitPolicy::Drop,
            });
            if let Some(messages) = messages {
                limit.messages = messages;
            }
            if let Some(bytes) = bytes {
                limit.bytes = bytes;
            }
            if let Some(policy) = policy {
                limit.policy = policy;
            }
            config.inbound_rate_limit =
                (limit.messages.is_some() || limit.bytes.is_some()).then_some(limit);
        }
        if let Some(value) = lookup("SWITCHBOARD_ROOT_PATH") {
            let value = value.trim();
            parse(
                "SWITCHBOARD_ROOT_PATH",
                ROOT_PATH,
                (value.is_empty() || value.starts_with('/')).then_some(()),
            )?;
            config.root_path = value.to_owned();
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variable_sets_its_field() {
        let config = ServerConfig::from_vars([
            ("SWITCHBOARD_SHUTDOWN_TIMEOUT", "30"),
            ("SWITCHBOARD_CLOSE_TIMEOUT", "2.5"),
            ("SWITCHBOARD_HEADER_READ_TIMEOUT", "7"),
            ("SWITCHBOARD_HANDSHAKE_TIMEOUT", "3"),
            ("SWITCHBOARD_PONG_TIMEOUT", "9"),
            ("SWITCHBOARD_MAX_MESSAGE_SIZE", "65536"),
            ("SWITCHBOARD_MAX_FRAME_SIZE", "16384"),
            ("SWITCHBOARD_READ_BUFFER_SIZE", "4096"),
            ("SWITCHBOARD_WRITE_BUFFER_SIZE", "8192"),
            ("SWITCHBOARD_SLOW_CLIENT", "drop"),
            ("SWITCHBOARD_PING_INTERVAL", "OFF"),
            ("SWITCHBOARD_MAX_CONNECTIONS", "10000"),
            ("SWITCHBOARD_MAX_CONNECTIONS_PER_CLIENT", "50"),
            (
                "SWITCHBOARD_ALLOWED_ORIGINS",
                "https://example.com, *.example.org",
            ),
            ("SWITCHBOARD_RATE_LIMIT_MESSAGES", "20, 40"),
            ("SWITCHBOARD_RATE_LIMIT_BYTES", "65536,262144"),
            ("SWITCHBOARD_RATE_LIMIT_POLICY", "close:100"),
            ("SWITCHBOARD_TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8,::1"),
            ("SWITCHBOARD_ROOT_PATH", "/chat"),
            ("SWITCHBOARD_MAX_WEBSOCKETS_PER_CONNECTION", "16"),
            ("SWITCHBOARD_HTTP2_MAX_CONCURRENT_STREAMS", "64"),
            ("SWITCHBOARD_HTTP2_IDLE_TIMEOUT", "90"),
            ("SWITCHBOARD_HTTP2_KEEP_ALIVE_INTERVAL", "off"),
            ("UNRELATED", "x"),
        ])
        .unwrap();
        assert_eq!(config.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(config.close_timeout, Duration::from_millis(2500));
        assert_eq!(config.header_read_timeout, Duration::from_secs(7));
        assert_eq!(config.handshake_timeout, Duration::from_secs(3));
        assert_eq!(config.pong_timeout, Duration::from_secs(9));
        assert_eq!(config.max_message_size, 65536);
        assert_eq!(config.max_frame_size, 16384);
        assert_eq!(config.read_buffer_size, 4096);
        assert_eq!(config.write_buffer_size, 8192);
        assert_eq!(config.slow_client, SlowClientPolicy::DropMessages);
        assert_eq!(config.ping_interval, None);
        assert_eq!(config.max_connections, Some(10000));
        assert_eq!(config.max_connections_per_client, Some(50));
        assert_eq!(
            config.inbound_rate_limit,
            Some(
                InboundRateLimit::messages(Rate::new(20.0, 40.0))
                    .bytes(Rate::new(65536.0, 262144.0))
                    .policy(RateLimitPolicy::Close { after: 100 })
            )
        );
        assert_eq!(
            config.origin_check,
            OriginCheck::same_origin().allow(["https://example.com", "*.example.org"])
        );
        let proxies: Vec<String> = config
            .trusted_proxies
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(proxies, ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]);
        assert_eq!(config.root_path, "/chat");
        let http2 = config.http2.unwrap();
        assert_eq!(http2.max_websockets_per_connection, 16);
        assert_eq!(http2.max_concurrent_streams, 64);
        assert_eq!(http2.idle_timeout, Some(Duration::from_secs(90)));
        assert_eq!(http2.keep_alive_interval, None);

        let config = ServerConfig::from_vars([
            ("SWITCHBOARD_SLOW_CLIENT", "5"),
            ("SWITCHBOARD_PING_INTERVAL", "1"),
            ("SWITCHBOARD_MAX_CONNECTIONS", "none"),
            ("SWITCHBOARD_ALLOWED_ORIGINS", "*"),
            ("SWITCHBOARD_HTTP2", "off"),
        ])
        .unwrap();
        assert_eq!(config.http2, None);
        assert_eq!(
            config.slow_client,
            SlowClientPolicy::Disconnect {
                after: Duration::from_secs(5)
            }
        );
        assert_eq!(config.ping_interval, Some(Duration::from_secs(1)));
        assert_eq!(config.max_connections, None);
        assert!(config.origin_check.allows_any_origin());
        assert_eq!(
            ServerConfig::from_vars(Vec::<(String, String)>::new())
                .unwrap()
                .shutdown_timeout,
            ServerConfig::default().shutdown_timeout
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (variable, value) in [
            ("SWITCHBOARD_SHUTDOWN_TIMEOUT", "soon"),
            ("SWITCHBOARD_CLOSE_TIMEOUT", "-1"),
            ("SWITCHBOARD_MAX_MESSAGE_SIZE", "1MB"),
            ("SWITCHBOARD_READ_BUFFER_SIZE", "0"),
            ("SWITCHBOARD_SLOW_CLIENT", "never"),
            ("SWITCHBOARD_PING_INTERVAL", "0"),
            ("SWITCHBOARD_MAX_CONNECTIONS", "lots"),
            ("SWITCHBOARD_MAX_CONNECTIONS_PER_CLIENT", "-1"),
            ("SWITCHBOARD_ALLOWED_ORIGINS", "null"),
            ("SWITCHBOARD_RATE_LIMIT_MESSAGES", "20"),
            ("SWITCHBOARD_RATE_LIMIT_BYTES", "0,10"),
            ("SWITCHBOARD_RATE_LIMIT_POLICY", "close:0"),
            ("SWITCHBOARD_TRUSTED_PROXIES", "localhost"),
            ("SWITCHBOARD_ROOT_PATH", "chat"),
            ("SWITCHBOARD_HTTP2", "yes"),
            ("SWITCHBOARD_MAX_WEBSOCKETS_PER_CONNECTION", "0"),
            ("SWITCHBOARD_HTTP2_MAX_CONCURRENT_STREAMS", "-5"),
            ("SWITCHBOARD_HTTP2_IDLE_TIMEOUT", "0"),
            ("SWITCHBOARD_HTTP2_KEEP_ALIVE_INTERVAL", "soon"),
        ] {
            let error = ServerConfig::from_vars([(variable, value)]).unwrap_err();
            assert_eq!((error.variable, error.value.as_str()), (variable, value));
            assert!(error.to_string().starts_with(variable), "{error}");
        }
    }

    #[test]
    fn the_environment_applies_over_an_app_s_own_defaults() {
        let app = ServerConfig {
            inbound_rate_limit: Some(InboundRateLimit::messages(Rate::new(20.0, 40.0))),
            ..ServerConfig::default()
        };
        let lookup = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let policy_only = app
            .clone()
            .apply_lookup(lookup(&[("SWITCHBOARD_RATE_LIMIT_POLICY", "drop")]))
            .unwrap();
        assert_eq!(
            policy_only.inbound_rate_limit,
            Some(InboundRateLimit::messages(Rate::new(20.0, 40.0)))
        );
        let off = app
            .clone()
            .apply_lookup(lookup(&[("SWITCHBOARD_RATE_LIMIT_MESSAGES", "off")]))
            .unwrap();
        assert_eq!(off.inbound_rate_limit, None);
        let untouched = app.apply_lookup(lookup(&[])).unwrap();
        assert!(untouched.inbound_rate_limit.is_some());
    }
}
