//! Scope building from arbitrary request heads: a request target and header lines as a client
//! could send them. Never panics; what it keeps is what was sent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::scope::{Protocol, Scope};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split("\r\n");
    let target = lines.next().unwrap_or("/");
    let mut builder = http::Request::get(target);
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            builder = builder.header(name.trim(), value.trim());
        }
    }
    // What hyper would refuse before us (a bad target or header) is not ours to build.
    let Ok(request) = builder.body(()) else {
        return;
    };
    let (parts, ()) = request.into_parts();
    if let Ok(scope) = Scope::from_request_parts(Protocol::WebSocket, &parts, None, None) {
        assert_eq!(scope.raw_path, parts.uri.path());
        let _ = scope.query_pairs().count();
        let _ = scope.query_param("token");
        let _ = scope.path_remaining();
        for protocol in &scope.subprotocols {
            assert!(!protocol.is_empty() && !protocol.contains(','));
        }
        assert_eq!(scope.headers.len(), parts.headers.len());
    }
});
