//! Turns an appsink sample into a [`Frame`]: tightly packed RGB, whatever row stride GStreamer
//! chose (rows of RGB are padded to 4 bytes, so a 3-pixel-wide frame has 12-byte rows).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use gstreamer as gst;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;

use crate::flow::frame::Frame;

/// Copies the sample's pixels into a frame. The error says what was wrong with the sample;
/// callers add the camera or file.
pub(crate) fn to_frame(sample: &gst::Sample, camera: &Arc<str>, seq: u64) -> Result<Frame, String> {
    let buffer = sample.buffer().ok_or("the sample has no buffer")?;
    let caps = sample.caps().ok_or("the sample has no caps")?;
    let info = gst_video::VideoInfo::from_caps(caps).map_err(|e| format!("unusable caps {caps}: {e}"))?;
    if info.format() != gst_video::VideoFormat::Rgb {
        return Err(format!("expected RGB frames, got {:?}", info.format()));
    }
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info)
        .map_err(|e| format!("cannot map the frame: {e}"))?;
    let rgb = pack_rows(frame.plane_data(0).map_err(|e| e.to_string())?, frame.plane_stride()[0], &info)?;
    Ok(Frame {
        camera: camera.clone(),
        seq,
        pts: buffer.pts().map(|t| Duration::from_nanos(t.nseconds())),
        captured_at: SystemTime::now(),
        rgb,
        width: info.width(),
        height: info.height(),
        part: None,
    })
}

/// Drops the padding at the end of each row.
fn pack_rows(data: &[u8], stride: i32, info: &gst_video::VideoInfo) -> Result<Vec<u8>, String> {
    let row = info.width() as usize * 3;
    let stride = usize::try_from(stride).map_err(|_| format!("negative stride {stride}"))?;
    let height = info.height() as usize;
    if stride < row || data.len() < stride * (height.saturating_sub(1)) + row {
        return Err(format!("{} bytes do not hold {height} rows of {row} at stride {stride}", data.len()));
    }
    let mut rgb = Vec::with_capacity(row * height);
    for y in 0..height {
        rgb.extend_from_slice(&data[y * stride..y * stride + row]);
    }
    Ok(rgb)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3×2 RGB frame: GStreamer pads each 9-byte row to 12 bytes.
    #[test]
    fn padded_rows_are_packed_tightly() {
        gst::init().unwrap();
        let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, 3, 2).build().unwrap();
        assert_eq!(info.stride()[0], 12);
        let mut data = vec![0u8; info.size()];
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = if i % 12 < 9 { (i % 12 + 10 * (i / 12)) as u8 } else { 0xEE };
        }
        let mut buffer = gst::Buffer::from_mut_slice(data);
        buffer.get_mut().unwrap().set_pts(gst::ClockTime::from_mseconds(40));
        let sample = gst::Sample::builder().buffer(&buffer).caps(&info.to_caps().unwrap()).build();
        let frame = to_frame(&sample, &Arc::from("cam"), 7).unwrap();
        assert_eq!((frame.width, frame.height, frame.seq), (3, 2, 7));
        assert_eq!(frame.pts, Some(Duration::from_millis(40)));
        let expected: Vec<u8> = (0..9).chain(10..19).collect();
        assert_eq!(frame.rgb, expected);
    }

    #[test]
    fn a_non_rgb_sample_is_refused() {
        gst::init().unwrap();
        let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Gray8, 4, 4).build().unwrap();
        let buffer = gst::Buffer::from_mut_slice(vec![0u8; info.size()]);
        let sample = gst::Sample::builder().buffer(&buffer).caps(&info.to_caps().unwrap()).build();
        assert!(to_frame(&sample, &Arc::from("cam"), 0).unwrap_err().contains("expected RGB"));
    }
}
