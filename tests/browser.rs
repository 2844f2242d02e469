//! The chat page in headless Chromium, through the real UI:
//!
//! - `chat.test.mjs`: two people chat, one disconnects and the other sees it
//!   leave, then it comes back and gets what it missed;
//! - `page.test.mjs`: a phone-sized screen (390 px), own messages marked, the
//!   icon served with no error in the console;
//! - `h2.test.mjs`: ten `EventSource`s in one page to the chat served with
//!   `TLS` over HTTP/2, each receiving a posted message.
//!
//! Needs Node, `npm ci` in `tests/browser` and Chromium (`/usr/bin/chromium`, or
//! the `CHROMIUM` env). When one is missing the tests print `SKIP` and pass,
//! unless `CI` is set: then they fail, so CI never skips them silently.
//! `UPDATE_SCREENSHOT=1` also writes `docs/chat.png` and `docs/chat-phone.png`.

#[allow(dead_code)]
#[path = "../examples/chat.rs"]
mod chat;

use std::{net::SocketAddr, path::Path, process::Stdio, time::Duration};

use tower_sse::Shutdown;

/// Chromium's path, or `None` (after printing `SKIP`) when something the tests
/// need is missing outside CI.
fn chromium() -> Option<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let missing = [
        (!node).then_some("node is not installed"),
        (!dir.join("node_modules/playwright-core").is_dir())
            .then_some("tests/browser/node_modules is missing (run `npm ci` in tests/browser)"),
        (!Path::new(&chromium).exists()).then_some("chromium is not installed"),
    ];
    let missing: Vec<_> = missing.into_iter().flatten().collect();
    if !missing.is_empty() {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
        assert!(!ci, "browser test cannot run in CI: {}", missing.join("; "));
        eprintln!("SKIP browser test: {}", missing.join("; "));
        return None;
    }
    Some(chromium)
}

/// Serves the chat on a fresh port, over TLS when `tls`.
async fn serve_chat(tls: bool) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = chat::app(Duration::from_secs(15), &Shutdown::new());
    if tls {
        let (certs, key) = chat::self_signed(addr.ip()).unwrap();
        let config = chat::tls_server_config(certs, key).unwrap();
        let never = std::future::pending::<()>();
        tokio::spawn(async move { chat::serve_tls(listener, app, config, never).await.unwrap() });
    } else {
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    }
    addr
}

/// Runs `tests/browser/SCRIPT` against `url`; `screenshot` is a file name under
/// `docs/`, written only with `UPDATE_SCREENSHOT`.
async fn run(chromium: &str, script: &str, url: String, screenshot: Option<&str>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(script)
        .current_dir(&dir)
        .env("CHAT_URL", url)
        .env("CHROMIUM", chromium)
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if let Some(name) = screenshot.filter(|_| std::env::var_os("UPDATE_SCREENSHOT").is_some()) {
        cmd.arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("docs")
                .join(name),
        );
    }
    // The script has its own two-minute guard; this one is for node itself.
    let status = tokio::time::timeout(Duration::from_secs(180), cmd.status())
        .await
        .expect("hang guard: node did not finish")
        .expect("node could not be started");
    assert!(status.success(), "{script} failed: {status}");
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
