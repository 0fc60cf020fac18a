//! `inspectd demo-data`: writes synthetic defect datasets in MVTec-AD layout for trying
//! inspectd without a camera.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::synth::{write_category, Category, SynthSpec};

#[derive(Debug, Args)]
pub struct DemoDataArgs {
    /// Output root; each category becomes a folder inside it.
    #[arg(long, short, value_name = "DIR")]
    pub out: PathBuf,
    /// Categories to write (default: all).
    #[arg(long, value_delimiter = ',')]
    pub category: Vec<Category>,
    /// Image size in pixels (square).
    #[arg(long, default_value_t = 256)]
    pub size: u32,
    /// Good training images per category.
    #[arg(long, default_value_t = 120)]
    pub train: usize,
    /// Good test images per category.
    #[arg(long, default_value_t = 30)]
    pub test_good: usize,
    /// Test images per defect type (scratch, stain, hole, foreign).
    #[arg(long, default_value_t = 10)]
    pub defects: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(args: DemoDataArgs) -> anyhow::Result<ExitCode> {
    let categories = if args.category.is_empty() { Category::all().to_vec() } else { args.category.clone() };
    for category in categories {
        let spec = SynthSpec {
            category,
            size: args.size,
            train_good: args.train,
            test_good: args.test_good,
            test_defect_per_type: args.defects,
            seed: args.seed,
        };
        let summary = write_category(&spec, &args.out)?;
        eprintln!("wrote {} ({} files)", summary.category_dir.display(), summary.files_written);
    }
    Ok(ExitCode::SUCCESS)
}
