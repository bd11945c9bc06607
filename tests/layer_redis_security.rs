//! The Redis layer against a real `redis-server` that asks for credentials: a password
//! (`requirepass`), an ACL user limited to the layer's key prefix and pub/sub channels (the rules
//! SECURITY.md tells deployers to grant), and TLS with a CA and certificates made here (rcgen),
//! also with client certificates. Each runs the public conformance suite through it; wrong
//! credentials are typed errors at start-up, within the command timeout.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::redis_server::RedisServer;
use switchboard::layer::{BackendError, LayerError, LayerHandle, RedisChannelLayer, RedisConfig};
use switchboard::testing::conformance::{self, Case, LayerFactory};

/// The ACL rule SECURITY.md gives for a layer with prefix `sbacl` (keys and channels under it;
/// every command but the dangerous ones).
const ACL_USER: &[&str] = &[
    "--user",
    "layer",
    "on",
    ">layer-pw",
    "resetkeys",
    "~sbacl:*",
    "resetchannels",
    "&sbacl:*",
    "-@all",
    "+@read",
    "+@write",
    "+@pubsub",
    "+@scripting",
    "+@connection",
    "+@transaction",
    "-@dangerous",
    "+ping",
];

/// Each "process" of a case: a layer of its own with this configuration.
struct Configured(RedisConfig);

#[switchboard::async_trait]
impl LayerFactory for Configured {
    async fn process(&self) -> LayerHandle {
        LayerHandle::new(
            RedisChannelLayer::connect(self.0.clone())
                .await
                .expect("connects with the test's credentials"),
        )
    }

    fn separate_processes(&self) -> bool {
        true
    }
}

/// `base` as the conformance suite wants it: capacity 5, streams for `stream.*`.
fn for_the_suite(base: RedisConfig, prefix: &str) -> RedisConfig {
    base.prefix(prefix)
        .capacity(5)
        .group_history("stream.*", 5, Duration::from_secs(300))
}

async fn every_case(config: RedisConfig) {
    let factory = Configured(config);
    for case in Case::ALL {
        conformance::run(*case, &factory).await;
    }
}

/// `connect` fails at start-up, typed, and within the command timeout (not a hang).
async fn refused(config: RedisConfig) -> LayerError {
    let timeout = Duration::from_secs(2);
    let started = Instant::now();
    let Err(error) = RedisChannelLayer::connect(config.command_timeout(timeout)).await else {
        panic!("connected with wrong credentials")
    };
    assert!(
        started.elapsed() < timeout + Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        matches!(error, LayerError::Unavailable(BackendError::Refused(_))),
        "{error:?}"
    );
    error
}

#[tokio::test]
async fn a_password_protected_server() {
    let server = RedisServer::start_with(&["--requirepass", "s3cret"]).await;
    let url = |userinfo: &str| format!("redis://{userinfo}127.0.0.1:{}", server.port());
    every_case(for_the_suite(RedisConfig::new(url(":s3cret@")), "sbpw")).await;

    let error = refused(RedisConfig::new(url(":wrong@"))).await;
    let shown = error.to_string();
    assert!(
        !shown.contains("wrong"),
        "the password is not shown: {shown}"
    );
    refused(RedisConfig::new(url(""))).await;
}

#[tokio::test]
async fn an_acl_user_limited_to_the_layer_s_prefix() {
    let server = RedisServer::start_with(ACL_USER).await;
    let url = |userinfo: &str| format!("redis://{userinfo}127.0.0.1:{}", server.port());
    every_case(for_the_suite(
        RedisConfig::new(url("layer:layer-pw@")),
        "sbacl",
    ))
    .await;

    // The rule holds: outside the prefix the user can do nothing.
    let client = redis::Client::open(url("layer:layer-pw@")).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let denied: redis::RedisResult<Option<String>> = redis::cmd("GET")
        .arg("otherapp:secret")
        .query_async(&mut connection)
        .await;
    assert_eq!(denied.unwrap_err().code(), Some("NOPERM"));
    let denied: redis::RedisResult<i64> = redis::cmd("PUBLISH")
        .arg("otherapp:channel")
        .arg("x")
        .query_async(&mut connection)
        .await;
    assert_eq!(denied.unwrap_err().code(), Some("NOPERM"));

    // A layer configured with another prefix is refused at start-up, typed.
    refused(RedisConfig::new(url("layer:layer-pw@")).prefix("otherapp")).await;
    refused(RedisConfig::new(url("layer:wrong@")).prefix("sbacl")).await;
    refused(RedisConfig::new(url("nobody:layer-pw@")).prefix("sbacl")).await;
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate it signed, as PEM files
/// in a directory of their own.
struct Pki {
    dir: PathBuf,
    ca: String,
    client_cert: String,
    client_key: String,
}

impl Pki {
    fn make() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "switchboard test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap()
            .signed_by(&server_key, &issuer)
            .unwrap();
        let client_key = KeyPair::generate().unwrap();
        let client = CertificateParams::new(vec!["layer.client".to_owned()])
            .unwrap()
            .signed_by(&client_key, &issuer)
            .unwrap();
        let dir = std::env::temp_dir().join(format!(
            "switchboard-redis-tls-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.join("server.pem"), server.pem()).unwrap();
        std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();
        Self {
            dir,
            ca: ca.pem(),
            client_cert: client.pem(),
            client_key: client_key.serialize_pem(),
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }

    /// A TLS-only server (no plain port), asking clients for certificates if `clients`.
    async fn server(&self, clients: bool) -> RedisServer {
        let (cert, key, ca) = (
            self.path("server.pem"),
            self.path("server.key"),
            self.path("ca.pem"),
        );
        RedisServer::start_with(&[
            "--port",
            "0",
            "--tls-port",
            "{port}",
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
            "--tls-auth-clients",
            if clients { "yes" } else { "no" },
        ])
        .await
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn tls_with_the_deployer_s_ca() {
    let pki = Pki::make();
    let server = pki.server(false).await;
    let url = format!("rediss://127.0.0.1:{}", server.port());
    every_case(for_the_suite(
        RedisConfig::new(url.clone()).tls_root_certificates(pki.ca.clone()),
        "sbtls",
    ))
    .await;
    // Verified: without the CA (the system's roots) the server's certificate is refused.
    let Err(error) = RedisChannelLayer::connect(
        RedisConfig::new(url.clone()).command_timeout(Duration::from_secs(2)),
    )
    .await
    else {
        panic!("an unknown CA was trusted")
    };
    assert!(matches!(error, LayerError::Unavailable(_)), "{error:?}");
    // A plain-text client gets nowhere either.
    let plain = format!("redis://127.0.0.1:{}", server.port());
    assert!(RedisChannelLayer::connect(
        RedisConfig::new(plain).command_timeout(Duration::from_secs(2))
    )
    .await
    .is_err());
}

#[tokio::test]
async fn tls_with_client_certificates() {
    let pki = Pki::make();
    let server = pki.server(true).await;
    let url = format!("rediss://127.0.0.1:{}", server.port());
    let trusted = RedisConfig::new(url).tls_root_certificates(pki.ca.clone());
    let factory = Configured(for_the_suite(
        trusted
            .clone()
            .tls_client_certificate(pki.client_cert.clone(), pki.client_key.clone()),
        "sbmtls",
    ));
    for case in [
        Case::PointToPointBetweenProcesses,
        Case::GroupsReachMembersOfEveryProcess,
        Case::AStreamGivesBackWhatWasMissed,
    ] {
        conformance::run(case, &factory).await;
    }
    assert!(
        RedisChannelLayer::connect(trusted.command_timeout(Duration::from_secs(2)))
            .await
            .is_err()
    );
}
