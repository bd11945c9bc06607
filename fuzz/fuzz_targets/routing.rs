//! URL routing on arbitrary paths: never panics, and a path it resolves has a route whose
//! captures are slices of that path.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use switchboard::consumer::{Context, WebSocketConsumer};
use switchboard::routing::UrlRouter;
use switchboard::websocket::Message;

struct Nobody;

#[switchboard::async_trait]
impl WebSocketConsumer for Nobody {
    async fn receive(&mut self, _: &mut Context, _: Message) -> switchboard::Result<()> {
        Ok(())
    }
}

fn router() -> &'static UrlRouter {
    static ROUTER: OnceLock<UrlRouter> = OnceLock::new();
    ROUTER.get_or_init(|| {
        let rooms = UrlRouter::new()
            .route("/", || Nobody)
            .route("/{room}/", || Nobody)
            .route("/{room}/files/{*path}", || Nobody)
            .route("/img-{id}.png", || Nobody);
        UrlRouter::new()
            .route("/ws/echo/", || Nobody)
            .nest("/ws/rooms", rooms)
            .nest(
                "/ws/v2/",
                UrlRouter::new().nest("/deep", UrlRouter::new().route("/{leaf}", || Nobody)),
            )
            .route("/{*anything}", || Nobody)
    })
}

fuzz_target!(|data: &[u8]| {
    let path = String::from_utf8_lossy(data);
    if let Some(route) = router().resolve(&path) {
        for (_, value) in route.iter() {
            assert!(path.contains(value), "{value:?} is not part of {path:?}");
        }
    }
});
