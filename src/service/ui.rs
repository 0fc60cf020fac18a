//! The set-up page under `/ui/` (`http.ui = true`; off by default): plain HTML, CSS and
//! JavaScript embedded in the binary, with no build step and nothing fetched from elsewhere.
//! Everything it shows comes from the JSON API in [`super::api`].

use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use hyper::{Method, Request, Response, StatusCode};

use super::api::{error, Api};
use super::health::{full, Body};

const INDEX: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/app.css");

/// Answers a request under `/ui/`.
pub(crate) fn respond<B>(api: &Api, req: &Request<B>) -> Response<Body> {
    if !api.enabled {
        return error(StatusCode::NOT_FOUND, "the set-up page is off: set http.ui = true in the config");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return error(StatusCode::METHOD_NOT_ALLOWED, "the page is read with GET");
    }
    let (body, kind) = match req.uri().path() {
        "/ui" => {
            let mut r = Response::new(full(""));
            *r.status_mut() = StatusCode::MOVED_PERMANENTLY;
            r.headers_mut().insert(LOCATION, HeaderValue::from_static("/ui/"));
            return r;
        }
        "/ui/" | "/ui/index.html" => (INDEX, "text/html; charset=utf-8"),
        "/ui/app.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "/ui/app.css" => (STYLE, "text/css; charset=utf-8"),
        _ => return error(StatusCode::NOT_FOUND, "not found: the page is at /ui/"),
    };
    let mut r = Response::new(full(body));
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    r.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}
