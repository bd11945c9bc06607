//! [`Event`]: a channel-layer message, encoded once and shared, and what converts into one.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::websocket::Utf8Bytes;

/// What can be sent through a channel layer: an [`Event`], or a reference to any serializable
/// value whose JSON is an object with a string `"type"` (a `#[serde(tag = "type")]` enum or
/// struct). The sending calls of [`LayerHandle`](super::LayerHandle) and
/// [`ChannelContext`](crate::consumer::ChannelContext) take it, so one signature serves both:
///
/// ```
/// use serde::Serialize;
/// use switchboard::layer::{Event, IntoEvent};
///
/// #[derive(Serialize)]
/// #[serde(tag = "type", rename = "chat.message")]
/// struct ChatMessage { message: String }
///
/// let typed = (&ChatMessage { message: "hi".into() }).into_event()?;
/// let ready = Event::from_json(r#"{"type":"chat.message","message":"hi"}"#)?;
/// assert_eq!(typed, ready.clone().into_event()?);
/// # Ok::<(), switchboard::layer::EventError>(())
/// ```
pub trait IntoEvent {
    /// Makes the event (an [`Event`] is returned as it is, without copying its JSON).
    ///
    /// # Errors
    ///
    /// [`EventError::Json`] if the value does not serialize; [`EventError::MissingType`] if its
    /// JSON is not an object with a string `"type"`.
    fn into_event(self) -> Result<Event, EventError>;
}

impl IntoEvent for Event {
    fn into_event(self) -> Result<Event, EventError> {
        Ok(self)
    }
}

impl<T: Serialize + ?Sized> IntoEvent for &T {
    fn into_event(self) -> Result<Event, EventError> {
        Event::new(self)
    }
}

/// A channel-layer message: a JSON object with a string `"type"` (e.g. `"chat.message"`),
/// encoded once and shared by every recipient (cloning it is one atomic increment).
///
/// Consumers dispatch on the type; the typed form is a `#[serde(tag = "type")]` enum:
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use switchboard::layer::Event;
///
/// #[derive(Serialize, Deserialize, Debug, PartialEq)]
/// #[serde(tag = "type", rename_all = "snake_case")]
/// enum RoomEvent {
///     Message { text: String },
///     Joined { user: String },
/// }
///
/// let event = Event::new(&RoomEvent::Joined { user: "ada".into() })?;
/// assert_eq!(event.event_type(), "joined");
/// assert_eq!(event.json(), r#"{"type":"joined","user":"ada"}"#);
/// assert_eq!(event.decode::<RoomEvent>()?, RoomEvent::Joined { user: "ada".into() });
/// # Ok::<(), switchboard::layer::EventError>(())
/// ```
#[derive(Clone)]
pub struct Event(Arc<EventInner>);

struct EventInner {
    event_type: Box<str>,
    json: Utf8Bytes,
    /// Where the event stands in its group's stream, for a group that keeps one.
    position: Option<super::StreamPosition>,
    /// The JSON with the position added, made the first time a consumer forwards it.
    positioned_json: std::sync::OnceLock<Utf8Bytes>,
}

/// Why a value could not be made into an [`Event`], or an event into a value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// The value did not serialize, or the JSON did not parse into the wanted type.
    #[error("event JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The JSON is not an object with a string `"type"` field.
    #[error("an event must be a JSON object with a string \"type\" field")]
    MissingType,
    /// [`Event::typed`] was given a body that is not a JSON object.
    #[error("an event's body must serialize to a JSON object")]
    NotAnObject,
}

#[derive(Deserialize)]
struct TypeField<'a> {
    #[serde(rename = "type", borrow)]
    event_type: Cow<'a, str>,
}

impl Event {
    /// Serializes `value` (once) into an event.
    ///
    /// # Errors
    ///
    /// [`EventError::Json`] if it does not serialize; [`EventError::MissingType`] if it is not a
    /// JSON object with a string `"type"`.
    pub fn new<T: Serialize + ?Sized>(value: &T) -> Result<Self, EventError> {
        Self::from_json(serde_json::to_string(value)?)
    }

    /// Makes an event of type `event_type` whose other fields are `body`'s: the type is given
    /// here, so it cannot be missing (Channels' `{"type": "chat.message", **body}`).
    ///
    /// ```
    /// use switchboard::layer::Event;
    ///
    /// let event = Event::typed("chat.message", &serde_json::json!({ "message": "hi" }))?;
    /// assert_eq!(event.json(), r#"{"type":"chat.message","message":"hi"}"#);
    /// # Ok::<(), switchboard::layer::EventError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`EventError::Json`] if `body` does not serialize; [`EventError::NotAnObject`] if it is
    /// not a JSON object (or `null`, for an event with no fields).
    pub fn typed<T: Serialize + ?Sized>(event_type: &str, body: &T) -> Result<Self, EventError> {
        let fields = match serde_json::to_value(body)? {
            serde_json::Value::Object(fields) => fields,
            serde_json::Value::Null => serde_json::Map::new(),
            _ => return Err(EventError::NotAnObject),
        };
        let mut json = String::with_capacity(event_type.len() + 16);
        json.push_str("{\"type\":");
        json.push_str(&serde_json::to_string(event_type)?);
        for (name, value) in fields.iter().filter(|(name, _)| *name != "type") {
            json.push(',');
            json.push_str(&serde_json::to_string(name)?);
            json.push(':');
            json.push_str(&serde_json::to_string(value)?);
        }
        json.push('}');
        Ok(Self(Arc::new(EventInner {
            event_type: event_type.into(),
            json: json.into(),
            position: None,
            positioned_json: std::sync::OnceLock::new(),
        })))
    }

    /// Makes an event of JSON text that is already encoded (e.g. read from a network broker).
    ///
    /// # Errors
    ///
    /// [`EventError::Json`] if it is not JSON; [`EventError::MissingType`] if it is not an object
    /// with a string `"type"`.
    pub fn from_json(json: impl Into<String>) -> Result<Self, EventError> {
        let json: String = json.into();
        if !json.trim_start().starts_with('{') {
            return Err(EventError::MissingType);
        }
        let field: TypeField<'_> = serde_json::from_str(&json).map_err(|error| {
            if error.is_data() {
                EventError::MissingType
            } else {
                EventError::Json(error)
            }
        })?;
        let event_type = field.event_type.into_owned().into_boxed_str();
        Ok(Self(Arc::new(EventInner {
            event_type,
            json: json.into(),
            position: None,
            positioned_json: std::sync::OnceLock::new(),
        })))
    }

    /// Where the event stands in its group's stream: set on the events a group that keeps a
    /// stream delivers (see [`InMemoryConfig::group_history`](super::InMemoryConfig::group_history)),
    /// so that a consumer can tell its client what to send back on reconnecting; `None` otherwise.
    pub fn position(&self) -> Option<&super::StreamPosition> {
        self.0.position.as_ref()
    }

    /// The same event at `position` (the JSON is shared, not copied).
    pub(crate) fn with_position(&self, position: super::StreamPosition) -> Self {
        Self(Arc::new(EventInner {
            event_type: self.0.event_type.clone(),
            json: self.0.json.clone(),
            position: Some(position),
            positioned_json: std::sync::OnceLock::new(),
        }))
    }

    /// The event's `"type"`.
    pub fn event_type(&self) -> &str {
        &self.0.event_type
    }

    /// The whole event as JSON text.
    pub fn json(&self) -> &str {
        self.0.json.as_str()
    }

    /// The JSON text, shared: send it as a text frame without copying or re-encoding.
    pub fn to_text(&self) -> Utf8Bytes {
        self.0.json.clone()
    }

    /// The JSON text with the event's stream position added as a last field,
    /// `"position":{"epoch":"…","offset":7}`, for a client that keeps it and resumes from it (see
    /// [`ChannelLayer::recover`](super::ChannelLayer::recover)); made once per event and shared by
    /// every member that forwards it. An event without a position gives [`to_text`](Self::to_text).
    ///
    /// ```
    /// use switchboard::layer::{ChannelLayer, InMemoryChannelLayer, InMemoryConfig};
    /// # tokio_test_block_on(async {
    /// let layer = InMemoryChannelLayer::with_config(
    ///     InMemoryConfig::default().group_history("room_*", 100, std::time::Duration::from_secs(60)),
    /// );
    /// let mut receiver = layer.new_channel().await?;
    /// layer.group_add("room_1", receiver.name()).await?;
    /// layer.group_send("room_1", switchboard::layer::Event::from_json(r#"{"type":"m"}"#)?).await?;
    /// let event = receiver.recv().await;
    /// let epoch = &event.position().unwrap().epoch;
    /// assert_eq!(
    ///     event.to_text_with_position().as_str(),
    ///     format!(r#"{{"type":"m","position":{{"epoch":"{epoch}","offset":1}}}}"#),
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    /// # }
    /// ```
    pub fn to_text_with_position(&self) -> Utf8Bytes {
        let Some(position) = &self.0.position else {
            return self.to_text();
        };
        self.0
            .positioned_json
            .get_or_init(|| {
                let json = self.json().trim_end();
                // An event's JSON is an object (checked when it was made): drop its `}`.
                let body = json.strip_suffix('}').unwrap_or(json);
                let epoch = serde_json::to_string(&position.epoch).unwrap_or_default();
                let mut text = String::with_capacity(json.len() + epoch.len() + 40);
                text.push_str(body);
                text.push_str(",\"position\":{\"epoch\":");
                text.push_str(&epoch);
                text.push_str(",\"offset\":");
                text.push_str(&position.offset.to_string());
                text.push_str("}}");
                text.into()
            })
            .clone()
    }

    /// Parses the event into `T` (usually a `#[serde(tag = "type")]` enum).
    ///
    /// # Errors
    ///
    /// [`EventError::Json`] if the JSON does not fit `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, EventError> {
        Ok(serde_json::from_str(self.json())?)
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Event").field(&self.json()).finish()
    }
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        self.json() == other.json()
    }
}
