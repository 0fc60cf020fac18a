//! `inspectd bench`: per-stage milliseconds per image, images per second, and the kNN stage's
//! GFLOP/s next to the machine's measured fp32 matrix-multiply peak.
//!
//! On the CPU provider production runs a descriptor-only graph and the fused Rust kNN kernel
//! (`cfa::knn`); on a GPU provider, the descriptor + kNN graph. The benchmark times the
//! descriptor, the kNN the production path uses (`knn_ms`), the graph's kNN on the same
//! descriptors (`knn_graph_ms`) and the fused graph, so the paths can be compared.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use ndarray::{Array2, Axis, Ix3};
use ort::session::Session;
use ort::value::TensorRef;
use serde::Serialize;

use super::bench_frame::BenchView;
use super::RuntimeArgs;
use crate::cfa::blur::GaussianBlur;
use crate::cfa::descriptor::DescriptorWeights;
use crate::cfa::graph::{self, GraphShape};
use crate::cfa::knn::{Knn, KnnPrecision};
use crate::cfa::position::PositionStats;
use crate::cfa::{anomaly_map, preprocess};
use crate::model::backbone;
use crate::model::bundle::Bundle;
use crate::model::lanes::{Lanes, MAX_LANES};
use crate::model::runtime::{Provider, Runtime};
use crate::model::scorer::ImageBatch;
use crate::onnx::{Dim, ElemType, Graph, Model, Node, Tensor};
use crate::util::rng::SplitMix64;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Model bundle to benchmark.
    #[arg(long, value_name = "DIR", required_unless_present = "backbone")]
    pub model: Option<PathBuf>,
    /// Benchmark a backbone graph with a random descriptor and memory bank instead of a bundle.
    #[arg(long, value_name = "FILE", conflicts_with = "model")]
    pub backbone: Option<PathBuf>,
    /// Input size (square) with --backbone.
    #[arg(long, default_value_t = 256)]
    pub size: u32,
    /// Memory bank entries with --backbone.
    #[arg(long, default_value_t = 4096)]
    pub memory: usize,
    /// Batch sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    pub batch: Vec<usize>,
    /// Seconds to measure each batch size for (after one warm-up batch).
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Patches per kNN chunk in the generated graph.
    #[arg(long, default_value_t = graph::DEFAULT_CHUNK_ROWS)]
    pub knn_chunk: usize,
    /// Experimental, approximate: the CPU kNN kernel searches only centres within R grid cells
    /// of each patch's position (as `eval --knn-window`).
    #[arg(long, value_name = "R")]
    pub knn_window: Option<usize>,
    /// The CPU kNN's arithmetic (as `eval --knn-precision`): auto, int8 or fp32.
    #[arg(long, value_enum, default_value = "auto")]
    pub knn_precision: KnnPrecision,
    /// An image to decode in the preprocessing stage (default: a generated 640×480 PNG).
    #[arg(long, value_name = "FILE")]
    pub image: Option<PathBuf>,
    /// Benchmark whole camera frames of WIDTHxHEIGHT through a view instead (with --model):
    /// ms per frame, frames per second, and the share of stitching and masking.
    #[arg(long, value_name = "WxH", value_parser = super::train::parse_frame_size, requires = "model")]
    pub frame: Option<(u32, u32)>,
    /// With --frame: the bundle's stored view, model-size tiles, or the whole frame letterboxed.
    #[arg(long, value_enum, default_value = "stored", requires = "frame")]
    pub view: BenchView,
    /// With --frame and tiles: pixels neighbouring tiles share.
    #[arg(long, default_value_t = 32, requires = "frame")]
    pub tile_overlap: u32,
    /// Start batches this many milliseconds apart, as a camera delivers frames, instead of back
    /// to back: threads and caches go idle between them, as in the daemon at a camera's rate.
    #[arg(long, value_name = "MS", default_value_t = 0.0)]
    pub interval_ms: f64,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// What is being benchmarked.
struct Subject {
    backbone_onnx: Vec<u8>,
    shape: GraphShape,
    weights: DescriptorWeights,
    bank: Array2<f32>,
    width: u32,
    height: u32,
    sigma: f32,
    name: String,
    /// The bundle's per-position statistics, applied as `Scorer::post` does.
    position: Option<PositionStats>,
}

/// Milliseconds per image for each stage, for one batch size.
#[derive(Debug, Default, Serialize)]
struct StageReport {
    batch: usize,
    iterations: usize,
    decode_preprocess_ms: f64,
    backbone_ms: f64,
    descriptor_ms: f64,
    knn_ms: f64,
    knn_graph_ms: f64,
    map_blur_ms: f64,
    total_ms: f64,
    fused_descriptor_knn_ms: f64,
    images_per_second: f64,
    knn_gflops: f64,
    knn_fraction_of_peak: f64,
    outside_models_fraction: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    model: String,
    provider: String,
    input: String,
    memory_size: usize,
    descriptor_channels: usize,
    /// The kNN production runs here: `kernel` (CPU) or `graph` (GPU providers).
    knn_path: &'static str,
    /// `--knn-window`: the approximate position-aware search, when asked for.
    knn_window: Option<usize>,
    /// Candidates per patch of the int8 pass (re-ranked in fp32), when it runs.
    int8_candidates: Option<usize>,
    matmul_peak_gflops: f64,
    /// Images that run side by side in a batch of more than one (one-thread lanes); 0 where a
    /// batch runs one image after another.
    lanes: usize,
    /// `--interval-ms`: batches started this far apart; 0 back to back.
    interval_ms: f64,
    stages: Vec<StageReport>,
}

pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let runtime = Runtime::init(args.runtime.settings())?;
    if let (Some(frame), Some(dir)) = (args.frame, &args.model) {
        let bundle = Bundle::load(dir).context("cannot load the model bundle")?;
        let r = super::bench_frame::measure(
            &runtime,
            &bundle,
            args.view,
            frame,
            args.tile_overlap,
            args.seconds,
        )?;
        match args.json {
            true => println!("{}", serde_json::to_string_pretty(&r)?),
            false => super::bench_frame::print(&r),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let subject = load_subject(&args, &runtime)?;
    let sessions = Sessions::new(&runtime, &subject, args.knn_chunk, args.knn_window, args.knn_precision)?;
    let png = sample_png(args.image.as_ref())?;
    let peak = matmul_peak(&runtime)?;
    let mut report = Report {
        model: subject.name.clone(),
        provider: sessions.provider.clone(),
        input: format!("{}x{}", subject.width, subject.height),
        memory_size: subject.bank.ncols(),
        descriptor_channels: subject.bank.nrows(),
        knn_path: if sessions.kernel.is_some() { "kernel" } else { "graph" },
        knn_window: args.knn_window,
        int8_candidates: sessions.kernel.as_ref().and_then(|(k, _)| k.int8_candidates()),
        matmul_peak_gflops: peak,
        lanes: sessions.lanes.as_ref().map_or(0, Lanes::len),
        interval_ms: args.interval_ms,
        stages: Vec::new(),
    };
    let mut sessions = sessions;
    let interval = Duration::from_secs_f64(args.interval_ms.max(0.0) / 1e3);
    for &b in &args.batch {
        let stage = measure(&mut sessions, &subject, &png, b.max(1), args.seconds, peak, interval)?;
        report.stages.push(stage);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn load_subject(args: &BenchArgs, runtime: &Runtime) -> anyhow::Result<Subject> {
    if let Some(dir) = &args.model {
        let b = Bundle::load(dir).context("cannot load the model bundle")?;
        let m = &b.manifest;
        return Ok(Subject {
            shape: b.graph_shape(),
            width: m.input.width,
            height: m.input.height,
            sigma: m.cfa.sigma,
            name: m.model.id.clone(),
            backbone_onnx: b.backbone_onnx,
            weights: b.weights,
            bank: b.bank,
            position: b.position,
        });
    }
    let file = args.backbone.as_ref().expect("clap requires --model or --backbone");
    let bytes = std::fs::read(file).with_context(|| format!("cannot read backbone {}", file.display()))?;
    let desc = backbone::describe(runtime, &file.display().to_string(), &bytes)?;
    let c: usize = desc.channels.iter().sum();
    let grid = (args.size.div_ceil(4) as usize, args.size.div_ceil(4) as usize);
    let weights = DescriptorWeights::init(c, c, 0);
    let mut rng = SplitMix64::new(1);
    let bank = Array2::from_shape_simple_fn((c, args.memory), || rng.unit() - 0.5);
    Ok(Subject {
        backbone_onnx: bytes,
        shape: GraphShape { channels: desc.channels, grid, k: 3 },
        weights,
        bank,
        width: args.size,
        height: args.size,
        sigma: 4.0,
        name: format!("{} (random descriptor)", desc.name),
        position: None,
    })
}

struct Sessions {
    backbone: Session,
    descriptor: Session,
    knn: Session,
    fused: Session,
    /// The CPU kNN kernel and its threads, as `model::scorer` runs it on the CPU provider.
    kernel: Option<(Knn, usize)>,
    /// One-thread lanes for batches of more than one image, as `model::scorer` has them.
    lanes: Option<Lanes>,
    provider: String,
}

impl Sessions {
    fn new(
        runtime: &Runtime,
        s: &Subject,
        chunk: usize,
        window: Option<usize>,
        precision: KnnPrecision,
    ) -> anyhow::Result<Sessions> {
        let descriptor = graph::descriptor_model(s.shape, &s.weights)?.encode();
        let knn = graph::knn_model(s.shape, s.bank.view(), chunk)?.encode();
        let fused = graph::descriptor_knn_model(s.shape, &s.weights, s.bank.view(), chunk)?.encode();
        let (backbone, provider) = runtime.session("backbone", &s.backbone_onnx)?;
        let threads = runtime.threads();
        let kernel = match (provider == Provider::Cpu, window) {
            (false, _) => None,
            (true, None) => Some((Knn::new(s.bank.view(), s.shape.k), threads)),
            (true, Some(r)) => {
                let knn = Knn::new(s.bank.view(), s.shape.k).windowed(s.shape.grid, r).context(
                    "--knn-window needs a memory bank with one centre per patch position (gamma_c 1)",
                )?;
                Some((knn, threads))
            }
        };
        let kernel = match kernel {
            Some((knn, threads)) => {
                Some((knn.with_precision(s.bank.view(), precision).map_err(anyhow::Error::msg)?, threads))
            }
            None => None,
        };
        let lanes = match threads.min(MAX_LANES) {
            n if n >= 2 && kernel.is_some() => Some(Lanes::new(
                runtime,
                n,
                ("backbone", &s.backbone_onnx),
                ("descriptor (bench)", &descriptor),
            )?),
            _ => None,
        };
        Ok(Sessions {
            kernel,
            lanes,
            backbone,
            descriptor: runtime.session("descriptor (bench)", &descriptor)?.0,
            knn: runtime.session("knn (bench)", &knn)?.0,
            fused: runtime.session("descriptor+knn (bench)", &fused)?.0,
            provider: provider.to_string(),
        })
    }
}

/// Accumulated wall time per stage over all measured batches.
#[derive(Default)]
struct Totals {
    prep: Duration,
    backbone: Duration,
    descriptor: Duration,
    knn: Duration,
    knn_graph: Duration,
    post: Duration,
    fused: Duration,
    /// Images the graph comparisons (`knn_graph`, `fused`) ran on.
    graph_images: usize,
}

fn measure(
    ss: &mut Sessions,
    s: &Subject,
    png: &[u8],
    b: usize,
    seconds: f64,
    peak: f64,
    interval: Duration,
) -> anyhow::Result<StageReport> {
    let blur = GaussianBlur::new(s.sigma);
    one_batch(ss, s, png, b, &blur, &mut Totals::default())?; // warm-up at this batch size
    let mut totals = Totals::default();
    let started = Instant::now();
    let mut iterations = 0;
    while iterations < 3 || started.elapsed().as_secs_f64() < seconds {
        let began = Instant::now();
        one_batch(ss, s, png, b, &blur, &mut totals)?;
        iterations += 1;
        std::thread::sleep(interval.saturating_sub(began.elapsed()));
    }
    let per_image = |d: Duration| d.as_secs_f64() * 1e3 / (iterations * b) as f64;
    let per_graph_image = |d: Duration| d.as_secs_f64() * 1e3 / totals.graph_images.max(1) as f64;
    let mut r = StageReport {
        batch: b,
        iterations,
        decode_preprocess_ms: per_image(totals.prep),
        backbone_ms: per_image(totals.backbone),
        descriptor_ms: per_image(totals.descriptor),
        knn_ms: per_image(totals.knn),
        knn_graph_ms: per_graph_image(totals.knn_graph),
        map_blur_ms: per_image(totals.post),
        fused_descriptor_knn_ms: per_graph_image(totals.fused),
        ..StageReport::default()
    };
    r.total_ms = r.decode_preprocess_ms + r.backbone_ms + r.descriptor_ms + r.knn_ms + r.map_blur_ms;
    r.images_per_second = 1e3 / r.total_ms;
    let (h, w) = s.shape.grid;
    let flops = 2.0 * (h * w) as f64 * s.bank.ncols() as f64 * s.bank.nrows() as f64;
    r.knn_gflops = flops / (r.knn_ms * 1e-3) / 1e9;
    r.knn_fraction_of_peak = r.knn_gflops / peak;
    r.outside_models_fraction = (r.decode_preprocess_ms + r.map_blur_ms) / r.total_ms;
    Ok(r)
}

fn one_batch(
    ss: &mut Sessions,
    s: &Subject,
    png: &[u8],
    b: usize,
    blur: &GaussianBlur,
    t: &mut Totals,
) -> anyhow::Result<()> {
    let clock = Instant::now();
    let mut images = Vec::with_capacity(b);
    for _ in 0..b {
        let decoded = image::load_from_memory(png)?.to_rgb8();
        images.push(preprocess::resize(&decoded, s.width, s.height));
    }
    let batch = ImageBatch::from_images(&images, s.width, s.height, &preprocess::Normalisation::IMAGENET);
    t.prep += clock.elapsed();

    if b >= 2 && ss.lanes.is_some() {
        return lane_models(ss, s, &batch, blur, t);
    }
    // As `Scorer::nearest`: on the CPU kernel path each image runs on its own.
    let per_run = if ss.kernel.is_some() { 1 } else { b };
    let image_len = 3 * batch.height * batch.width;
    for data in batch.data.chunks(per_run * image_len) {
        models(ss, s, data, data.len() / image_len, blur, t)?;
    }
    Ok(())
}

/// Backbone, descriptor, kNN (kernel and graph), map and blur, and the fused graph, for one
/// run of `b` normalised images.
fn models(
    ss: &mut Sessions,
    s: &Subject,
    data: &[f32],
    b: usize,
    blur: &GaussianBlur,
    t: &mut Totals,
) -> anyhow::Result<()> {
    if ss.kernel.is_some() {
        crate::util::workers::keep_adopted_off_caller(); // as `Scorer` does on the CPU provider
    }
    let clock = Instant::now();
    let shape = [b, 3, s.height as usize, s.width as usize];
    let feats = ss.backbone.run(ort::inputs!["image" => TensorRef::from_array_view((shape, data))?])?;
    t.backbone += clock.elapsed();

    let clock = Instant::now();
    let phi =
        ss.descriptor.run(ort::inputs!["f1" => &feats["f1"], "f2" => &feats["f2"], "f3" => &feats["f3"]])?;
    t.descriptor += clock.elapsed();

    let clock = Instant::now();
    let knn = ss.knn.run(ort::inputs!["phi" => &phi["phi"]])?;
    let mut topk = knn["topk"].try_extract_array::<f32>()?.into_dimensionality::<Ix3>()?.to_owned();
    let graph_time = clock.elapsed();
    t.knn_graph += graph_time;
    t.graph_images += b;
    match &ss.kernel {
        Some((kernel, threads)) => {
            let clock = Instant::now();
            let (_, values) = phi["phi"].try_extract_tensor::<f32>()?;
            let (h, w) = s.shape.grid;
            let mut nearest = ndarray::Array3::zeros((b, h * w, kernel.k()));
            kernel.nearest(values, b, h * w, nearest.as_slice_mut().expect("contiguous"), *threads);
            t.knn += clock.elapsed();
            topk = nearest;
        }
        None => t.knn += graph_time,
    }

    post(s, &topk, blur, t);

    let clock = Instant::now();
    let fused =
        ss.fused.run(ort::inputs!["f1" => &feats["f1"], "f2" => &feats["f2"], "f3" => &feats["f3"]])?;
    std::hint::black_box(fused["topk"].try_extract_array::<f32>()?.sum());
    t.fused += clock.elapsed();
    Ok(())
}

/// As `Scorer::post`: each image's patch scores, standardised where the bundle says so, the
/// upsampled, blurred map and its maximum.
fn post(s: &Subject, nearest: &ndarray::Array3<f32>, blur: &GaussianBlur, t: &mut Totals) {
    let clock = Instant::now();
    let (h, w) = s.shape.grid;
    for one in nearest.axis_iter(Axis(0)) {
        let mut patch = anomaly_map::patch_scores(one, h, w);
        if let Some(position) = &s.position {
            position.apply(&mut patch);
        }
        let map = anomaly_map::anomaly_map(patch.view(), s.height as usize, s.width as usize, blur);
        std::hint::black_box(anomaly_map::image_score(map.view()));
    }
    t.post += clock.elapsed();
}

/// As `Scorer::nearest` with lanes: the batch's images side by side through backbone and
/// descriptor (their wall time split between the two as the lanes' summed times are), one kNN
/// over all of them, maps. The graph comparisons run on the batch's first image alone.
fn lane_models(
    ss: &mut Sessions,
    s: &Subject,
    batch: &ImageBatch,
    blur: &GaussianBlur,
    t: &mut Totals,
) -> anyhow::Result<()> {
    let (kernel, threads) = ss.kernel.as_ref().expect("lanes run with the kernel");
    let (h, w) = s.shape.grid;
    let b = batch.count;
    let mut phi = vec![0.0f32; b * kernel.channels() * h * w];
    let clock = Instant::now();
    let lanes = ss.lanes.as_mut().expect("lanes");
    let times = lanes
        .descriptors(&batch.data, b, (batch.height, batch.width), &mut phi)
        .map_err(|e| anyhow::anyhow!("{} failed: {}", e.stage, e.reason))?;
    let (backbone, descriptor) = times.split(clock.elapsed());
    t.backbone += backbone;
    t.descriptor += descriptor;

    let clock = Instant::now();
    let mut nearest = ndarray::Array3::zeros((b, h * w, kernel.k()));
    kernel.nearest(&phi, b, h * w, nearest.as_slice_mut().expect("contiguous"), *threads);
    t.knn += clock.elapsed();

    post(s, &nearest, blur, t);

    // The graph paths for comparison, on one image, outside the totals above.
    let image_len = 3 * batch.height * batch.width;
    let mut graphs = Totals::default();
    models(ss, s, &batch.data[..image_len], 1, blur, &mut graphs)?;
    t.knn_graph += graphs.knn_graph;
    t.fused += graphs.fused;
    t.graph_images += graphs.graph_images;
    Ok(())
}

/// The best fp32 GFLOP/s of ONNX Runtime's own matrix multiply on large square matrices: the
/// ceiling the kNN's matmul is compared against.
fn matmul_peak(runtime: &Runtime) -> anyhow::Result<f64> {
    let mut best: f64 = 0.0;
    for n in [1024usize, 2048] {
        let mut g = Graph::new("peak");
        g.input("a", ElemType::Float, &[Dim::Fixed(n as i64), Dim::Fixed(n as i64)]);
        let mut rng = SplitMix64::new(3);
        let b: Vec<f32> = (0..n * n).map(|_| rng.unit()).collect();
        g.initializer(Tensor::float("b", &[n as i64, n as i64], b)?);
        g.node(Node::new("MatMul", &["a", "b"], &["c"]));
        g.output("c", ElemType::Float, &[Dim::Fixed(n as i64), Dim::Fixed(n as i64)]);
        let (mut session, _) = runtime.session("matmul peak", &Model::new(g).encode())?;
        let a: Vec<f32> = (0..n * n).map(|_| rng.unit()).collect();
        // The best of at least a second of runs: a peak, not a typical value.
        let started = Instant::now();
        let mut i = 0;
        while i < 6 || started.elapsed() < Duration::from_millis(1500) {
            i += 1;
            let clock = Instant::now();
            let out =
                session.run(ort::inputs!["a" => TensorRef::from_array_view(([n, n], a.as_slice()))?])?;
            std::hint::black_box(&out["c"]);
            let gflops = 2.0 * (n * n * n) as f64 / clock.elapsed().as_secs_f64() / 1e9;
            if i > 0 {
                best = best.max(gflops);
            }
        }
    }
    Ok(best)
}

/// PNG bytes to decode in the preprocessing stage: the given image, or a generated 640×480
/// photo-like gradient with noise (so compression is realistic).
fn sample_png(path: Option<&PathBuf>) -> anyhow::Result<Vec<u8>> {
    if let Some(p) = path {
        return std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    }
    let mut rng = SplitMix64::new(9);
    let img = image::RgbImage::from_fn(640, 480, |x, y| {
        let n = (rng.unit() * 24.0) as u32;
        image::Rgb([((x / 3 + n) % 256) as u8, ((y / 2 + n) % 256) as u8, ((x + y) / 5 % 256) as u8])
    });
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)?;
    Ok(bytes)
}

fn print_table(r: &Report) {
    println!(
        "model {}  input {}  memory {}x{}  provider {}",
        r.model, r.input, r.descriptor_channels, r.memory_size, r.provider
    );
    println!("fp32 matmul peak (ONNX Runtime, measured): {:.1} GFLOP/s", r.matmul_peak_gflops);
    let window = r.knn_window.map(|w| format!(", window {w} (approximate)")).unwrap_or_default();
    let window = match r.int8_candidates {
        Some(m) => format!("{window}, int8 with {m} candidates re-ranked in fp32"),
        None => format!("{window}, fp32"),
    };
    println!(
        "kNN path: {}{window} (knn ms; the graph's exact kNN on the same descriptors: knn graph)",
        r.knn_path
    );
    println!(
        "{:>5} {:>10} {:>9} {:>10} {:>8} {:>9} {:>9} {:>9} {:>9} {:>8} {:>11} {:>8}",
        "batch",
        "prep ms",
        "backbone",
        "descriptor",
        "knn ms",
        "knn graph",
        "map+blur",
        "total ms",
        "fused d+k",
        "img/s",
        "knn GFLOP/s",
        "of peak"
    );
    for s in &r.stages {
        println!(
            "{:>5} {:>10.2} {:>9.2} {:>10.2} {:>8.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>8.1} {:>11.1} {:>7.0}%",
            s.batch,
            s.decode_preprocess_ms,
            s.backbone_ms,
            s.descriptor_ms,
            s.knn_ms,
            s.knn_graph_ms,
            s.map_blur_ms,
            s.total_ms,
            s.fused_descriptor_knn_ms,
            s.images_per_second,
            s.knn_gflops,
            s.knn_fraction_of_peak * 100.0
        );
    }
    for s in &r.stages {
        println!(
            "batch {}: preprocessing + map/blur are {:.1}% of the total",
            s.batch,
            s.outside_models_fraction * 100.0
        );
    }
    if r.int8_candidates.is_some() || r.knn_window.is_some() {
        println!(
            "(knn GFLOP/s count the full fp32 search's work, which the int8 pass or the window does not \
             do, so they can exceed the fp32 peak)"
        );
    }
}
