//! The HTTP endpoint (`[http] bind`, loopback by default, empty to disable) for supervisors and
//! scrapers that are not systemd:
//!
//! - `/healthz`: 200 while the process is alive and its scoring loops make progress, 503 with
//!   the reason when one is stuck: the same rule that gates the systemd watchdog, so a
//!   container runtime restarts inspectd exactly when systemd would.
//! - `/readyz`: 200 when every model is loaded, every enabled camera streams and MQTT is
//!   connected; 503 naming what is missing otherwise (the READY=1 condition, evaluated live).
//! - `/metrics`: Prometheus text, or OpenMetrics when the scraper asks for it.
//!
//! hyper's HTTP/1 server with a three-way `match` on the path: a router or middleware stack
//! would be more code than the endpoints themselves.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ACCEPT, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::api::{self, Api};
use super::board::HealthBoard;
use super::metrics::{Metrics, OPENMETRICS_TEXT, PROMETHEUS_TEXT};
use super::ui;
use super::watchdog::{missing, watchdog_check};

/// Connections served at once; more are closed at accept. A loopback scraper needs one.
const MAX_CONNECTIONS: usize = 16;
/// A client that does not send a request head within this is disconnected (idle keep-alive
/// included), so stuck clients cannot pile up.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error("http.bind '{bind}': {source}")]
pub struct HttpError {
    pub bind: String,
    pub source: io::Error,
}

impl HttpError {
    /// A malformed address must be fixed in the config (exit 78); a port in use may free up
    /// (exit 1, systemd restarts).
    pub fn is_configuration(&self) -> bool {
        self.source.kind() == io::ErrorKind::InvalidInput
    }
}

/// Every response's body: a whole buffer, or a stream (the live view).
pub(crate) type Body = BoxBody<Bytes, Infallible>;

/// A whole-buffer body.
pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// What the handlers read.
#[derive(Clone)]
struct State {
    board: HealthBoard,
    metrics: Arc<Metrics>,
    api: Api,
}

/// A bound endpoint, not yet serving.
pub struct HealthServer {
    listener: TcpListener,
    state: State,
}

impl HealthServer {
    /// Binds `bind` (`host:port`); `Ok(None)` when it is empty (endpoint disabled).
    pub async fn bind(
        bind: &str,
        board: HealthBoard,
        metrics: Arc<Metrics>,
        api: Api,
    ) -> Result<Option<HealthServer>, HttpError> {
        if bind.trim().is_empty() {
            return Ok(None);
        }
        let listener =
            TcpListener::bind(bind).await.map_err(|source| HttpError { bind: bind.to_string(), source })?;
        Ok(Some(HealthServer { listener, state: State { board, metrics, api } }))
    }

    /// The bound address (the real port when the config said `:0`).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `cancel`; connections still open then are dropped.
    pub async fn serve(self, cancel: CancellationToken) {
        let HealthServer { listener, state } = self;
        if let Ok(addr) = listener.local_addr() {
            info!(%addr, "Health and metrics endpoint listening.");
        }
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) if connections.len() < MAX_CONNECTIONS => {
                        connections.spawn(serve_connection(stream, state.clone()));
                    }
                    Ok((_, peer)) => debug!(%peer, "HTTP connection refused: too many open."),
                    Err(e) => {
                        // Out of file descriptors, mostly: back off instead of spinning.
                        warn!("HTTP accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        connections.abort_all();
    }
}

async fn serve_connection(stream: TcpStream, state: State) {
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let state = state.clone();
        async move {
            let path = req.uri().path();
            let response = if path.starts_with("/api/") || path == "/api" {
                api::respond(&state.api, &state.board, req).await
            } else if path.starts_with("/ui/") || path == "/ui" {
                ui::respond(&state.api, &req)
            } else {
                respond(&state, &req)
            };
            Ok::<_, Infallible>(response)
        }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(e) = served {
        debug!("HTTP connection ended: {e}");
    }
}

fn respond<B>(state: &State, req: &Request<B>) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n".into());
        r.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match req.uri().path() {
        "/healthz" => healthz(state),
        "/readyz" => readyz(state),
        "/metrics" => metrics(state, wants_openmetrics(req)),
        _ => text(StatusCode::NOT_FOUND, "not found: try /healthz, /readyz or /metrics\n".into()),
    }
}

fn healthz(state: &State) -> Response<Body> {
    let h = state.board.snapshot();
    if h.scorers.is_empty() {
        // Models still loading: alive, just not scoring yet.
        return text(StatusCode::OK, "ok: starting\n".into());
    }
    match watchdog_check(&h, SystemTime::now()) {
        Ok(()) => text(StatusCode::OK, "ok\n".into()),
        Err(reason) => text(StatusCode::SERVICE_UNAVAILABLE, format!("unhealthy: {reason}\n")),
    }
}

fn readyz(state: &State) -> Response<Body> {
    let missing = missing(&state.board.snapshot());
    if missing.is_empty() {
        text(StatusCode::OK, "ready\n".into())
    } else {
        text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {}\n", missing.join(", ")))
    }
}

fn metrics(state: &State, openmetrics: bool) -> Response<Body> {
    state.board.update_metrics(&state.metrics);
    state.metrics.set_ready(missing(&state.board.snapshot()).is_empty());
    match state.metrics.encode(openmetrics) {
        Ok(body) => {
            let mut r = Response::new(full(body));
            let kind = if openmetrics { OPENMETRICS_TEXT } else { PROMETHEUS_TEXT };
            r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(kind));
            r
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode metrics: {e}\n")),
    }
}

/// Prometheus asks for OpenMetrics first in its `Accept`; curl and browsers do not.
fn wants_openmetrics<B>(req: &Request<B>) -> bool {
    req.headers()
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"))
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}
