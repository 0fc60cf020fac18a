//! The set-up page's live view: each camera's latest decided frame with the anomaly map over
//! it and the region boxes drawn, as MJPEG (`multipart/x-mixed-replace`, which an `<img>`
//! shows without any script) or as one JPEG.
//!
//! The stream never slows scoring. The decision thread only copies a frame into
//! [`LatestDecisions`](crate::pipeline::latest::LatestDecisions) while a viewer asks for one;
//! this module reads the newest one at the rate the viewer chose, renders and encodes it on
//! the blocking pool, and skips frames when the viewer (or the network) is slower than the
//! camera. A viewer that stops reading holds one frame in a one-slot channel, nothing more.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::body::{Bytes, Frame};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use image::codecs::jpeg::JpegEncoder;
use image::RgbImage;
use tokio::sync::mpsc;

use super::api::{error, Api};
use super::board::{HealthBoard, UiHandles};
use super::health::{full, Body};
use crate::flow::frame::Verdict;
use crate::heatmap::{annotate, NG_COLOUR, REGION_COLOUR};
use crate::pipeline::latest::ViewFrame;

/// Live-view streams served at once; more are refused (each holds an HTTP connection).
pub const MAX_STREAMS: usize = 4;
/// Frame rates a viewer may ask for (`?fps=`); the default is 5.
const FPS_RANGE: (f64, f64) = (0.2, 30.0);
const DEFAULT_FPS: f64 = 5.0;
/// How strongly the heatmap covers the frame.
const OVERLAY_ALPHA: f32 = 0.45;
const JPEG_QUALITY: u8 = 80;
const BOUNDARY: &str = "inspectd-frame";

/// `GET /api/cameras/{id}/live.mjpg?fps=N`.
pub(crate) fn stream(
    api: &Api,
    board: &HealthBoard,
    ui: UiHandles,
    id: &str,
    query: Option<&str>,
) -> Response<Body> {
    let fps = match fps(query) {
        Ok(fps) => fps,
        Err(reason) => return error(StatusCode::BAD_REQUEST, &reason),
    };
    let streams = api.streams.clone();
    if streams.fetch_add(1, Ordering::SeqCst) >= MAX_STREAMS {
        streams.fetch_sub(1, Ordering::SeqCst);
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("{MAX_STREAMS} live views are open already: close one"),
        );
    }
    let (tx, rx) = mpsc::channel::<Bytes>(1);
    let (board, camera) = (board.clone(), id.to_string());
    drop(ui);
    tokio::spawn(async move {
        feed(&board, &camera, fps, tx).await;
        streams.fetch_sub(1, Ordering::SeqCst);
    });
    let mut r = Response::new(ChannelBody(rx).boxed());
    let kind = format!("multipart/x-mixed-replace; boundary={BOUNDARY}");
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_str(&kind).expect("ASCII"));
    r.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Sends the camera's newest frame at `fps` until the viewer goes or the daemon stops.
async fn feed(board: &HealthBoard, camera: &str, fps: f64, tx: mpsc::Sender<Bytes>) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / fps));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sent = None;
    loop {
        tick.tick().await;
        if tx.is_closed() {
            return;
        }
        // The handles go when the daemon begins to stop.
        let Some(ui) = board.ui() else { return };
        let Some(view) = ui.latest.watch(camera, Instant::now()) else { continue };
        if sent == Some(view.seq) {
            continue;
        }
        sent = Some(view.seq);
        let Ok(jpeg) = tokio::task::spawn_blocking(move || render(&view)).await else { return };
        let mut part =
            format!("--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n", jpeg.len())
                .into_bytes();
        part.extend_from_slice(&jpeg);
        part.extend_from_slice(b"\r\n");
        if tx.send(Bytes::from(part)).await.is_err() {
            return;
        }
    }
}

/// `GET /api/cameras/{id}/frame.jpg`: the newest frame, waiting up to a second for the first
/// one (frames are kept only while someone asks).
pub(crate) async fn snapshot(ui: &UiHandles, camera: &str) -> Response<Body> {
    let deadline = Instant::now() + Duration::from_secs(1);
    let view = loop {
        match ui.latest.watch(camera, Instant::now()) {
            Some(view) => break view,
            None if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            None => {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("camera '{camera}' has no scored frame yet"),
                )
            }
        }
    };
    let Ok(jpeg) = tokio::task::spawn_blocking(move || render(&view)).await else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "rendering failed");
    };
    let mut r = Response::new(full(jpeg));
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
    r.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The frame with its heatmap (coloured up to twice the threshold, as evidence is) and its
/// regions boxed, red on an NG frame, as JPEG.
pub fn render(view: &ViewFrame) -> Vec<u8> {
    let image = RgbImage::from_raw(view.width, view.height, view.rgb.clone()).unwrap_or_default();
    let colour = if view.verdict == Verdict::Ng { NG_COLOUR } else { REGION_COLOUR };
    let vmax = 2.0 * view.threshold;
    let image = annotate(&image, view.roi, view.map.view(), vmax, OVERLAY_ALPHA, &view.regions, colour);
    let mut jpeg = Vec::new();
    if JpegEncoder::new_with_quality(&mut jpeg, JPEG_QUALITY).encode_image(&image).is_err() {
        jpeg.clear();
    }
    jpeg
}

/// The `fps` query parameter.
fn fps(query: Option<&str>) -> Result<f64, String> {
    let Some(value) = query.into_iter().flat_map(|q| q.split('&')).find_map(|kv| kv.strip_prefix("fps="))
    else {
        return Ok(DEFAULT_FPS);
    };
    match value.parse::<f64>() {
        Ok(f) if (FPS_RANGE.0..=FPS_RANGE.1).contains(&f) => Ok(f),
        _ => Err(format!("fps={value}: give a frame rate from {} to {}", FPS_RANGE.0, FPS_RANGE.1)),
    }
}

/// A streamed body fed through a channel.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|part| part.map(|bytes| Ok(Frame::data(bytes))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::frame::Region;
    use ndarray::Array2;
    use std::time::SystemTime;

    #[test]
    fn the_frame_rate_is_checked() {
        assert_eq!(fps(None), Ok(DEFAULT_FPS));
        assert_eq!(fps(Some("fps=2")), Ok(2.0));
        assert_eq!(fps(Some("x=1&fps=0.5")), Ok(0.5));
        for bad in ["fps=0", "fps=100", "fps=fast"] {
            assert!(fps(Some(bad)).unwrap_err().contains("from 0.2 to 30"), "{bad}");
        }
    }

    #[test]
    fn a_render_shows_the_heatmap_and_the_boxes() {
        let (w, h) = (32u32, 24u32);
        let mut map = Array2::zeros((h as usize, w as usize));
        map[(12, 16)] = 10.0;
        let view = ViewFrame {
            seq: 1,
            captured_at: SystemTime::UNIX_EPOCH,
            width: w,
            height: h,
            rgb: vec![128; (w * h * 3) as usize],
            map,
            roi: crate::view::Rect::whole(w, h),
            regions: vec![Region { x: 4, y: 4, w: 8, h: 6, peak: 10.0, area: 48 }],
            score: 10.0,
            threshold: 1.0,
            verdict: Verdict::Ng,
        };
        let decoded = image::load_from_memory(&render(&view)).expect("a JPEG").to_rgb8();
        assert_eq!(decoded.dimensions(), (w, h));
        let corner = decoded.get_pixel(4, 4);
        assert!(corner[0] > 200 && corner[1] < 90, "red box corner: {corner:?}");
        let plain = decoded.get_pixel(28, 20);
        assert!(plain[2] > plain[0], "cold map is blue over grey: {plain:?}");
    }
}
