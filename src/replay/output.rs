//! What replay writes: one line per scored frame (JSONL or CSV), the summary, and label-based
//! metrics.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::decision::{AlarmEvent, AlarmKind, Decision};
use crate::eval::metrics::{auroc, best_f1_threshold, f1_at, quantile};
use crate::flow::frame::{Region, Verdict};

/// One scored frame. Only media time and scores: no wall-clock time, so the same input and
/// model give byte-identical output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FrameLine {
    pub input: String,
    pub frame: u64,
    pub pts_ms: f64,
    pub score: f32,
    pub score_norm: f32,
    pub threshold: f32,
    pub verdict: Verdict,
    pub regions: Vec<Region>,
    /// Alarm events this frame raised or cleared, as the daemon would have.
    pub alarms: Vec<AlarmLine>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlarmLine {
    pub event: &'static str,
    pub alarm_id: String,
}

impl AlarmLine {
    pub fn from_event(e: &AlarmEvent) -> AlarmLine {
        let event = if e.kind == AlarmKind::Raised { "raised" } else { "cleared" };
        AlarmLine { event, alarm_id: e.alarm_id.clone() }
    }
}

impl FrameLine {
    pub fn new(input: &str, frame: u64, pts_ms: f64, score_norm: f32, d: &Decision) -> FrameLine {
        FrameLine {
            input: input.to_string(),
            frame,
            pts_ms,
            score: d.score,
            score_norm,
            threshold: d.threshold,
            verdict: d.verdict,
            regions: d.regions.clone(),
            alarms: d.alarm.iter().map(AlarmLine::from_event).collect(),
        }
    }
}

/// Output format of the per-frame file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Jsonl,
    Csv,
}

/// Writes frame lines as JSONL or CSV.
pub struct LineWriter {
    out: Box<dyn Write + Send>,
    format: Format,
}

impl LineWriter {
    pub fn new(out: Box<dyn Write + Send>, format: Format) -> std::io::Result<LineWriter> {
        let mut w = LineWriter { out, format };
        if format == Format::Csv {
            writeln!(w.out, "input,frame,pts_ms,score,score_norm,threshold,verdict,regions,alarms")?;
        }
        Ok(w)
    }

    pub fn write(&mut self, line: &FrameLine) -> std::io::Result<()> {
        match self.format {
            Format::Jsonl => {
                serde_json::to_writer(&mut self.out, line)?;
                writeln!(self.out)
            }
            Format::Csv => {
                let alarms: Vec<String> =
                    line.alarms.iter().map(|a| format!("{}:{}", a.event, a.alarm_id)).collect();
                let verdict = match line.verdict {
                    Verdict::Ng => "NG",
                    Verdict::Ok => "OK",
                    Verdict::Invalid => "invalid",
                };
                writeln!(
                    self.out,
                    "{},{},{},{},{},{},{},{},{}",
                    csv_field(&line.input),
                    line.frame,
                    line.pts_ms,
                    line.score,
                    line.score_norm,
                    line.threshold,
                    verdict,
                    line.regions.len(),
                    alarms.join(" ")
                )
            }
        }
    }

    pub fn finish(mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Score distribution of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Distribution {
    pub min: f32,
    pub p50: f32,
    pub p90: f32,
    pub p99: f32,
    pub max: f32,
}

impl Distribution {
    pub fn of(scores: &[f32]) -> Distribution {
        if scores.is_empty() {
            return Distribution::default();
        }
        let q = |p| quantile(scores, p).unwrap_or(f64::NAN) as f32;
        Distribution { min: q(0.0), p50: q(0.5), p90: q(0.9), p99: q(0.99), max: q(1.0) }
    }
}

/// Labels for `--labels`: a list of `{frame, label}` or of `{start, end, label}` ranges
/// (end exclusive); label 1 (or true) marks a defective frame. Frames not mentioned are good.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum LabelEntry {
    Frame { frame: u64, label: LabelValue },
    Range { start: u64, end: u64, label: LabelValue },
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(untagged)]
pub enum LabelValue {
    Bool(bool),
    Int(u8),
}

impl LabelValue {
    fn defective(self) -> bool {
        matches!(self, LabelValue::Bool(true) | LabelValue::Int(1..))
    }
}

/// Reads a labels file; the error names it.
pub fn read_labels(path: &Path) -> anyhow::Result<Vec<LabelEntry>> {
    let text =
        std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read labels {}: {e}", path.display()))?;
    serde_json::from_slice(&text).map_err(|e| {
        anyhow::anyhow!(
            "labels {} must be a JSON list of {{frame, label}} or {{start, end, label}}: {e}",
            path.display()
        )
    })
}

/// Whether frame `i` is labelled defective.
pub fn is_defective(labels: &[LabelEntry], i: u64) -> bool {
    labels.iter().any(|l| match l {
        LabelEntry::Frame { frame, label } => *frame == i && label.defective(),
        LabelEntry::Range { start, end, label } => (*start..*end).contains(&i) && label.defective(),
    })
}

/// Frame-level metrics against labels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelMetrics {
    pub frames: usize,
    pub defective: usize,
    pub auroc: Option<f64>,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// The threshold that would have maximised F1, and that F1.
    pub best_f1_threshold: Option<f32>,
    pub best_f1: Option<f64>,
}

pub fn label_metrics(scores: &[f32], labels: &[bool], threshold: f32) -> LabelMetrics {
    let c = f1_at(scores, labels, threshold);
    let best = best_f1_threshold(scores, labels);
    LabelMetrics {
        frames: scores.len(),
        defective: labels.iter().filter(|l| **l).count(),
        auroc: auroc(scores, labels),
        precision: c.precision,
        recall: c.recall,
        f1: c.f1,
        best_f1_threshold: best.map(|b| b.0),
        best_f1: best.map(|b| b.1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_accept_frames_and_ranges() {
        let labels: Vec<LabelEntry> =
            serde_json::from_str(r#"[{"frame": 3, "label": 1}, {"start": 10, "end": 12, "label": true}, {"frame": 4, "label": 0}]"#).unwrap();
        let bad: Vec<u64> = (0..15).filter(|&i| is_defective(&labels, i)).collect();
        assert_eq!(bad, vec![3, 10, 11]);
    }

    #[test]
    fn csv_quotes_awkward_names() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("plain.mkv"), "plain.mkv");
    }
}
