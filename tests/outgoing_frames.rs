//! What the server puts on the wire, read frame by frame over a real socket: a message longer
//! than 1 KiB goes out as fragments of 1 KiB (tungstenite keeps its frame buffer's largest size
//! for good), also past a small `ServerConfig::write_buffer_size`, and a real client gets it
//! back whole.

mod common;

use common::{raw_websocket, read_server_frame, recv, TestServer};
use futures_util::SinkExt;
use switchboard::consumer::{Context, WebSocketConsumer};
use switchboard::layer::InMemoryChannelLayer;
use switchboard::routing::{ProtocolTypeRouter, UrlRouter};
use switchboard::websocket::Message;
use switchboard::ServerConfig;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite;

const WRITE_BUFFER: usize = 4096;

#[derive(Default)]
struct Echo;

#[switchboard::async_trait]
impl WebSocketConsumer for Echo {
    async fn receive(&mut self, ctx: &mut Context, message: Message) -> switchboard::Result<()> {
        match message {
            Message::Text(t) => {
                // One fed (buffered) copy and one sent: both paths fragment.
                ctx.feed_text(t.clone()).await?;
                ctx.send_text(t).await?;
            }
            Message::Binary(b) => ctx.send_binary(b).await?,
        }
        Ok(())
    }
}

async fn server() -> TestServer {
    let mut config = ServerConfig::default();
    config.write_buffer_size = WRITE_BUFFER;
    TestServer::start_with(
        ProtocolTypeRouter::new().websocket(UrlRouter::new().route("/ws/", Echo::default)),
        InMemoryChannelLayer::new(),
        config,
    )
    .await
}

/// A masked client frame with FIN set.
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    if payload.len() < 126 {
        out.push(0x80 | payload.len() as u8);
    } else {
        out.push(0x80 | 126);
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    let key = [0x5a, 0x01, 0xc3, 0x7e];
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// One server frame: (FIN, opcode, payload).
async fn server_frame(stream: &mut TcpStream) -> (bool, u8, Vec<u8>) {
    read_server_frame(stream)
        .await
        .expect("a frame before the end")
}

/// Reads one message's frames: its opcode, the size of each frame's payload, the whole payload.
async fn server_message(stream: &mut TcpStream) -> (u8, Vec<usize>, Vec<u8>) {
    let (mut fin, opcode, mut whole) = server_frame(stream).await;
    assert_ne!(opcode, 0, "a message starts with a text or binary frame");
    let mut sizes = vec![whole.len()];
    while !fin {
        let (last, continuation, payload) = server_frame(stream).await;
        assert_eq!(
            continuation, 0,
            "fragments after the first are continuations"
        );
        sizes.push(payload.len());
        whole.extend_from_slice(&payload);
        fin = last;
    }
    (opcode, sizes, whole)
}

/// 20,000 bytes of two-byte characters: 1,024-byte cuts fall inside some of them.
fn long_text() -> String {
    "é".repeat(10_000)
}

#[tokio::test]
async fn a_long_message_goes_out_in_fragments_of_1_kib() {
    let server = server().await;
    let mut stream = raw_websocket(&server, "/ws/").await;
    let text = long_text();
    stream
        .write_all(&client_frame(0x1, text.as_bytes()))
        .await
        .unwrap();
    for _ in 0..2 {
        let (opcode, sizes, whole) = server_message(&mut stream).await;
        assert_eq!(opcode, 0x1);
        let mut expected = vec![1024; 19];
        expected.push(544);
        assert_eq!(sizes, expected);
        assert_eq!(whole, text.as_bytes());
    }
    let bytes: Vec<u8> = (0..9000u32).map(|n| n as u8).collect();
    stream.write_all(&client_frame(0x2, &bytes)).await.unwrap();
    let (opcode, sizes, whole) = server_message(&mut stream).await;
    assert_eq!(opcode, 0x2);
    let mut expected = vec![1024; 8];
    expected.push(808);
    assert_eq!(sizes, expected);
    assert_eq!(whole, bytes);
    // A message that fits goes in one frame.
    stream
        .write_all(&client_frame(0x1, &[b'x'; 1024]))
        .await
        .unwrap();
    for _ in 0..2 {
        let (opcode, sizes, _) = server_message(&mut stream).await;
        assert_eq!((opcode, sizes), (0x1, vec![1024]));
    }
}

#[tokio::test]
async fn a_real_client_gets_long_messages_whole_between_short_ones() {
    let server = server().await;
    let mut client = server.connect("/ws/").await;
    let text = long_text();
    for line in ["before", &text, "after"] {
        client
            .send(tungstenite::Message::text(line.to_owned()))
            .await
            .unwrap();
    }
    for line in ["before", &text, "after"] {
        for _ in 0..2 {
            match recv(&mut client).await {
                tungstenite::Message::Text(got) => assert_eq!(got.as_str(), line),
                other => panic!("expected text, got {other:?}"),
            }
        }
    }
}
