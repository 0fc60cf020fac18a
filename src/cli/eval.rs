//! `inspectd eval --model DIR --data CATEGORY_DIR`: image/pixel AUROC, AUPRO, F1 at the
//! bundle's threshold, per defect type, and throughput.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use serde::Serialize;

use super::RuntimeArgs;
use crate::cfa::knn::KnnPrecision;
use crate::eval::evaluate::{evaluate, CategoryReport};
use crate::model::bundle::Bundle;
use crate::model::runtime::Runtime;
use crate::model::scorer::{KnnAudit, Scorer, ScorerOptions};
use crate::train::select::EpochRecord;

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Model bundle; give one per --data in the same order, or one for all.
    #[arg(long, required = true, value_name = "DIR")]
    pub model: Vec<PathBuf>,
    /// MVTec-AD-layout category folder (test/<good|defect>/, ground_truth/<defect>/*_mask.png).
    #[arg(long, required = true, value_name = "DIR")]
    pub data: Vec<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Experimental, approximate: search only memory-bank centres within R grid cells of each
    /// patch's own position (CPU kNN kernel; banks trained with gamma_c 1). See README.
    #[arg(long, value_name = "R")]
    pub knn_window: Option<usize>,
    /// The CPU kNN's arithmetic: auto (int8 candidates + exact re-rank where the CPU has
    /// AVX-512 VNNI, else fp32), int8, or fp32. See README "Reduced precision".
    #[arg(long, value_enum, default_value = "auto")]
    pub knn_precision: KnnPrecision,
    /// With int8: also run the exact search and report how many patches got the exact K
    /// nearest distances (doubles the kNN work).
    #[arg(long)]
    pub knn_audit: bool,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

#[derive(Debug, Serialize)]
struct Summary {
    categories: Vec<CategoryOut>,
    mean: Option<Mean>,
}

/// One category's figures, with how the model's epoch was chosen (from its manifest).
#[derive(Debug, Serialize)]
struct CategoryOut {
    #[serde(flatten)]
    report: CategoryReport,
    /// Epoch whose weights the bundle holds, when it was chosen on the validation set.
    selected_epoch: Option<usize>,
    /// The training-time validation curve (held-out good images plus synthetic defects).
    validation: Vec<EpochRecord>,
    knn: KnnOut,
}

/// How the kNN ran: where, with how many int8 candidates, and the audit when asked for.
#[derive(Debug, Serialize)]
struct KnnOut {
    path: String,
    int8_candidates: Option<usize>,
    audit: Option<KnnAudit>,
}

#[derive(Debug, Serialize)]
struct Mean {
    image_auroc: Option<f64>,
    pixel_auroc: Option<f64>,
    aupro: Option<f64>,
}

pub fn run(args: EvalArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.model.len() == 1 || args.model.len() == args.data.len(),
        "give one --model for all --data folders, or one per --data ({} models, {} data folders)",
        args.model.len(),
        args.data.len()
    );
    let runtime = Runtime::init(args.runtime.settings())?;
    let mut categories = Vec::new();
    for (i, data) in args.data.iter().enumerate() {
        let model = &args.model[i.min(args.model.len() - 1)];
        let bundle = Bundle::load(model).context("cannot load the model bundle")?;
        let options = ScorerOptions {
            knn_window: args.knn_window,
            knn_precision: args.knn_precision,
            knn_audit: args.knn_audit,
            ..ScorerOptions::default()
        };
        let mut scorer = Scorer::with_options(&runtime, &bundle, options)?;
        let report =
            evaluate(&mut scorer, &bundle, data).with_context(|| format!("evaluating {}", data.display()))?;
        let training = bundle.manifest.training.as_ref();
        categories.push(CategoryOut {
            knn: KnnOut {
                path: format!("{:?}", scorer.knn_path()).to_lowercase(),
                int8_candidates: scorer.int8_candidates(),
                audit: scorer.knn_audit(),
            },
            report,
            selected_epoch: training.and_then(|t| t.selected_epoch),
            validation: training.map(|t| t.validation.clone()).unwrap_or_default(),
        });
    }
    let mean = (categories.len() > 1).then(|| Mean {
        image_auroc: mean(categories.iter().map(|c| c.report.image_auroc)),
        pixel_auroc: mean(categories.iter().map(|c| c.report.pixel_auroc)),
        aupro: mean(categories.iter().map(|c| c.report.aupro)),
    });
    let summary = Summary { categories, mean };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_table(&summary);
    }
    Ok(ExitCode::SUCCESS)
}

fn mean(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let v: Option<Vec<f64>> = values.collect();
    v.filter(|v| !v.is_empty()).map(|v| v.iter().sum::<f64>() / v.len() as f64)
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{:.1}", v * 100.0))
}

fn print_table(s: &Summary) {
    println!(
        "{:<16} {:>6} {:>9} {:>9} {:>7} {:>6} {:>6} {:>6} {:>8}",
        "category", "images", "img AUROC", "pix AUROC", "AUPRO", "prec", "recall", "F1", "img/s"
    );
    for out in &s.categories {
        let c = &out.report;
        let t = c.at_threshold.as_ref();
        println!(
            "{:<16} {:>6} {:>9} {:>9} {:>7} {:>6} {:>6} {:>6} {:>8.1}",
            c.category,
            c.images,
            pct(c.image_auroc),
            pct(c.pixel_auroc),
            pct(c.aupro),
            pct(t.map(|t| t.precision)),
            pct(t.map(|t| t.recall)),
            pct(t.map(|t| t.f1)),
            c.images_per_second
        );
        for d in &c.per_defect {
            println!(
                "  {:<14} {:>6} {:>9} {:>9} {:>7} {:>6} {:>6}",
                d.defect,
                d.images,
                pct(d.image_auroc),
                pct(d.pixel_auroc),
                "",
                "",
                pct(d.recall)
            );
        }
    }
    for out in &s.categories {
        if let Some(e) = out.selected_epoch {
            let curve: Vec<String> =
                out.validation.iter().map(|r| format!("{}:{:.3}", r.epoch, r.image_auroc)).collect();
            println!(
                "{}: epoch {e} kept; validation image AUROC by epoch {}",
                out.report.category,
                curve.join(" ")
            );
        }
    }
    for out in &s.categories {
        let knn = match out.knn.int8_candidates {
            Some(m) => format!("int8, {m} candidates re-ranked in fp32"),
            None => "fp32".to_string(),
        };
        let audit = out.knn.audit.map(|a| {
            format!(
                "; exact K nearest for {:.4} % of {} patches (largest excess {:.2e})",
                a.fraction() * 100.0,
                a.patches,
                a.max_excess
            )
        });
        println!("{}: kNN {} {knn}{}", out.report.category, out.knn.path, audit.unwrap_or_default());
    }
    if let Some(m) = &s.mean {
        println!(
            "{:<16} {:>6} {:>9} {:>9} {:>7}",
            "mean",
            "",
            pct(m.image_auroc),
            pct(m.pixel_auroc),
            pct(m.aupro)
        );
    }
    println!("(percentages; F1/precision/recall at the bundle's threshold, '-' when not calibrated)");
}
