//! GenICam control of GigE / USB3 Vision cameras, through aravis' feature API on the very
//! camera `aravissrc` opened (setting its `camera-name` opens it), before the pipeline starts
//! acquisition. Nothing from the config is pasted into a launch string.
//!
//! Each value is checked against what the camera itself reports: a feature it does not
//! implement, a number outside its bounds, or a name that is not one of its enumeration
//! entries is an error naming the camera, the feature and the camera's range. Such an error
//! is not transient: the camera would refuse it again on every reconnect.

use aravis::{Camera, Device, GcBoolean, GcCommand, GcEnumeration, GcFloat, GcInteger};
use aravis::{CameraExt as _, DeviceExt as _};
use gstreamer as gst;
use gstreamer::glib;
use gstreamer::glib::prelude::*;

use super::error::SourceError;
use crate::config::types::{AravisSource, FeatureValue, TriggerConfig, TriggerInput};

/// One feature to set, with the config key it comes from (for errors).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Feature {
    pub name: String,
    pub value: FeatureValue,
    pub key: String,
}

/// The features `a` and the camera's trigger settings ask for, in the order they are set:
/// trigger first (TriggerSource and TriggerActivation apply to the selected trigger), then
/// the typed keys, then the free `features` table.
pub(crate) fn requested(a: &AravisSource, trigger: Option<&TriggerConfig>, gige: bool) -> Vec<Feature> {
    let mut out = Vec::new();
    let mut push = |name: &str, value: FeatureValue, key: &str| {
        out.push(Feature { name: name.to_string(), value, key: key.to_string() })
    };
    let text = |s: &str| FeatureValue::Text(s.to_string());
    if let Some(t) = trigger {
        push("TriggerSelector", text("FrameStart"), "mode");
        push("TriggerMode", text("On"), "mode");
        let source = match t.input {
            TriggerInput::Software => "Software".to_string(),
            TriggerInput::Line => t.line.clone().unwrap_or_else(|| "Line1".into()),
        };
        push("TriggerSource", FeatureValue::Text(source), "trigger.input");
        if let Some(activation) = &t.activation {
            push("TriggerActivation", text(activation), "trigger.activation");
        }
    }
    if gige {
        if let Some(size) = a.packet_size {
            push("GevSCPSPacketSize", FeatureValue::Int(size), "source.packet_size");
        }
        if let Some(delay) = a.packet_delay {
            push("GevSCPD", FeatureValue::Int(delay), "source.packet_delay");
        }
    }
    for (name, value) in &a.features {
        push(name, value.clone(), &format!("source.features.{name}"));
    }
    out
}

/// Sets exposure, gain and `features` on the camera `src` (an aravissrc) has open, checking
/// each against the camera; returns that camera, for software triggers. `None` when the
/// element has no camera (not found): starting the pipeline then fails with aravis' reason.
pub(crate) fn configure(
    camera_id: &str,
    src: &gst::Element,
    a: &AravisSource,
    features: &[Feature],
) -> Result<Option<Camera>, SourceError> {
    let Some(camera) =
        src.property::<Option<glib::Object>>("camera").and_then(|o| o.downcast::<Camera>().ok())
    else {
        return Ok(None);
    };
    let fail = |feature: &str, key: &str, reason: String| SourceError::Feature {
        camera: camera_id.to_string(),
        feature: feature.to_string(),
        key: key.to_string(),
        reason,
    };
    if let Some(us) = a.exposure_us {
        let (lo, hi) = camera
            .exposure_time_bounds()
            .map_err(|e| fail("ExposureTime", "source.exposure_us", e.to_string()))?;
        check_range(us, lo, hi).map_err(|r| fail("ExposureTime", "source.exposure_us", r))?;
        camera
            .set_exposure_time(us)
            .map_err(|e| fail("ExposureTime", "source.exposure_us", e.to_string()))?;
    }
    if let Some(db) = a.gain_db {
        let (lo, hi) = camera.gain_bounds().map_err(|e| fail("Gain", "source.gain_db", e.to_string()))?;
        check_range(db, lo, hi).map_err(|r| fail("Gain", "source.gain_db", r))?;
        camera.set_gain(db).map_err(|e| fail("Gain", "source.gain_db", e.to_string()))?;
    }
    if let Some(fps) = a.fps {
        // aravissrc sets AcquisitionFrameRate from the caps; check it first for a clear error.
        if let Ok((lo, hi)) = camera.frame_rate_bounds() {
            check_range(fps, lo, hi).map_err(|r| fail("AcquisitionFrameRate", "source.fps", r))?;
        }
    }
    let device =
        camera.device().ok_or_else(|| fail("(device)", "source", "the camera has no device".into()))?;
    check_pixel_format(&device, &a.pixel_format)
        .map_err(|r| fail("PixelFormat", "source.pixel_format", r))?;
    for f in features {
        set(&device, &f.name, &f.value).map_err(|reason| fail(&f.name, &f.key, reason))?;
    }
    // aravissrc sets the frame rate when it negotiates caps, and aravis turns the FrameStart
    // trigger off to do so; it applies its `features` property after that, so the checked
    // values go there too (typed values and GenICam names only: no spaces to split on).
    if !features.is_empty() {
        src.set_property("features", features_string(features));
    }
    Ok(Some(camera))
}

/// The GenICam PixelFormat entries a config pixel format may be called by cameras.
fn genicam_formats(pixel_format: &str) -> &'static [&'static str] {
    match pixel_format {
        "mono8" => &["Mono8"],
        "rgb8" => &["RGB8", "RGB8Packed"],
        "bayer_bggr8" => &["BayerBG8"],
        "bayer_rggb8" => &["BayerRG8"],
        "bayer_grbg8" => &["BayerGR8"],
        "bayer_gbrg8" => &["BayerGB8"],
        _ => &[],
    }
}

/// The configured pixel format must be one the camera offers; otherwise caps negotiation
/// fails later with a vague "not negotiated" on every reconnect.
fn check_pixel_format(device: &Device, pixel_format: &str) -> Result<(), String> {
    let Ok(entries) = device.dup_available_enumeration_feature_values_as_strings("PixelFormat") else {
        return Ok(()); // no PixelFormat enumeration to check against
    };
    let entries: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
    let wanted = genicam_formats(pixel_format);
    if entries.is_empty() || wanted.iter().any(|w| entries.iter().any(|e| e == w)) {
        return Ok(());
    }
    Err(format!(
        "{pixel_format} ({}) is not one of the camera's formats: {}",
        wanted.join(" or "),
        entries.join(", ")
    ))
}

/// Sets one feature by its node type, after checking the value against the camera.
fn set(device: &Device, name: &str, value: &FeatureValue) -> Result<(), String> {
    let node = device.feature(name).ok_or("the camera does not implement this feature")?;
    let glib_err = |e: glib::Error| e.to_string();
    if node.is::<GcEnumeration>() {
        let entries: Vec<String> = device
            .dup_available_enumeration_feature_values_as_strings(name)
            .map_err(glib_err)?
            .iter()
            .map(|s| s.to_string())
            .collect();
        let FeatureValue::Text(entry) = value else {
            return Err(format!("{value} is not one of the camera's entries: {}", entries.join(", ")));
        };
        if !entries.iter().any(|e| e == entry) {
            return Err(format!("{value} is not one of the camera's entries: {}", entries.join(", ")));
        }
        device.set_string_feature_value(name, entry).map_err(glib_err)
    } else if node.is::<GcBoolean>() {
        let FeatureValue::Bool(b) = value else { return Err(format!("{value} is not true or false")) };
        device.set_boolean_feature_value(name, *b).map_err(glib_err)
    } else if node.is::<GcInteger>() {
        let FeatureValue::Int(v) = value else { return Err(format!("{value} is not an integer")) };
        let (lo, hi) = device.integer_feature_bounds(name).map_err(glib_err)?;
        if *v < lo || *v > hi {
            return Err(format!("{v} is outside the camera's range {lo}..={hi}"));
        }
        device.set_integer_feature_value(name, *v).map_err(glib_err)
    } else if node.is::<GcFloat>() {
        let v = match value {
            FeatureValue::Float(x) => *x,
            FeatureValue::Int(i) => *i as f64,
            _ => return Err(format!("{value} is not a number")),
        };
        let (lo, hi) = device.float_feature_bounds(name).map_err(glib_err)?;
        check_range(v, lo, hi)?;
        device.set_float_feature_value(name, v).map_err(glib_err)
    } else if node.is::<GcCommand>() {
        Err("is a command, not a value; inspectd executes TriggerSoftware itself".into())
    } else {
        let FeatureValue::Text(t) = value else { return Err(format!("{value} is not text")) };
        device.set_string_feature_value(name, t).map_err(glib_err)
    }
}

/// `Name=value Name=value`, as `arv_device_set_features_from_string` reads it.
fn features_string(features: &[Feature]) -> String {
    let value = |v: &FeatureValue| match v {
        FeatureValue::Text(t) => t.clone(),
        other => other.to_string(),
    };
    features.iter().map(|f| format!("{}={}", f.name, value(&f.value))).collect::<Vec<_>>().join(" ")
}

fn check_range(v: f64, lo: f64, hi: f64) -> Result<(), String> {
    if v >= lo && v <= hi {
        Ok(())
    } else {
        Err(format!("{v} is outside the camera's range {lo}..={hi}"))
    }
}

/// Fires the camera's software trigger (GenICam TriggerSoftware).
pub(crate) fn fire(camera: &Camera) -> Result<(), String> {
    camera.software_trigger().map_err(|e| e.to_string())
}
