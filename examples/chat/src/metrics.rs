//! The Prometheus exporter of `/metrics`.

use std::time::Duration;

use axum::{
    http::{header, StatusCode},
    response::{IntoResponse, Response},
};

/// The process's Prometheus recorder, installed on first use. When another
/// recorder is installed already, a private one renders nothing but its own.
pub(crate) fn prometheus() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    use metrics_exporter_prometheus::PrometheusBuilder;
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE.get_or_init(|| {
        PrometheusBuilder::new()
            .install_recorder()
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder().handle())
    })
}

/// Histograms' buckets are drained by upkeep; the exporter leaves its schedule
/// to the application.
pub(crate) async fn upkeep() {
    let mut every = tokio::time::interval(Duration::from_secs(5));
    loop {
        every.tick().await;
        prometheus().run_upkeep();
    }
}

/// `GET /metrics`: everything recorded through the `metrics` facade, in the
/// Prometheus text format.
pub(crate) async fn metrics(handle: &metrics_exporter_prometheus::PrometheusHandle) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        handle.render(),
    )
        .into_response()
}

/// Counts the messages `/send` accepted.
pub(crate) async fn count_posted(res: Response) -> Response {
    if res.status() == StatusCode::ACCEPTED {
        metrics::counter!("chat_messages_posted_total").increment(1);
    }
    res
}
