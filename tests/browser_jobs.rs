//! The examples for the common jobs in headless Chromium
//! (`tests/browser/jobs.test.mjs`): token streaming read with `fetch` and a
//! stream reader, per-user notifications over a cookie session, a live
//! dashboard. Skips like `tests/browser.rs` when Chromium or the npm packages
//! are missing (and fails in CI).

#[allow(dead_code)]
#[path = "../examples/dashboard.rs"]
mod dashboard;
#[allow(dead_code)]
#[path = "../examples/notifications.rs"]
mod notifications;
#[allow(dead_code)]
#[path = "../examples/tokens.rs"]
mod tokens;

#[allow(dead_code)]
mod browser_support;

use std::{sync::Arc, time::Duration};

use browser_support::{chromium, run_with};

async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_in_the_browser() {
    let Some(chromium) = chromium() else { return };
    let url = serve(tokens::app(Duration::from_millis(20), Arc::new(|_| {}))).await;
    run_with(&chromium, "jobs.test.mjs", url, None, &[("JOB", "tokens")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_in_the_browser() {
    let Some(chromium) = chromium() else { return };
    let url = serve(notifications::app(None)).await;
    run_with(
        &chromium,
        "jobs.test.mjs",
        url,
        None,
        &[("JOB", "notifications")],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_the_browser() {
    let Some(chromium) = chromium() else { return };
    let url = serve(dashboard::app(dashboard::hub(), Duration::from_millis(50)).await).await;
    run_with(
        &chromium,
        "jobs.test.mjs",
        url,
        None,
        &[("JOB", "dashboard")],
    )
    .await;
}
