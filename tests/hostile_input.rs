//! Hostile and broken clients over real sockets, with frames built by hand: each gets the close
//! code RFC 6455 asks for, and the server — and every other connection — carries on.

mod common;

use common::{raw_websocket, read_server_frame, recv_text, text, within, Echo, TestServer};
use switchboard::routing::{ProtocolTypeRouter, UrlRouter};
use switchboard::websocket::close_code;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn server() -> TestServer {
    TestServer::start(
        ProtocolTypeRouter::new().websocket(UrlRouter::new().route("/ws/", Echo::default)),
    )
    .await
}

async fn raw(server: &TestServer) -> TcpStream {
    raw_websocket(server, "/ws/").await
}

/// A client frame: FIN set, `opcode`, masked with a fixed key unless `masked` is false. `len`
/// overrides the length written in the header.
fn frame(opcode: u8, payload: &[u8], masked: bool, len: Option<u64>) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    let mask_bit = if masked { 0x80 } else { 0 };
    let len = len.unwrap_or(payload.len() as u64);
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if len <= u16::MAX as u64 {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
    let key = [0x11, 0x22, 0x33, 0x44];
    if masked {
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// Reads server frames until a close frame and returns its code (1005 if it has none), or `None`
/// if the connection ends first.
async fn close_code_of(stream: &mut TcpStream) -> Option<u16> {
    loop {
        let (_, opcode, payload) = read_server_frame(stream).await?;
        if opcode == 0x8 {
            return Some(if payload.len() >= 2 {
                u16::from_be_bytes([payload[0], payload[1]])
            } else {
                1005
            });
        }
    }
}

/// Every case ends with the server still serving a well-behaved client.
async fn bystander_still_echoes(server: &TestServer) {
    let mut client = server.connect("/ws/").await;
    text(&mut client, "fine").await;
    assert_eq!(recv_text(&mut client).await, "fine");
}

/// Sends `bytes` on a fresh WebSocket, expects the server to close it with `code`, and checks that
/// the server still serves others.
async fn expect_close(bytes: Vec<u8>, code: u16) {
    let server = server().await;
    let mut stream = raw(&server).await;
    stream.write_all(&bytes).await.unwrap();
    assert_eq!(close_code_of(&mut stream).await, Some(code));
    bystander_still_echoes(&server).await;
}

#[tokio::test]
async fn invalid_utf8_in_a_text_frame_is_1007() {
    expect_close(
        frame(0x1, &[0x66, 0xff, 0xfe], true, None),
        close_code::INVALID_PAYLOAD,
    )
    .await;
}

#[tokio::test]
async fn an_oversized_frame_is_1009_before_its_payload_is_read() {
    // A header announcing 2 GiB (the limit is 1 MiB), and no payload at all.
    expect_close(
        frame(0x2, &[], true, Some(2 << 30)),
        close_code::MESSAGE_TOO_BIG,
    )
    .await;
}

#[tokio::test]
async fn an_unmasked_client_frame_is_1002() {
    expect_close(
        frame(0x1, b"no mask", false, None),
        close_code::PROTOCOL_ERROR,
    )
    .await;
}

#[tokio::test]
async fn a_close_frame_with_a_reserved_code_is_1002() {
    expect_close(
        frame(0x8, &1005u16.to_be_bytes(), true, None),
        close_code::PROTOCOL_ERROR,
    )
    .await;
}

#[tokio::test]
async fn a_flood_of_pings_is_answered_and_the_connection_carries_on() {
    let server = server().await;
    let mut stream = raw(&server).await;
    let (mut reader, mut writer) = stream.split();
    let pings: Vec<u8> = (0..10_000)
        .flat_map(|_| frame(0x9, b"p", true, None))
        .collect();
    let flood = async {
        writer.write_all(&pings).await.unwrap();
        writer
            .write_all(&frame(0x1, b"after the flood", true, None))
            .await
            .unwrap();
    };
    let answers = async {
        // 10,000 pongs (3 bytes each), then the echo.
        let mut pongs = 0;
        loop {
            let mut header = [0u8; 2];
            reader.read_exact(&mut header).await.unwrap();
            let mut payload = vec![0u8; usize::from(header[1] & 0x7f)];
            reader.read_exact(&mut payload).await.unwrap();
            match header[0] & 0x0f {
                0xA => pongs += 1,
                0x1 => return (pongs, String::from_utf8(payload).unwrap()),
                other => panic!("unexpected opcode {other}"),
            }
        }
    };
    let ((), (pongs, echo)) = within(async { tokio::join!(flood, answers) }).await;
    assert_eq!(echo, "after the flood");
    assert!(pongs > 0 && pongs <= 10_000, "{pongs} pongs");
    bystander_still_echoes(&server).await;
}

#[tokio::test]
async fn a_reset_in_the_middle_of_a_frame_ends_only_that_connection() {
    let server = server().await;
    let stream = raw(&server).await;
    let half = frame(0x1, &[b'x'; 1000], true, None);
    stream.set_zero_linger().unwrap(); // close with RST
    let mut stream = stream;
    stream.write_all(&half[..500]).await.unwrap();
    drop(stream);
    bystander_still_echoes(&server).await;
}

#[tokio::test]
async fn malformed_http_gets_400_and_the_server_carries_on() {
    let server = server().await;
    for garbage in [
        "NOT HTTP AT ALL\r\n\r\n",
        "GET / HTTP/1.1\r\nHost x\r\n\r\n",
        "\x00\x01\x02\r\n\r\n",
    ] {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(garbage.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        let _ = within(stream.read_to_end(&mut response)).await;
        let response = String::from_utf8_lossy(&response);
        assert!(
            response.is_empty() || response.starts_with("HTTP/1.1 400"),
            "{garbage:?}: {response}"
        );
    }
    bystander_still_echoes(&server).await;
}
