//! The chat page in headless Chromium, through the real UI:
//!
//! - `chat.test.mjs`: two people chat, one disconnects and the other sees it
//!   leave, then it comes back and gets what it missed;
//! - `page.test.mjs`: a phone-sized screen (390 px), own messages marked, the
//!   icon served with no error in the console;
//! - `big_room.test.mjs`: a room above `PRESENCE_FULL_MAX` (3 here) shows
//!   "N members" and counts, and names again once it shrinks;
//! - `tabs.test.mjs`: three rooms as tabs over one `EventSource`, with unread
//!   counts, each resumed exactly after Disconnect/Connect;
//! - `h2.test.mjs`: ten `EventSource`s in one page to the chat served with
//!   `TLS` over HTTP/2, each receiving a posted message.
//!
//! Needs Node, `npm ci` in `tests/browser` and Chromium (`/usr/bin/chromium`, or
//! the `CHROMIUM` env). When one is missing the tests print `SKIP` and pass,
//! unless `CI` is set: then they fail, so CI never skips them silently.
//! `UPDATE_SCREENSHOT=1` also writes `docs/chat.png`, `docs/chat-phone.png` and
//! `docs/chat-tabs.png`.

#[allow(dead_code)]
#[path = "../../../tests/browser_support/mod.rs"]
mod browser_support;

use std::{net::SocketAddr, time::Duration};

use browser_support::{chromium, run};
use tower_sse::Shutdown;

/// Serves the chat on a fresh port, over TLS when `tls`.
async fn serve_chat(tls: bool) -> SocketAddr {
    serve_chat_with(tls, chat::Options::new(Duration::from_secs(15))).await
}

/// Serves the chat with `options` on a fresh port, over TLS when `tls`.
async fn serve_chat_with(tls: bool, options: chat::Options) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = Shutdown::new();
    let hub = tower_sse_hub::Hub::new();
    let presence = std::sync::Arc::new(tower_sse_hub::MemoryPresence::new());
    let app = chat::app_with_options(&options, &shutdown, hub, presence);
    if tls {
        let (certs, key) = chat::self_signed(addr.ip()).unwrap();
        let config = chat::tls_server_config(certs, key).unwrap();
        tokio::spawn(async move {
            chat::serve_tls(listener, app, config, &shutdown)
                .await
                .unwrap()
        });
    } else {
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    }
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pages_chat_and_one_leaves() {
    let Some(chromium) = chromium() else { return };
    let addr = serve_chat(false).await;
    run(
        &chromium,
        "chat.test.mjs",
        format!("http://{addr}"),
        Some("chat.png"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phone_sized_page_marks_own_messages_and_has_an_icon() {
    let Some(chromium) = chromium() else { return };
    let addr = serve_chat(false).await;
    let url = format!("http://{addr}");
    run(&chromium, "page.test.mjs", url, Some("chat-phone.png")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_event_sources_over_http2() {
    let Some(chromium) = chromium() else { return };
    let addr = serve_chat(true).await;
    run(&chromium, "h2.test.mjs", format!("https://{addr}"), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_room_shows_a_count() {
    let Some(chromium) = chromium() else { return };
    let options = chat::Options {
        presence_full_max: 3,
        ..chat::Options::new(Duration::from_secs(15))
    };
    let addr = serve_chat_with(false, options).await;
    run(
        &chromium,
        "big_room.test.mjs",
        format!("http://{addr}"),
        None,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_rooms_as_tabs_over_one_event_source() {
    let Some(chromium) = chromium() else { return };
    let addr = serve_chat(false).await;
    let url = format!("http://{addr}");
    run(&chromium, "tabs.test.mjs", url, Some("chat-tabs.png")).await;
}
