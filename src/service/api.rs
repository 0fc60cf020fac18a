//! The set-up API under `/api/` on the daemon's HTTP endpoint (`http.ui = true`; off by
//! default): what the set-up page (`/ui/`), or a person with curl, reads and changes.
//!
//! | method and path | answer |
//! |---|---|
//! | `GET /api/cameras` | every camera: state, fps, frames, drops, model, last verdict/score/threshold |
//! | `GET /api/cameras/{id}/scores` | the camera's recent scores (about two minutes), oldest first, and the model's calibration statistics |
//! | `GET /api/cameras/{id}/live.mjpg?fps=N` | the live view: MJPEG of the frame with the heatmap and region boxes |
//! | `GET /api/cameras/{id}/frame.jpg` | the latest live-view frame, once |
//! | `POST /api/cameras/{id}/threshold` | a `threshold/set` body; needs the token |
//! | `POST /api/cameras/{id}/ack` | an `alarm/ack` body (empty: the current alarm); needs the token |
//! | `GET /api/alarms` | the recent alarms of every camera, newest first, with evidence URLs |
//! | `GET /api/evidence/{camera}/{file}` | one evidence image |
//! | `POST /api/evidence/{camera}/{file}/good` | "mark as good": copies the frame into the model's `feedback/good/`; needs the token |
//!
//! A threshold or an acknowledgement posted here takes the same path as one from MQTT
//! (applied between frames by the decision thread, persisted, echoed on MQTT with `set_by:
//! "ui"`). Reading needs nothing beyond reaching the endpoint (it binds localhost by
//! default); a change needs `Authorization: Bearer <http.ui_token>`, compared in constant
//! time and never logged.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use http_body_util::{BodyExt, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use super::board::{HealthBoard, UiHandles};
use super::daemon::forward;
use super::health::{full, Body};
use super::{live, review};
use crate::config::types::UiToken;
use crate::decision::ThresholdChange;
use crate::pipeline::decide::DecisionInput;
use crate::publish::acks::parse_ack;
use crate::publish::inbound::parse_threshold;

/// Largest request body read: a threshold or ack request is a few dozen bytes.
const MAX_BODY: usize = 4096;

/// What the API needs besides the board; the default is off.
#[derive(Clone, Default)]
pub struct Api {
    pub enabled: bool,
    pub token: Option<UiToken>,
    /// Where evidence is saved (served under `/api/evidence/`); `None` without evidence.
    pub evidence_dir: Option<PathBuf>,
    /// Each model's bundle folder by its name in `[models]`, for "mark as good".
    pub model_dirs: HashMap<String, PathBuf>,
    /// Live-view streams open now.
    pub(crate) streams: Arc<AtomicUsize>,
}

/// Answers a request under `/api/`.
pub(crate) async fn respond(api: &Api, board: &HealthBoard, req: Request<Incoming>) -> Response<Body> {
    if !api.enabled {
        return error(StatusCode::NOT_FOUND, "the set-up API is off: set http.ui = true in the config");
    }
    let path = req.uri().path().trim_end_matches('/').to_string();
    let parts: Vec<&str> = path.split('/').skip(2).collect();
    match (req.method().clone(), parts.as_slice()) {
        (Method::GET, ["cameras"]) => ok(json!(board.camera_views())),
        (Method::GET, ["cameras", id, "scores"]) => scores(board, id, req.uri().query()),
        (Method::GET, ["cameras", id, "live.mjpg"]) => match camera(board, id) {
            Ok(ui) => live::stream(api, board, ui, id, req.uri().query()),
            Err(r) => r.into(),
        },
        (Method::GET, ["cameras", id, "frame.jpg"]) => match camera(board, id) {
            Ok(ui) => live::snapshot(&ui, id).await,
            Err(r) => r.into(),
        },
        (Method::POST, ["cameras", id, action @ ("threshold" | "ack")]) => {
            let (id, action) = (id.to_string(), *action);
            change(api, board, &id, action, req).await
        }
        (Method::GET, ["alarms"]) => match board.ui() {
            Some(ui) => ok(review::alarms(api, &ui)),
            None => error(StatusCode::SERVICE_UNAVAILABLE, "the daemon is starting or stopping"),
        },
        (_, ["evidence", rest @ ..]) => {
            let rest: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
            review::evidence(api, board, req, &rest).await
        }
        _ => error(StatusCode::NOT_FOUND, "not found: see GET /api/cameras"),
    }
}

/// The live handles, when `id` is a camera of the running daemon; the error response otherwise.
pub(crate) fn camera(board: &HealthBoard, id: &str) -> Result<UiHandles, Refusal> {
    match (board.ui(), board.camera_views().iter().any(|c| c.id == id)) {
        (Some(ui), true) => Ok(ui),
        (None, _) => {
            Err(Refusal(StatusCode::SERVICE_UNAVAILABLE, "the daemon is starting or stopping".into()))
        }
        (_, false) => Err(Refusal(StatusCode::NOT_FOUND, format!("no camera '{id}'"))),
    }
}

/// A request refused: its status and the reason the client is told.
#[derive(Debug)]
pub(crate) struct Refusal(pub StatusCode, pub String);

impl From<Refusal> for Response<Body> {
    fn from(Refusal(status, reason): Refusal) -> Self {
        error(status, &reason)
    }
}

/// `GET /api/cameras/{id}/scores[?since=SEQ]`: the recent scores, or only those after frame
/// `SEQ` (a page polling once a second fetches a few points, not all 1200).
fn scores(board: &HealthBoard, id: &str, query: Option<&str>) -> Response<Body> {
    let ui = match camera(board, id) {
        Ok(ui) => ui,
        Err(r) => return r.into(),
    };
    let since = query.into_iter().flat_map(|q| q.split('&')).find_map(|kv| kv.strip_prefix("since="));
    let since = match since.map(str::parse::<u64>) {
        None => None,
        Some(Ok(seq)) => Some(seq),
        Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "since= takes a frame sequence number"),
    };
    let mut points = ui.latest.history(id);
    let last_seq = points.last().map(|p| p.seq);
    if let Some(since) = since {
        points.retain(|p| p.seq > since);
    }
    let model = ui.latest.model(id);
    ok(json!({
        "camera": id,
        "model": model.as_ref().map(|m| json!({ "name": m.name, "id": m.id, "sha": m.sha })),
        "calibration": model.as_ref().and_then(|m| m.threshold.clone()),
        "last_seq": last_seq,
        "points": points,
    }))
}

/// Whether the request carries the token; the refusal to send otherwise.
pub(crate) fn authorise<B>(api: &Api, req: &Request<B>) -> Result<(), Refusal> {
    let Some(token) = &api.token else {
        return Err(Refusal(
            StatusCode::FORBIDDEN,
            "changes are off: set http.ui_token in the config".into(),
        ));
    };
    let offered = req.headers().get(AUTHORIZATION).and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
    if offered.is_some_and(|o| token.matches(o)) {
        Ok(())
    } else {
        Err(Refusal(StatusCode::UNAUTHORIZED, "a change needs Authorization: Bearer <http.ui_token>".into()))
    }
}

/// A threshold request or an alarm acknowledgement, forwarded to the decision thread.
async fn change(
    api: &Api,
    board: &HealthBoard,
    id: &str,
    action: &str,
    req: Request<Incoming>,
) -> Response<Body> {
    if let Err(refused) = authorise(api, &req) {
        return refused.into();
    }
    let ui = match camera(board, id) {
        Ok(ui) => ui,
        Err(r) => return r.into(),
    };
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("cannot read the body: {e}")),
    };
    let input = if action == "ack" {
        match parse_ack(id, &body) {
            Ok(ack) => DecisionInput::Ack(ack),
            Err(reason) => return error(StatusCode::BAD_REQUEST, &reason),
        }
    } else {
        let mut request = parse_threshold(id, &body);
        if let ThresholdChange::Unreadable(reason) = &request.change {
            return error(StatusCode::BAD_REQUEST, reason);
        }
        if request.set_by == "mqtt" {
            request.set_by = "ui".into();
        }
        DecisionInput::Threshold(request)
    };
    forward(&ui.decide, input).await;
    let outcome = if action == "ack" {
        "MQTT alarm/state and GET /api/alarms"
    } else {
        "MQTT threshold/state and GET /api/cameras"
    };
    let mut r = ok(json!({ "accepted": true, "outcome": format!("on {outcome}") }));
    *r.status_mut() = StatusCode::ACCEPTED;
    r
}

pub(crate) fn ok(body: serde_json::Value) -> Response<Body> {
    let mut r = Response::new(full(Bytes::from(body.to_string())));
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

pub(crate) fn error(status: StatusCode, reason: &str) -> Response<Body> {
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
