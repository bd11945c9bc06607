//! An echo server: every text and binary message comes back as it was, on any path. For the
//! Autobahn conformance suite (`scripts/autobahn.sh`) and as the smallest consumer there is.
//!
//! ```text
//! cargo run --release --example echo -- --addr 127.0.0.1:9001
//! ```

use std::net::SocketAddr;

use clap::Parser;
use switchboard::consumer::{Context, WebSocketConsumer};
use switchboard::routing::{ProtocolTypeRouter, UrlRouter};
use switchboard::websocket::Message;
use switchboard::ServerConfig;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:9001")]
    addr: SocketAddr,
}

#[derive(Default)]
struct Echo;

#[switchboard::async_trait]
impl WebSocketConsumer for Echo {
    async fn receive(&mut self, ctx: &mut Context, message: Message) -> switchboard::Result<()> {
        match message {
            Message::Text(text) => ctx.send_text(text).await?,
            Message::Binary(bytes) => ctx.send_binary(bytes).await?,
        }
        Ok(())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        // No colour codes where stderr is a file or a pipe (logs collected by systemd, CI).
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let app = ProtocolTypeRouter::new().websocket(
        UrlRouter::new()
            .route("/", Echo::default)
            .route("/{*path}", Echo::default),
    );
    // The suite sends messages up to 16 MiB.
    let mut config = ServerConfig::default();
    config.max_message_size = 64 << 20;
    config.max_frame_size = 16 << 20;
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    println!("echo: listening on ws://{}/", listener.local_addr()?);
    switchboard::serve(listener, app)
        .config(config)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}
