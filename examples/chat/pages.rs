//! The chat's HTTP side: an ordinary axum router for its pages, announcements and metrics.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Html;
use axum::routing::{get, post};
use axum::Extension;
use serde::Deserialize;
use switchboard::layer::LayerHandle;
use switchboard::routing::ProtocolTypeRouter;
use switchboard::StatsHandle;

use super::consumer::{valid_room, websocket_app, ChatMessage, MAX_MESSAGE_CHARS};
use super::history::{History, StoredMessage};

#[derive(Clone)]
struct AppState {
    history: History,
}

/// `GET /metrics`: the server's counts for Prometheus (the server puts its `StatsHandle` in every
/// request's extensions).
async fn metrics(Extension(stats): Extension<StatsHandle>) -> axum::response::Response {
    use axum::response::IntoResponse;
    switchboard::metrics::response(&stats).into_response()
}

#[derive(Deserialize)]
struct Announcement {
    message: String,
}

/// `POST /rooms/{room}/announce {"message": "..."}`: stored, and sent to everyone in the room.
async fn announce(
    State(state): State<AppState>,
    Extension(layer): Extension<LayerHandle>,
    Path(room): Path<String>,
    axum::Json(body): axum::Json<Announcement>,
) -> Result<(StatusCode, axum::Json<StoredMessage>), (StatusCode, String)> {
    let message = body.message.trim();
    if !valid_room(&room) || message.is_empty() || message.chars().count() > MAX_MESSAGE_CHARS {
        return Err((
            StatusCode::BAD_REQUEST,
            "a valid room and a message of 1 to 2000 characters\n".into(),
        ));
    }
    let stored = state
        .history
        .add(&room, "announcement", message)
        .await
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")))?;
    let event = ChatMessage {
        stored: stored.clone(),
    };
    layer
        .group_send(&format!("chat_{room}"), &event)
        .await
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")))?;
    Ok((StatusCode::ACCEPTED, axum::Json(stored)))
}

/// The HTTP side: an ordinary axum router.
fn pages(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/", get(|| async { Html(include_str!("index.html")) }))
        .route(
            "/chat/{room}/",
            get(|| async { Html(include_str!("room.html")) }),
        )
        .route("/rooms/{room}/announce", post(announce))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// The whole application: axum for pages and announcements, the chat consumer for
/// `/ws/chat/{room}/`. Handlers find the server's layer and counts in their requests.
pub(crate) fn application(history: History) -> ProtocolTypeRouter {
    ProtocolTypeRouter::new()
        .http(pages(AppState {
            history: history.clone(),
        }))
        .websocket(websocket_app(history))
}
