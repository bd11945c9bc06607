//! A live poll: everyone watching sees the bars move as votes come in. The tally lives in a
//! worker (`ChannelNameRouter`) that owns it alone — no lock, one vote at a time — and answers
//! each voter point to point.
//!
//! ```text
//! cargo run --release --example poll      # http://127.0.0.1:8000/ (poll 1)
//! cargo run --release --example poll -- --question "Lunch?" --option Pizza --option Salad
//! ```
//!
//! WebSocket `/ws/poll/{id}/` (poll `1` here; another id is refused with 404), with the `voter`
//! cookie the page's `GET /` sets (a random id: one vote per browser; without it, 401). On connecting a client
//! receives `{"question": "..", "options": [..]}` and then `{"counts": {"Rust": 3, ..}, "yours":
//! "Rust"}` (`yours`: `null` before voting). It sends `{"vote": "<option>"}`: counted once per
//! voter, a second vote moves it; the voter gets `{"voted": "<option>"}` back from the tally, and
//! everyone watching the poll `{"counts": {..}}`. An unknown option gets `{"error": ".."}`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use clap::Parser;
use serde::{Deserialize, Serialize};
use serde_json::json;
use switchboard::consumer::{ChannelContext, Context, InvalidMessagePolicy, JsonWebSocketConsumer};
use switchboard::middleware::{CookieMiddleware, Cookies};
use switchboard::routing::{ProtocolTypeRouter, UrlRouter};
use switchboard::worker::{ChannelConsumer, ChannelNameRouter};

/// The worker's channel.
const TALLY: &str = "poll-tally";

/// A poll's question and options.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Poll {
    pub(crate) question: String,
    pub(crate) options: Vec<String>,
}

/// The polls, by id.
pub(crate) type Polls = Arc<HashMap<String, Poll>>;

fn group(poll: &str) -> String {
    format!("poll_{poll}")
}

/// What the tally worker takes.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type")]
pub(crate) enum TallyJob {
    /// A viewer's first look: the counts and its own vote, to `reply_to`.
    #[serde(rename = "poll.look")]
    Look {
        poll: String,
        voter: String,
        reply_to: String,
    },
    /// A vote (or a moved one).
    #[serde(rename = "poll.vote")]
    Vote {
        poll: String,
        voter: String,
        option: String,
        reply_to: String,
    },
}

/// What viewers get from the tally.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type")]
pub(crate) enum PollEvent {
    /// The counts, for everyone watching.
    #[serde(rename = "poll.counts")]
    Counts { counts: HashMap<String, u64> },
    /// The counts and a viewer's own vote, for that viewer.
    #[serde(rename = "poll.seen")]
    Seen {
        counts: HashMap<String, u64>,
        yours: Option<String>,
    },
    #[serde(rename = "poll.voted")]
    Voted { option: String },
}

/// The worker: every poll's votes, one voter one option.
pub(crate) struct Tally {
    polls: Polls,
    votes: HashMap<String, HashMap<String, String>>, // poll -> voter -> option
}

impl Tally {
    pub(crate) fn new(polls: Polls) -> Self {
        Self {
            polls,
            votes: HashMap::new(),
        }
    }

    fn counts(&self, poll: &str) -> HashMap<String, u64> {
        let mut counts: HashMap<String, u64> = self.polls[poll]
            .options
            .iter()
            .map(|o| (o.clone(), 0))
            .collect();
        for option in self.votes.get(poll).into_iter().flat_map(HashMap::values) {
            *counts.entry(option.clone()).or_default() += 1;
        }
        counts
    }
}

#[switchboard::async_trait]
impl ChannelConsumer for Tally {
    type Event = TallyJob;

    async fn event(&mut self, ctx: &ChannelContext, job: TallyJob) -> switchboard::Result<()> {
        match job {
            TallyJob::Look {
                poll,
                voter,
                reply_to,
            } if self.polls.contains_key(&poll) => {
                let yours = self
                    .votes
                    .get(&poll)
                    .and_then(|votes| votes.get(&voter))
                    .cloned();
                let seen = PollEvent::Seen {
                    counts: self.counts(&poll),
                    yours,
                };
                ctx.send_to_channel(&reply_to, &seen).await?;
            }
            TallyJob::Vote {
                poll,
                voter,
                option,
                reply_to,
            } if self
                .polls
                .get(&poll)
                .is_some_and(|p| p.options.contains(&option)) =>
            {
                self.votes
                    .entry(poll.clone())
                    .or_default()
                    .insert(voter, option.clone());
                ctx.send_to_channel(&reply_to, &PollEvent::Voted { option })
                    .await?;
                let counts = PollEvent::Counts {
                    counts: self.counts(&poll),
                };
                ctx.group_send(&group(&poll), &counts).await?;
            }
            _ => {} // the consumers only send known polls and options
        }
        Ok(())
    }
}

/// What a viewer sends.
#[derive(Deserialize)]
pub(crate) struct Vote {
    vote: String,
}

/// One viewer of one poll.
pub(crate) struct PollConsumer {
    polls: Polls,
    poll: String,
    voter: String,
}

#[switchboard::async_trait]
impl JsonWebSocketConsumer for PollConsumer {
    type Incoming = Vote;
    type Event = PollEvent;
    // A bad message gets `{"error": ..}` and the connection carries on.
    const INVALID_MESSAGE_POLICY: InvalidMessagePolicy = InvalidMessagePolicy::Reply;

    async fn connect(&mut self, ctx: &mut Context) -> switchboard::Result<()> {
        let scope = ctx.scope();
        let poll = scope.url_route.get("id").unwrap_or_default().to_owned();
        let voter = scope
            .extensions
            .get::<Cookies>()
            .and_then(|c| c.get("voter"))
            .unwrap_or_default()
            .to_owned();
        let Some(question) = self.polls.get(&poll).cloned() else {
            ctx.reject(StatusCode::NOT_FOUND)?;
            return Ok(());
        };
        if voter.len() < 16 {
            ctx.reject(StatusCode::UNAUTHORIZED)?; // open the poll's page first: it sets one
            return Ok(());
        }
        (self.poll, self.voter) = (poll, voter);
        ctx.group_add(&group(&self.poll)).await?;
        ctx.accept().await?;
        ctx.send_json(&question).await?;
        let look = TallyJob::Look {
            poll: self.poll.clone(),
            voter: self.voter.clone(),
            reply_to: ctx.channel_name().to_owned(),
        };
        ctx.send_to_channel(TALLY, &look).await?;
        Ok(())
    }

    async fn receive_json(&mut self, ctx: &mut Context, vote: Vote) -> switchboard::Result<()> {
        if !self.polls[&self.poll].options.contains(&vote.vote) {
            ctx.send_json(&json!({ "error": "not one of this poll's options" }))
                .await?;
            return Ok(());
        }
        let job = TallyJob::Vote {
            poll: self.poll.clone(),
            voter: self.voter.clone(),
            option: vote.vote,
            reply_to: ctx.channel_name().to_owned(),
        };
        ctx.send_to_channel(TALLY, &job).await?;
        Ok(())
    }

    async fn event(&mut self, ctx: &mut Context, event: PollEvent) -> switchboard::Result<()> {
        match event {
            PollEvent::Seen { counts, yours } => {
                ctx.send_json(&json!({ "counts": counts, "yours": yours }))
                    .await?;
            }
            PollEvent::Counts { counts } => ctx.send_json(&json!({ "counts": counts })).await?,
            PollEvent::Voted { option } => ctx.send_json(&json!({ "voted": option })).await?,
        }
        Ok(())
    }
}

/// `GET /`: the page, and a `voter` cookie for a browser that has none.
async fn page(headers: HeaderMap) -> axum::response::Response {
    let html = axum::response::Html(include_str!("index.html"));
    let has_voter = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(';').any(|c| c.trim_start().starts_with("voter=")));
    if has_voter {
        return html.into_response();
    }
    let voter = format!("{:032x}", rand::random::<u128>());
    let cookie = format!("voter={voter}; Path=/; HttpOnly; SameSite=Lax; Max-Age=31536000");
    ([(header::SET_COOKIE, cookie)], html).into_response()
}

/// The page and the WebSocket; the tally worker is [`workers`].
pub(crate) fn application(polls: Polls) -> ProtocolTypeRouter {
    let http = axum::Router::new().route("/", axum::routing::get(page));
    let viewers = move || PollConsumer {
        polls: polls.clone(),
        poll: String::new(),
        voter: String::new(),
    };
    ProtocolTypeRouter::new()
        .http(http)
        .websocket(CookieMiddleware::new(
            UrlRouter::new().route("/ws/poll/{id}/", viewers),
        ))
}

/// The tally, on its channel.
pub(crate) fn workers(polls: Polls) -> ChannelNameRouter {
    ChannelNameRouter::new().route(TALLY, Tally::new(polls))
}

#[derive(Parser)]
#[command(about = "switchboard's live poll example")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000", env = "SWITCHBOARD_ADDR")]
    addr: SocketAddr,
    /// Poll 1's question.
    #[arg(long, default_value = "Which language for the next service?")]
    question: String,
    /// Poll 1's options (repeat; default Rust, Go, Python, TypeScript).
    #[arg(long = "option")]
    options: Vec<String>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let args = Args::parse();
    let options = if args.options.is_empty() {
        ["Rust", "Go", "Python", "TypeScript"]
            .map(String::from)
            .to_vec()
    } else {
        args.options
    };
    let polls: Polls = Arc::new(HashMap::from([(
        "1".to_owned(),
        Poll {
            question: args.question,
            options,
        },
    )]));
    let layer = switchboard::layer::LayerHandle::in_memory();
    let workers = workers(polls.clone()).spawn(layer.clone());
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    println!("poll: open http://{}/ in a browser", listener.local_addr()?);
    switchboard::serve(listener, application(polls))
        .channel_layer(layer)
        .config(switchboard::ServerConfig::from_env()?)
        .with_graceful_shutdown(switchboard::shutdown_signal())
        .await?;
    workers.shutdown().await;
    Ok(())
}
