//! The chat's consumer: rooms, presence, history on joining, and private messages.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use switchboard::application::WebSocketApplication;
use switchboard::consumer::{Context, InvalidMessagePolicy, JsonWebSocketConsumer};
use switchboard::layer::{user_group, Recovery, StreamPosition};
use switchboard::middleware::{
    AuthMiddleware, Authenticator, CookieMiddleware, Cookies, TokenSource,
};
use switchboard::routing::UrlRouter;

use super::history::{History, NameClaim, StoredMessage};
use super::HISTORY_ON_JOIN;

/// Longest message accepted, in characters.
pub(crate) const MAX_MESSAGE_CHARS: usize = 2000;
/// Longest user name kept, in characters.
const MAX_USER_CHARS: usize = 32;
/// Longest room name accepted (the group name adds a 5-character prefix; groups stay under 100).
const MAX_ROOM_CHARS: usize = 64;

/// Who a connection is, set by the auth middleware: the name it asked for (`?name=` or the
/// `name` cookie), if its key (the `key` cookie, or `?key=`) holds that name — the first key to
/// use a name holds it for good. A name it cannot hold (`claim` not `Held`): the connection is
/// told why and closed with [`NAME_TAKEN`].
#[derive(Clone, Debug)]
pub(crate) struct ChatUser {
    name: String,
    claim: NameClaim,
}

/// Close code of a connection whose name another page holds.
pub(crate) const NAME_TAKEN: u16 = 4009;

/// Names held by keys: the chat's sign-in (a page makes a random key once and keeps it).
struct NameKeys {
    history: History,
}

#[switchboard::async_trait]
impl Authenticator for NameKeys {
    type User = ChatUser;

    async fn authenticate(
        &self,
        key: &str,
        scope: &switchboard::scope::Scope,
    ) -> switchboard::Result<Option<ChatUser>> {
        let asked = scope.query_param("name").or_else(|| {
            scope
                .extensions
                .get::<Cookies>()
                .and_then(|c| c.get("name").map(str::to_owned))
        });
        let Some(name) = asked.as_deref().and_then(clean_name) else {
            return Ok(None);
        };
        if key.len() < MIN_KEY_CHARS {
            return Ok(None);
        }
        let claim = self.history.claim_name(&name, key).await?;
        Ok(Some(ChatUser { name, claim }))
    }
}

/// Shortest key accepted: the page's are 32 hex digits (128 random bits).
const MIN_KEY_CHARS: usize = 16;

/// What the browser sends: a message for the room, or, with `to`, for one user only.
#[derive(Deserialize)]
pub(crate) struct ChatIn {
    message: String,
    #[serde(default)]
    to: Option<String>,
}

/// A private message, to every connection of `to` and of the sender, in any room or process:
/// `{"type": "message", "message": .., "user": .., "time": .., "private": true, "to": ..}`. Not
/// kept in the room's history.
#[derive(Serialize)]
#[serde(tag = "type", rename = "message")]
struct PrivateMessage<'a> {
    message: &'a str,
    user: &'a str,
    time: u64,
    private: bool,
    to: &'a str,
}

/// What a user is listed in a room's presence with.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub(crate) struct Listed {
    name: String,
}

/// What travels through the channel layer to every member of the room, and, unchanged, to their
/// browsers: `{"type": "message", "id": .., "message": .., "user": .., "time": ..}`.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename = "message")]
pub(crate) struct ChatMessage {
    #[serde(flatten)]
    pub(crate) stored: StoredMessage,
}

/// How the page was caught up on joining: `{"type": "recovery", "asked": true, "recovered":
/// true, "missed": 10, "position": "<epoch>:<offset>"}`. `asked`: the page gave `?since=`;
/// `recovered`: what it missed came exactly (`missed` messages), otherwise the recent history
/// came instead; `position`: where the room's stream is (absent while it has none), for the
/// page to send back if no message comes before it reconnects.
#[derive(Serialize)]
struct RecoveryOut {
    #[serde(rename = "type")]
    kind: &'static str,
    asked: bool,
    recovered: bool,
    missed: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<String>,
}

/// One entry of the online list sent on joining.
#[derive(Serialize)]
struct Online {
    channel: String,
    name: String,
}

pub(crate) struct ChatConsumer {
    history: History,
    room: String,
    group: String,
}

impl ChatConsumer {
    pub(crate) fn new(history: History) -> Self {
        Self {
            history,
            room: String::new(),
            group: String::new(),
        }
    }
}

pub(crate) fn valid_room(room: &str) -> bool {
    !room.is_empty()
        && room.len() <= MAX_ROOM_CHARS
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn clean_name(name: &str) -> Option<String> {
    let name: String = name
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_USER_CHARS)
        .collect();
    (!name.is_empty()).then_some(name)
}

fn user_of(ctx: &Context) -> String {
    ctx.scope()
        .extensions
        .get::<ChatUser>()
        .map_or("anonymous", |u| &u.name)
        .to_owned()
}

#[switchboard::async_trait]
impl JsonWebSocketConsumer for ChatConsumer {
    type Incoming = ChatIn;
    /// Every event this consumer gets is forwarded as it is (below); none is parsed.
    type Event = serde::de::IgnoredAny;
    const FORWARDED_EVENTS: &'static [&'static str] = &[
        "message",
        "presence.diff",
        "presence.join",
        "presence.leave",
    ];
    /// Room messages go out with their stream position, which the page sends back as `?since=`
    /// when it reconnects.
    const FORWARDS_POSITIONS: bool = true;
    /// Malformed input gets `{"error": ..}`, and the connection carries on.
    const INVALID_MESSAGE_POLICY: InvalidMessagePolicy = InvalidMessagePolicy::Reply;

    async fn connect(&mut self, ctx: &mut Context) -> switchboard::Result<()> {
        let room = ctx
            .scope()
            .url_route
            .get("room")
            .unwrap_or("lobby")
            .to_owned();
        if !valid_room(&room) {
            // Before accept, close refuses the handshake with HTTP 403.
            ctx.close(4000, "bad room name").await?;
            return Ok(());
        }
        self.group = format!("chat_{room}");
        self.room = room;
        if let Some(user) = ctx.scope().extensions.get::<ChatUser>() {
            if user.claim != NameClaim::Held {
                let error = if user.claim == NameClaim::Taken {
                    format!("the name {} is someone else's: pick another", user.name)
                } else {
                    "this server holds all the names it can: come back without one".to_owned()
                };
                ctx.accept().await?;
                ctx.send_json(&serde_json::json!({ "error": error }))
                    .await?;
                ctx.close(NAME_TAKEN, "name taken").await?;
                return Ok(());
            }
        }
        let name = user_of(ctx);
        if ctx.scope().extensions.get::<ChatUser>().is_some() {
            // Every tab of this user, on any process, is in the user's group: private messages.
            ctx.group_add(&user_group(&name)).await?;
        }
        ctx.presence_add(&self.group, &Listed { name }).await?; // joins the group too
        let online: Vec<Online> = ctx
            .presence_list(&self.group)
            .await?
            .into_iter()
            .filter_map(|p| {
                let listed: Listed = serde_json::from_value(p.meta).ok()?;
                Some(Online {
                    channel: p.channel,
                    name: listed.name,
                })
            })
            .collect();
        ctx.accept().await?;
        // A page that comes back says where it was (`?since=<epoch>:<offset>`, the position of
        // the last message it saw) and gets what it missed; a new page (or one whose messages
        // the room's stream no longer holds) gets the recent history. Either way, live
        // messages up to the position recovered at are not sent again.
        let since: Option<StreamPosition> = ctx
            .scope()
            .query_param("since")
            .and_then(|since| since.parse().ok());
        let asked = since.is_some();
        let since = since.unwrap_or(StreamPosition {
            epoch: String::new(),
            offset: 0,
        });
        // What was missed (or the history), the stream's position and the online list go out
        // together, in one write.
        let recovery = ctx.recover(&self.group, &since).await?;
        let position = recovery.position().map(ToString::to_string);
        let mut missed = 0;
        let recovered = if let Recovery::Recovered { events, .. } = recovery {
            for event in events.iter().filter(|e| e.event_type() == "message") {
                ctx.feed_text(event.to_text_with_position()).await?;
                missed += 1;
            }
            true
        } else {
            for frame in self
                .history
                .recent_frames(&self.room, HISTORY_ON_JOIN)
                .await?
            {
                ctx.feed_text(frame).await?;
            }
            false
        };
        ctx.feed_json(&RecoveryOut {
            kind: "recovery",
            asked,
            recovered,
            missed,
            position,
        })
        .await?;
        ctx.feed_json(&serde_json::json!({ "type": "presence", "online": online }))
            .await?;
        ctx.flush().await?;
        Ok(())
    }

    async fn receive_json(&mut self, ctx: &mut Context, msg: ChatIn) -> switchboard::Result<()> {
        let message = msg.message.trim();
        if message.is_empty() {
            return send_error(ctx, "empty message").await;
        }
        if message.chars().count() > MAX_MESSAGE_CHARS {
            return send_error(ctx, "message too long").await;
        }
        let user = user_of(ctx);
        if let Some(to) = msg.to.as_deref().map(str::trim).filter(|to| !to.is_empty()) {
            return private_message(ctx, &user, to, message).await;
        }
        let stored = self.history.add(&self.room, &user, message).await?;
        ctx.group_send(&self.group, &ChatMessage { stored }).await?;
        Ok(())
    }
}

/// Sends `message` from `user` to every connection of `to` and of `user` (all their tabs), or
/// answers with an error when `to` has none open.
async fn private_message(
    ctx: &mut Context,
    user: &str,
    to: &str,
    message: &str,
) -> switchboard::Result<()> {
    let event = PrivateMessage {
        message,
        user,
        time: now_ms(),
        private: true,
        to,
    };
    let signed_in = ctx.scope().extensions.get::<ChatUser>().is_some();
    let sent = ctx.group_send(&user_group(to), &event).await?;
    if !sent.reached_anyone() {
        return send_error(ctx, &format!("{to} is not online")).await;
    }
    if !signed_in {
        // Anonymous senders have no group of their own: this connection alone gets its copy.
        ctx.send_json(&event).await?;
    } else if to != user {
        ctx.group_send(&user_group(user), &event).await?;
    }
    Ok(())
}

async fn send_error(ctx: &mut Context, error: &str) -> switchboard::Result<()> {
    ctx.send_json(&serde_json::json!({ "error": error }))
        .await?;
    Ok(())
}

/// The chat's WebSocket side: cookies → user name (held by the page's key) →
/// `/ws/chat/{room}/`. (Origins are checked before this by the server:
/// `ServerConfig::origin_check`.)
pub(crate) fn websocket_app(history: History) -> impl WebSocketApplication {
    let names = NameKeys {
        history: history.clone(),
    };
    CookieMiddleware::new(
        AuthMiddleware::new(
            UrlRouter::new().nest(
                "/ws",
                UrlRouter::new().route("/chat/{room}/", move || ChatConsumer::new(history.clone())),
            ),
            names,
        )
        .token_sources([TokenSource::cookie("key"), TokenSource::query("key")]),
    )
}
