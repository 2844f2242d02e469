//! The chat page in headless Chromium: two people chat through the real UI, one
//! disconnects and the other sees it leave (`tests/browser/chat.test.mjs`).
//!
//! Needs Node, `npm ci` in `tests/browser` and Chromium (`/usr/bin/chromium`, or
//! the `CHROMIUM` env). When one is missing the test prints `SKIP` and passes,
//! unless `CI` is set: then it fails, so CI never skips it silently.
//! `UPDATE_SCREENSHOT=1` also writes `docs/chat.png`.

#[allow(dead_code)]
#[path = "../examples/chat.rs"]
mod chat;

use std::{path::Path, process::Stdio, time::Duration};

use tower_sse::Shutdown;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pages_chat_and_one_leaves() {
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
        return;
    }

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = chat::app(Duration::from_secs(15), &Shutdown::new());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let mut cmd = tokio::process::Command::new("node");
    cmd.arg("chat.test.mjs")
        .current_dir(&dir)
        .env("CHAT_URL", format!("http://{addr}"))
        .env("CHROMIUM", &chromium)
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if std::env::var_os("UPDATE_SCREENSHOT").is_some() {
        cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/chat.png"));
    }
    // The script has its own two-minute guard; this one is for node itself.
    let status = tokio::time::timeout(Duration::from_secs(180), cmd.status())
        .await
        .expect("hang guard: node did not finish")
        .expect("node could not be started");
    assert!(status.success(), "browser test failed: {status}");
}
