//! The set-up API under `/api/` on the daemon's HTTP endpoint (`http.ui = true`; off by
//! default): what a set-up page, or a person with curl, reads and changes.
//!
//! | method and path | answer |
//! |---|---|
//! | `GET /api/cameras` | every camera: state, fps, frames, drops, model, last verdict/score/threshold |
//! | `GET /api/cameras/{id}/scores` | the camera's recent scores (about two minutes), oldest first |
//! | `POST /api/cameras/{id}/threshold` | a `threshold/set` body; `Authorization: Bearer <http.ui_token>` |
//!
//! A threshold posted here takes the runtime-threshold path (applied between frames,
//! persisted, echoed on MQTT `threshold/state` with `set_by: "ui"`). Reading needs nothing
//! beyond reaching the endpoint (it binds localhost by default); changing needs the token,
//! compared in constant time and never logged.

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use super::board::HealthBoard;
use super::daemon::forward;
use crate::config::types::UiToken;
use crate::decision::ThresholdChange;
use crate::pipeline::decide::DecisionInput;
use crate::publish::inbound::parse_threshold;

/// Largest request body read: a threshold request is a few dozen bytes.
const MAX_BODY: usize = 4096;

/// What the API needs besides the board; the default is off.
#[derive(Clone, Default)]
pub struct Api {
    pub enabled: bool,
    pub token: Option<UiToken>,
}

/// Answers a request under `/api/`.
pub(crate) async fn respond(api: &Api, board: &HealthBoard, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if !api.enabled {
        return error(StatusCode::NOT_FOUND, "the set-up API is off: set http.ui = true in the config");
    }
    let path = req.uri().path().trim_end_matches('/').to_string();
    let parts: Vec<&str> = path.split('/').skip(2).collect();
    match (req.method().clone(), parts.as_slice()) {
        (Method::GET, ["cameras"]) => ok(json!(board.camera_views())),
        (Method::GET, ["cameras", id, "scores"]) => scores(board, id),
        (Method::POST, ["cameras", id, "threshold"]) => {
            let id = id.to_string();
            set_threshold(api, board, &id, req).await
        }
        _ => error(StatusCode::NOT_FOUND, "not found: see GET /api/cameras"),
    }
}

fn scores(board: &HealthBoard, id: &str) -> Response<Full<Bytes>> {
    let (Some(ui), true) = (board.ui(), board.camera_views().iter().any(|c| c.id == id)) else {
        return error(StatusCode::NOT_FOUND, &format!("no camera '{id}'"));
    };
    ok(json!({ "camera": id, "points": ui.latest.history(id) }))
}

async fn set_threshold(
    api: &Api,
    board: &HealthBoard,
    id: &str,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let Some(token) = &api.token else {
        return error(StatusCode::FORBIDDEN, "changes are off: set http.ui_token in the config");
    };
    let offered = req.headers().get(AUTHORIZATION).and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    if !offered.is_some_and(|o| token.matches(o)) {
        return error(StatusCode::UNAUTHORIZED, "a change needs Authorization: Bearer <http.ui_token>");
    }
    let (Some(ui), true) = (board.ui(), board.camera_views().iter().any(|c| c.id == id)) else {
        return error(StatusCode::NOT_FOUND, &format!("no camera '{id}'"));
    };
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("cannot read the body: {e}")),
    };
    let mut request = parse_threshold(id, &body);
    if let ThresholdChange::Unreadable(reason) = &request.change {
        return error(StatusCode::BAD_REQUEST, reason);
    }
    if request.set_by == "mqtt" {
        request.set_by = "ui".into();
    }
    forward(&ui.decide, DecisionInput::Threshold(request)).await;
    let mut r = ok(json!({ "accepted": true, "outcome": "on MQTT threshold/state and GET /api/cameras" }));
    *r.status_mut() = StatusCode::ACCEPTED;
    r
}

fn ok(body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn error(status: StatusCode, reason: &str) -> Response<Full<Bytes>> {
    let mut r = ok(json!({ "error": reason }));
    *r.status_mut() = status;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_matches_only_itself() {
        let token = UiToken("s3cret-token".into());
        assert!(token.matches(b"s3cret-token"));
        for wrong in [&b""[..], b"s3cret-toke", b"s3cret-token2", b"S3cret-token", b"x3cret-token"] {
            assert!(!token.matches(wrong), "{}", String::from_utf8_lossy(wrong));
        }
        assert_eq!(format!("{token:?}"), "UiToken(***)", "never shown");
    }
}
