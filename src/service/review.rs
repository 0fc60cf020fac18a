//! Evidence review for the set-up page: the recent alarms with their evidence images, the
//! images themselves, and "mark as good", which copies a frame the model called NG into its
//! bundle's `feedback/good/` folder, so a later `inspectd train` can learn from it.
//!
//! Evidence URLs are `/api/evidence/{camera}/{file}`, two plain names under the evidence
//! folder: anything else (`..`, a `/` or `\`, a leading dot, percent-encoding) is refused
//! before the disk is touched, and the resolved path must still lie inside the folder, so a
//! symbolic link cannot lead out of it either.

use std::path::{Path, PathBuf};

use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use tracing::info;

use super::api::{authorise, error, ok, Api, Refusal};
use super::board::{HealthBoard, UiHandles};
use super::health::{full, Body};

/// Where "mark as good" puts frames, inside a model's bundle folder.
pub const FEEDBACK_DIR: &str = "feedback/good";

/// `GET /api/alarms`: every camera's recent alarms, newest first.
pub(crate) fn alarms(api: &Api, ui: &UiHandles) -> Value {
    let url = |p: &Path| evidence_url(api.evidence_dir.as_deref(), p);
    let alarms: Vec<Value> = ui
        .latest
        .alarms()
        .into_iter()
        .map(|a| {
            let (frame, heatmap) =
                a.evidence.as_ref().map_or((None, None), |e| (url(&e.frame), url(&e.heatmap)));
            let mut v = json!(a);
            v["frame"] = json!(frame);
            v["heatmap"] = json!(heatmap);
            v
        })
        .collect();
    json!({ "alarms": alarms })
}

/// The URL an evidence file is served at, when it lies in the evidence folder.
fn evidence_url(dir: Option<&Path>, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(dir?).ok()?;
    let names: Vec<&str> = relative.iter().map(|s| s.to_str()).collect::<Option<_>>()?;
    match names.as_slice() {
        [camera, name] if plain(camera) && plain(name) => Some(format!("/api/evidence/{camera}/{name}")),
        _ => None,
    }
}

/// `/api/evidence/...`: `GET {camera}/{file}` or `POST {camera}/{file}/good`.
pub(crate) async fn evidence(
    api: &Api,
    board: &HealthBoard,
    req: Request<Incoming>,
    rest: &[String],
) -> Response<Body> {
    let Some(dir) = &api.evidence_dir else {
        return error(StatusCode::NOT_FOUND, "no evidence is kept: see [evidence] in the config");
    };
    let (camera, name, good) = match (req.method(), rest) {
        (&Method::GET, [camera, name]) => (camera, name, false),
        (&Method::POST, [camera, name, good]) if good == "good" => (camera, name, true),
        _ => return refused(),
    };
    if !plain(camera) || !plain(name) {
        return refused();
    }
    let path = match inside(dir, &dir.join(camera).join(name)) {
        Ok(path) => path,
        Err(r) => return r.into(),
    };
    if good {
        if let Err(r) = authorise(api, &req) {
            return r.into();
        }
        mark_good(api, board, camera, name, &path).await
    } else {
        serve(&path).await
    }
}

fn refused() -> Response<Body> {
    refusal().into()
}

fn refusal() -> Refusal {
    Refusal(
        StatusCode::BAD_REQUEST,
        "refused: evidence is GET /api/evidence/{camera}/{file} (plain names, as /api/alarms lists them)"
            .into(),
    )
}

/// A single plain file or folder name: no separators, no `.`/`..`, nothing hidden, nothing encoded.
fn plain(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\\', '\0', '%', ':'])
}

/// `path` with links resolved, when it exists and lies inside `dir`.
fn inside(dir: &Path, path: &Path) -> Result<PathBuf, Refusal> {
    let not_found =
        || Refusal(StatusCode::NOT_FOUND, "no such evidence file (retention may have removed it)".into());
    let (Ok(dir), Ok(path)) = (dir.canonicalize(), path.canonicalize()) else { return Err(not_found()) };
    if path.starts_with(&dir) && path.is_file() {
        Ok(path)
    } else {
        Err(refusal())
    }
}

async fn serve(path: &Path) -> Response<Body> {
    let kind = match path.extension().and_then(|e| e.to_str()) {
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        _ => return refused(),
    };
    match tokio::fs::read(path).await {
        Ok(bytes) => {
            let mut r = Response::new(full(bytes));
            r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(kind));
            r.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("private, max-age=3600"));
            r
        }
        Err(e) => error(StatusCode::NOT_FOUND, &format!("cannot read the evidence file: {e}")),
    }
}

/// Copies the evidence frame into `{model bundle}/feedback/good/{camera}_{file}` (written to a
/// temporary name and renamed, so a training run never reads half a file).
async fn mark_good(api: &Api, board: &HealthBoard, camera: &str, name: &str, path: &Path) -> Response<Body> {
    if !name.contains("_frame.") {
        return error(StatusCode::BAD_REQUEST, "only a frame can be marked good, not a heatmap");
    }
    let Some(model) = board.camera_views().into_iter().find(|c| c.id == camera).map(|c| c.model) else {
        return error(StatusCode::NOT_FOUND, &format!("no camera '{camera}'"));
    };
    let Some(bundle) = api.model_dirs.get(&model) else {
        return error(StatusCode::NOT_FOUND, &format!("no folder known for model '{model}'"));
    };
    let folder = bundle.join(FEEDBACK_DIR);
    let target = folder.join(format!("{camera}_{name}"));
    let tmp = folder.join(format!(".{camera}_{name}.tmp"));
    let copied = async {
        tokio::fs::create_dir_all(&folder).await?;
        tokio::fs::copy(path, &tmp).await?;
        tokio::fs::rename(&tmp, &target).await
    };
    match copied.await {
        Ok(()) => {
            info!(camera, model = %model, file = %target.display(), "Frame marked good for the next training.");
            let mut r = ok(json!({ "copied_to": target.display().to_string() }));
            *r.status_mut() = StatusCode::CREATED;
            r
        }
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!(
                "cannot copy the frame into {}: {e} (the daemon needs write access there)",
                folder.display()
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_pass() {
        for ok in ["cam1", "2026-11-28T15-04-08.123Z_4711_frame.jpg"] {
            assert!(plain(ok), "{ok}");
        }
        for bad in ["", ".", "..", ".hidden", "a/b", "a\\b", "%2e%2e", "c:x", "a\0b"] {
            assert!(!plain(bad), "{bad:?}");
        }
    }

    #[test]
    fn urls_are_given_only_for_files_in_the_evidence_folder() {
        let dir = Path::new("/var/lib/inspectd/evidence");
        assert_eq!(
            evidence_url(Some(dir), &dir.join("cam1/x_frame.jpg")).as_deref(),
            Some("/api/evidence/cam1/x_frame.jpg")
        );
        assert_eq!(evidence_url(Some(dir), Path::new("/etc/passwd")), None);
        assert_eq!(evidence_url(Some(dir), &dir.join("cam1/sub/x.jpg")), None);
        assert_eq!(evidence_url(None, &dir.join("cam1/x_frame.jpg")), None);
    }
}
