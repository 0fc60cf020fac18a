//! Builds a GStreamer pipeline for a source: renders and parses the launch string, sets the risky
//! strings (camera name, URL, credentials, paths) as properties of the element named `src`, and
//! configures the appsink named `sink`.
//!
//! Setting free text as a property rather than pasting it into launch text is what makes
//! injection impossible: a property value is never parsed as pipeline syntax.

use std::path::Path;

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use crate::config::types::{RtspSource, SourceConfig};

use super::error::SourceError;
use super::genicam;
use super::template::launch_string;
use super::SourceSettings;

/// Frames the appsink holds. Two lets the next frame decode while one is taken; more would
/// only add latency on a live camera.
const APPSINK_BUFFERS: u32 = 2;

/// A built pipeline. Dropping it sets the pipeline to Null, on every path out (style.md: always
/// set pipelines to Null), which stops streaming threads and releases the camera.
pub(crate) struct Assembled {
    pub pipeline: gst::Pipeline,
    pub appsink: gst_app::AppSink,
    pub bus: gst::Bus,
    /// The aravis camera `aravissrc` opened, when GenICam features were set on it (kept for
    /// software triggers).
    pub camera: Option<aravis::Camera>,
}

impl Drop for Assembled {
    fn drop(&mut self) {
        let started = std::time::Instant::now();
        let pipeline = self.pipeline.name();
        match self.pipeline.set_state(gst::State::Null) {
            Ok(_) => tracing::debug!(%pipeline, took = ?started.elapsed(), "Pipeline stopped."),
            Err(e) => tracing::warn!(%pipeline, error = %e, "Pipeline did not stop cleanly."),
        }
    }
}

/// Builds the pipeline for `settings`, in state Null.
pub(crate) fn assemble(settings: &SourceSettings) -> Result<Assembled, SourceError> {
    gst::init()?;
    let camera = settings.camera.as_ref();
    let launch = launch_string(&settings.source, settings.roi, settings.width, settings.height)?;
    let pipeline = parse(camera, &launch)?;
    let bus = pipeline.bus().expect("a pipeline always has a bus");
    let appsink = find_appsink(camera, &pipeline)?;
    let mut assembled = Assembled { pipeline, appsink, bus, camera: None };
    // Setting aravis' camera-name already opens the camera, so from here on an error must
    // drop `assembled`, which sets the pipeline to Null and closes the camera again.
    set_source_properties(settings, &assembled.pipeline)?;
    assembled.camera = configure_camera(settings, &assembled.pipeline)?;
    configure_appsink(&assembled.appsink, settings);
    Ok(assembled)
}

/// GenICam settings of a GigE / USB3 Vision camera, on the camera aravissrc opened.
fn configure_camera(
    settings: &SourceSettings,
    pipeline: &gst::Pipeline,
) -> Result<Option<aravis::Camera>, SourceError> {
    let (a, gige) = match &settings.source {
        SourceConfig::Gige(a) => (a, true),
        SourceConfig::Usb3vision(a) => (a, false),
        _ => return Ok(None),
    };
    let trigger = settings.trigger.as_ref().map(|t| &t.config);
    let features = genicam::requested(a, trigger, gige);
    // Only a named camera is open here (aravissrc opens an unnamed one when it starts).
    if a.camera.is_none() {
        return Ok(None);
    }
    let camera = settings.camera.as_ref();
    let src = pipeline.by_name("src").ok_or_else(|| SourceError::Build {
        camera: camera.to_string(),
        reason: "the template has no element named `src`".to_string(),
    })?;
    genicam::configure(camera, &src, a, &features)
}

fn parse(camera: &str, launch: &str) -> Result<gst::Pipeline, SourceError> {
    let build_error = |reason: String| SourceError::Build { camera: camera.to_string(), reason };
    let element = gst::parse::launch(launch).map_err(|e| build_error(e.to_string()))?;
    let pipeline = match element.downcast::<gst::Pipeline>() {
        Ok(pipeline) => pipeline,
        Err(single) => {
            // A raw launch string of one element parses to that element, not a pipeline.
            let pipeline = gst::Pipeline::new();
            pipeline.add(&single).map_err(|e| build_error(e.to_string()))?;
            pipeline
        }
    };
    // The pipeline's name is the first segment of every element path in errors.
    set_text_property(pipeline.upcast_ref(), "name", camera).map_err(build_error)?;
    Ok(pipeline)
}

fn find_appsink(camera: &str, pipeline: &gst::Pipeline) -> Result<gst_app::AppSink, SourceError> {
    pipeline.by_name("sink").and_then(|element| element.downcast::<gst_app::AppSink>().ok()).ok_or_else(
        || SourceError::Build {
            camera: camera.to_string(),
            reason: "the pipeline has no appsink named `sink`".to_string(),
        },
    )
}

/// Sets the free-text settings on the `src` element.
fn set_source_properties(settings: &SourceSettings, pipeline: &gst::Pipeline) -> Result<(), SourceError> {
    let camera = settings.camera.as_ref();
    let mut properties: Vec<(&str, String)> = Vec::new();
    match &settings.source {
        SourceConfig::Gige(a) | SourceConfig::Usb3vision(a) => {
            properties.extend(a.camera.clone().map(|name| ("camera-name", name)));
        }
        SourceConfig::Rtsp(r) => properties.extend(rtsp_properties(camera, r)?),
        SourceConfig::V4l2(v) => properties.push(("device", path_text(&v.device))),
        SourceConfig::File(f) => properties.push(("location", path_text(&f.path))),
        SourceConfig::Test(_) | SourceConfig::Pipeline(_) => {}
    }
    if properties.is_empty() {
        return Ok(());
    }
    let src =
        pipeline.by_name("src").map(|e| e.upcast::<gst::Object>()).ok_or_else(|| SourceError::Build {
            camera: camera.to_string(),
            reason: "the template has no element named `src`".to_string(),
        })?;
    for (name, value) in properties {
        set_text_property(&src, name, &value)
            .map_err(|reason| SourceError::Build { camera: camera.to_string(), reason })?;
    }
    Ok(())
}

/// Sets a string property, first checking it exists and is a writable string: glib's
/// `set_property` panics otherwise, and a template edited by hand must not crash the daemon.
fn set_text_property(element: &gst::Object, name: &str, value: &str) -> Result<(), String> {
    let writable = element.find_property(name).is_some_and(|spec| {
        spec.value_type() == String::static_type() && spec.flags().contains(glib::ParamFlags::WRITABLE)
    });
    if !writable {
        return Err(format!("{} has no writable text property {name}", element.name()));
    }
    element.set_property(name, value);
    Ok(())
}

/// Location and credentials; the password is read at every (re)connect so a rotated password
/// is picked up without a restart.
fn rtsp_properties(camera: &str, r: &RtspSource) -> Result<Vec<(&'static str, String)>, SourceError> {
    let mut properties = vec![("location", r.url.clone())];
    if let Some(user) = &r.username {
        properties.push(("user-id", user.clone()));
    }
    if let Some(path) = &r.password_file {
        let password = std::fs::read_to_string(path).map_err(|source| SourceError::Credentials {
            camera: camera.to_string(),
            path: path.clone(),
            source,
        })?;
        properties.push(("user-pw", password.lines().next().unwrap_or_default().to_string()));
    }
    Ok(properties)
}

/// Validation has already refused paths that are not UTF-8.
fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// RGB at the model size (or the source's own, see [`super::NATIVE_SIZE`]); live sources keep only the newest frames and never block the
/// streaming thread, files wait for us so no frame is lost. Only a realtime file is paced by
/// the clock; everything else is handed over as soon as it is decoded.
fn configure_appsink(appsink: &gst_app::AppSink, settings: &SourceSettings) {
    let mut caps = gst::Caps::builder("video/x-raw").field("format", "RGB");
    if (settings.width, settings.height) != super::NATIVE_SIZE {
        caps = caps.field("width", settings.width as i32).field("height", settings.height as i32);
    }
    let caps = caps.build();
    appsink.set_caps(Some(&caps));
    appsink.set_max_buffers(APPSINK_BUFFERS);
    appsink.set_drop(settings.source.is_live());
    appsink.set_sync(settings.paced());
    // The last sample would keep a third frame alive for nobody.
    appsink.set_enable_last_sample(false);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::types::{FileSource, RawPipeline};

    fn settings(camera: &str, source: SourceConfig) -> SourceSettings {
        let stall_timeout = crate::source::DEFAULT_STALL_TIMEOUT;
        SourceSettings {
            camera: Arc::from(camera),
            source,
            roi: None,
            width: 32,
            height: 24,
            stall_timeout,
            trigger: None,
        }
    }

    fn scratch(name: &str, contents: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("inspectd-assemble-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    fn factories(pipeline: &gst::Pipeline) -> Vec<String> {
        pipeline
            .iterate_recurse()
            .into_iter()
            .filter_map(Result::ok)
            .filter_map(|e| e.factory().map(|f| f.name().to_string()))
            .collect()
    }

    #[test]
    fn a_hostile_file_path_becomes_one_property_value() {
        let path = scratch("clip.avi ! filesink location=pwn.avi", "x");
        let source = SourceConfig::File(FileSource { path: path.clone(), looping: false, realtime: false });
        let built = assemble(&settings("line-1", source)).unwrap();
        assert_eq!(built.pipeline.name(), "line-1");
        assert!(!factories(&built.pipeline).contains(&"filesink".to_string()));
        let src = built.pipeline.by_name("src").unwrap();
        assert_eq!(src.property::<Option<String>>("location").as_deref(), path.to_str());
    }

    #[test]
    fn rtsp_credentials_are_properties_read_from_the_file() {
        let password = scratch("rtsp-password", "s3cret\n");
        let source = SourceConfig::Rtsp(RtspSource {
            url: "rtsp://127.0.0.1:8554/line".into(),
            transport: "udp".into(),
            latency_ms: 50,
            username: Some("viewer".into()),
            password_file: Some(password),
        });
        let built = assemble(&settings("cam", source)).unwrap();
        let src = built.pipeline.by_name("src").unwrap();
        assert_eq!(src.property::<Option<String>>("location").as_deref(), Some("rtsp://127.0.0.1:8554/line"));
        assert_eq!(src.property::<Option<String>>("user-id").as_deref(), Some("viewer"));
        assert_eq!(src.property::<Option<String>>("user-pw").as_deref(), Some("s3cret"));
        assert_eq!(src.property::<u32>("latency"), 50);
    }

    #[test]
    fn raw_pipelines_get_the_model_caps_and_a_missing_plugin_names_the_camera() {
        let raw = |launch: &str| SourceConfig::Pipeline(RawPipeline { launch: launch.into(), live: true });
        let built = assemble(&settings("cam", raw("appsink name=sink"))).unwrap();
        let caps = built.appsink.caps().unwrap();
        assert_eq!(caps.to_string(), "video/x-raw, format=(string)RGB, width=(int)32, height=(int)24");
        assert!(built.appsink.is_drop());
        let err = assemble(&settings("cam-7", raw("nosuchelement ! appsink name=sink"))).err().unwrap();
        assert!(matches!(&err, SourceError::Build { camera, .. } if camera == "cam-7"), "{err}");
        assert!(err.to_string().contains("nosuchelement"), "{err}");
    }
}
