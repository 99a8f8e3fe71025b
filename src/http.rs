//! The operator listener (`http.listen`): today the Statuspage webhook;
//! health and metrics join it. Plain HTTP on loopback by default; put TLS
//! in front (a reverse proxy) when it must be reachable from outside.

use crate::shutdown::Shutdown;
use axum::Router;
use tokio::net::TcpListener;

/// Binds `listen` (`host:port`).
pub async fn bind(listen: &str) -> Result<TcpListener, String> {
    TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on http.listen = {listen}: {e}"))
}

/// Serves `router` on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    mut shutdown: Shutdown,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "operator HTTP listener up");
    }
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.wait().await })
        .await
}
