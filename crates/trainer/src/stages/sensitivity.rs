//! `sensitivity`: which layers lose the accuracy. For each scheme, the float model and the whole
//! scheme (PTQ) are the references; then each quantized layer or op ([`QuantUnit`]) in turn is
//! left in float (or given a fallback scheme's quantizers), calibrated as PTQ and scored on the
//! test set: its metric, the SQNR of its logits against the float model's, how often it predicts
//! what the float model does. The most sensitive units are then kept out together, one more per
//! row: a mixed-precision plan with its size, and the mapping rules that make it.
//!
//! Writes `sensitivity-<scheme>/report.{md,json}`; each score is appended to `scores.jsonl` as
//! it is measured, so an interrupted analysis continues with `--resume`.

use std::io::Write;
use std::path::Path;

use burn::tensor::Device;
use quant::QuantMapping;
use quant::qat::{
    LayerError, QuantUnit, agreement, compare_layers, quant_tensors, quant_units, sqnr_db,
};
use regex::Regex;
use serde::{Deserialize, Serialize};

use super::{Context, Existing, calibrated, float_model};
use crate::report::write_file;
use crate::task::{Evaluation, Part, Task, TaskNet};
use crate::{PtqConfig, Scheme, TrainerError};

/// What `sensitivity` analyses: its command-line options.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SensitivityOptions {
    /// Only this scheme of the config (by name, e.g. `w4a4`); all of them by default.
    #[arg(long)]
    pub scheme: Option<String>,
    /// Give the layers this scheme's default quantizers instead of float (a preset or a `.toml`).
    #[arg(long)]
    pub fallback: Option<String>,
    /// How many of the most sensitive layers the plan leaves out, one more per row.
    #[arg(long, default_value_t = 3)]
    pub top: usize,
    /// Only layers whose path matches this regex (e.g. `^bert\.encoder\.layer\.0\.`).
    #[arg(long)]
    pub layers: Option<String>,
    /// What ranks the layers: the SQNR of the logits against the float model's (blind to the
    /// labels and continuous, so a small test set's noise does not pick the plan) or the metric.
    #[arg(long, value_enum, default_value = "sqnr")]
    pub rank_by: RankBy,
    /// The plan's size budget in KiB: a layer that would take the model past it is passed over
    /// for the next one.
    #[arg(long)]
    pub budget_kib: Option<f64>,
    /// Each quantizer a unit of its own (a layer's weight apart from its output), to tell which
    /// of the two loses the accuracy.
    #[arg(long)]
    pub per_tensor: bool,
    /// The split that scores the models: validation (default), so that choosing the plan does not
    /// peek at the test set the stages report on, or test.
    #[arg(long, value_enum, default_value = "valid")]
    pub split: Split,
}

/// The split `sensitivity` scores on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// The validation split.
    #[default]
    Valid,
    /// The test split.
    Test,
}

impl Split {
    fn part(self) -> Part {
        match self {
            Split::Valid => Part::Valid,
            Split::Test => Part::Test,
        }
    }
}

impl SensitivityOptions {
    /// The units of `net` this analysis leaves out: layers and ops, or single quantizers.
    fn units_of<M: burn::module::Module>(&self, net: &M) -> Vec<QuantUnit> {
        if self.per_tensor {
            quant_tensors(net)
        } else {
            quant_units(net)
        }
    }
}

/// What ranks the units, most sensitive first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum RankBy {
    /// The SQNR of the model's logits with the unit left out: continuous, and blind to the
    /// labels, so a small test set's noise does not pick the plan.
    #[default]
    Sqnr,
    /// The task's metric with the unit left out (ties: SQNR).
    Metric,
}

/// One model's scores against the float model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// The task's headline metric on the test set, in `[0, 1]`.
    pub value: f64,
    /// SQNR of the test logits against the float model's, dB; `None` (JSON `null`) when they
    /// are identical.
    pub sqnr_db: Option<f64>,
    /// Share of test items on which it predicts what the float model predicts.
    pub agreement: f64,
    /// Deployed size, bytes.
    pub size_bytes: usize,
}

/// The scheme with one unit left out (in float, or at the fallback's quantizers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitScore {
    /// The unit (layer or op path).
    pub unit: String,
    /// Its quantizers' module paths.
    pub quantizers: Vec<String>,
    /// The model's scores with this unit left out.
    pub score: Score,
}

/// The scheme with its `kept` most sensitive units left out together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanRow {
    /// The units left out, most sensitive first.
    pub kept: Vec<String>,
    /// The model's scores.
    pub score: Score,
}

/// What one line of `scores.jsonl` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Line {
    /// The first line: what the scores were measured for (a resume must match it).
    Setup {
        scheme: String,
        fallback: Option<String>,
        layers: Option<String>,
        #[serde(default)]
        per_tensor: bool,
        #[serde(default)]
        split: Split,
        /// How every variant is calibrated (batches, bias correction): scores from another
        /// calibration are not comparable.
        #[serde(default)]
        calibration: PtqConfig,
    },
    Unit(UnitScore),
    Plan(PlanRow),
}

/// The analysis of one scheme, as `report.json` holds it.
#[derive(Debug, Clone, Serialize)]
pub struct SensitivityReport {
    /// The scheme analysed.
    pub scheme: String,
    /// What the units were given instead: `float` or a scheme's name.
    pub fallback: String,
    /// The headline metric's name.
    pub metric: String,
    /// The split the scores are on.
    pub split: Split,
    /// Whether every variant was bias-corrected after calibration (`ptq.bias_correction`).
    pub bias_correction: bool,
    /// Whether every variant's rounding was learned after calibration (`ptq.adaround`).
    pub adaround: bool,
    /// The float model.
    pub float: Score,
    /// The whole scheme, calibrated (PTQ).
    pub quantized: Score,
    /// The whole scheme's error layer by layer, in forward order (each layer with a bias).
    pub layers: Vec<LayerError>,
    /// Every unit left out in turn, in model order.
    pub units: Vec<UnitScore>,
    /// What ranked the units.
    pub ranked_by: RankBy,
    /// Unit names, most sensitive first.
    pub ranking: Vec<String>,
    /// The plan's size budget, KiB, if any.
    pub budget_kib: Option<f64>,
    /// The top units left out together, one more per row.
    pub plan: Vec<PlanRow>,
    /// The plan's last row as a scheme file (the scheme's mapping with its units' rules
    /// appended), also written as `plan.toml` beside the report; empty without a plan.
    pub plan_toml: String,
}

/// Runs the analysis for every scheme the options select.
pub fn sensitivity<T: Task>(
    ctx: &Context<T>,
    options: &SensitivityOptions,
) -> Result<(), TrainerError> {
    let filter = options
        .layers
        .as_deref()
        .map(Regex::new)
        .transpose()
        .map_err(|e| TrainerError::Config {
            origin: "--layers".into(),
            message: e.to_string(),
        })?;
    let fallback = options
        .fallback
        .as_deref()
        .map(Scheme::resolve)
        .transpose()?;
    let schemes = ctx.schemes()?;
    let selected: Vec<&Scheme> = match &options.scheme {
        None => schemes.iter().collect(),
        Some(name) => {
            let found: Vec<&Scheme> = schemes
                .iter()
                .filter(|s| s.name.eq_ignore_ascii_case(name) || s.slug() == *name)
                .collect();
            if found.is_empty() {
                let names: Vec<&str> = schemes.iter().map(|s| s.name.as_str()).collect();
                return Err(TrainerError::Config {
                    origin: "--scheme".into(),
                    message: format!(
                        "`{name}` is not a scheme of this run (its schemes: {})",
                        names.join(", ")
                    ),
                });
            }
            found
        }
    };
    let float = FloatReference::measure(ctx, options.split.part(), &ctx.device)?;
    for scheme in selected {
        let report = analyse(
            ctx,
            scheme,
            fallback.as_ref(),
            filter.as_ref(),
            options,
            &float,
        )?;
        let dir = ctx.stage_dir("sensitivity", Some(scheme));
        let markdown = report_markdown(&report, &ctx.config.model_name(), &ctx.config.data.name);
        println!("\n{markdown}");
        write_file(&dir.join("report.md"), &markdown)?;
        if !report.plan_toml.is_empty() {
            write_file(&dir.join("plan.toml"), &report.plan_toml)?;
        }
        write_file(
            &dir.join("report.json"),
            &serde_json::to_string_pretty(&report).expect("a report serializes"),
        )?;
    }
    Ok(())
}

/// The float model's scores and logits on the analysis' split, what every variant is compared
/// with.
struct FloatReference<N> {
    /// The float model, which every variant is built from.
    net: N,
    part: Part,
    evaluation: Evaluation,
    logits: Vec<f32>,
    size_bytes: usize,
}

impl<N: TaskNet> FloatReference<N> {
    fn measure<T: Task<Net = N>>(
        ctx: &Context<T>,
        part: Part,
        device: &Device,
    ) -> Result<Self, TrainerError> {
        let float = float_model(ctx, device, "the analysis starts")?;
        let (evaluation, logits) = ctx.task.evaluate_with_logits(&float, part, device);
        Ok(FloatReference {
            net: float.clone(),
            part,
            evaluation,
            logits,
            size_bytes: quant::qat::storage_bytes(&float),
        })
    }

    fn score(&self) -> Score {
        Score {
            value: self.evaluation.value,
            sqnr_db: None,
            agreement: 1.0,
            size_bytes: self.size_bytes,
        }
    }

    /// `net`'s scores against the float model's.
    fn compare<T: Task<Net = N>>(&self, task: &T, net: &N, device: &Device) -> Score {
        let (evaluation, logits) = task.evaluate_with_logits(net, self.part, device);
        let width = task.labels().len();
        Score {
            value: evaluation.value,
            sqnr_db: sqnr_db(&self.logits, &logits).filter(|db| db.is_finite()),
            agreement: agreement(&self.logits, &logits, width).unwrap_or(0.0),
            size_bytes: quant::qat::storage_bytes(net),
        }
    }
}

/// `scheme` with `mapping`, named for messages.
fn variant(scheme: &Scheme, mapping: QuantMapping) -> Scheme {
    Scheme {
        name: scheme.name.clone(),
        mapping,
    }
}

fn analyse<T: Task>(
    ctx: &Context<T>,
    scheme: &Scheme,
    fallback: Option<&Scheme>,
    filter: Option<&Regex>,
    options: &SensitivityOptions,
    float: &FloatReference<T::Net>,
) -> Result<SensitivityReport, TrainerError> {
    let device = &ctx.device;
    let tag = format!("[sensitivity {}]", scheme.name);
    let dir = ctx.stage_dir("sensitivity", Some(scheme));
    let setup = Line::Setup {
        scheme: scheme.name.clone(),
        fallback: fallback.map(|f| f.name.clone()),
        layers: options.layers.clone(),
        per_tensor: options.per_tensor,
        split: options.split,
        calibration: ctx.config.ptq.clone(),
    };

    println!("{tag} calibrating the whole scheme");
    let quantized_net = calibrated(ctx, float.net.clone(), scheme, device)?;
    let quantized = float.compare(&ctx.task, &quantized_net, device);
    let all_units = options.units_of(&quantized_net);
    let loader = ctx
        .task
        .loader(options.split.part(), None)
        .to_device(device);
    let layers = compare_layers(
        &float.net,
        &quantized_net,
        loader.iter().flatten(),
        |net: &T::Net, batch| net.calibration_step(batch),
    );
    drop(quantized_net);
    let units: Vec<&QuantUnit> = all_units
        .iter()
        .filter(|u| filter.is_none_or(|re| re.is_match(&u.name)))
        .collect();
    if units.is_empty() {
        return Err(TrainerError::Config {
            origin: "--layers".into(),
            message: format!(
                "no quantized layer of the model matches (its layers: {}{})",
                all_units
                    .iter()
                    .take(8)
                    .map(|u| u.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                if all_units.len() > 8 {
                    format!(", … {} in all", all_units.len())
                } else {
                    String::new()
                }
            ),
        });
    }
    // Opened once the options are known good, so a rejected run leaves nothing to resume.
    let mut journal = Journal::open(&dir.join("scores.jsonl"), ctx.existing, setup)?;
    let metric = float.evaluation.metric;
    println!(
        "{tag} float {metric} {:.2}%, {} {:.2}% (SQNR {}); {} units to leave out in turn",
        100.0 * float.evaluation.value,
        scheme.name,
        100.0 * quantized.value,
        db_text(quantized.sqnr_db),
        units.len()
    );
    let fallback_mapping = fallback.map(|f| &f.mapping);
    check_rules_reach(float.net.clone(), (scheme, options), &all_units, &units)?;
    // A unit's mapping must change that unit and nothing else: check it on each model too, so a
    // model that names its quantizers some other way fails here instead of measuring nothing.
    let build = |left_out: &[&QuantUnit]| -> Result<T::Net, TrainerError> {
        let mapping = scheme
            .mapping
            .clone()
            .with_units(left_out, fallback_mapping);
        let net = calibrated(ctx, float.net.clone(), &variant(scheme, mapping), device)?;
        let expected = match fallback_mapping {
            Some(_) => all_units.clone(),
            None => without(&all_units, left_out),
        };
        let got = options.units_of(&net);
        if got != expected {
            return Err(TrainerError::Unsupported(format!(
                "leaving {} out of {} changed other quantizers than its own (the model looks its quantizers up under other paths than its modules'): expected {:?}, got {:?}",
                left_out
                    .iter()
                    .map(|u| u.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                scheme.name,
                names(&expected),
                names(&got),
            )));
        }
        Ok(net)
    };

    let mut scores: Vec<UnitScore> = Vec::with_capacity(units.len());
    let (mut measured, started) = (0u32, std::time::Instant::now());
    for (i, unit) in units.iter().enumerate() {
        let score = match journal.unit(&unit.name) {
            Some(done) => done,
            None => {
                measured += 1;
                let net = build(&[unit])?;
                let score = UnitScore {
                    unit: unit.name.clone(),
                    quantizers: unit.quantizers.clone(),
                    score: float.compare(&ctx.task, &net, device),
                };
                journal.append(&Line::Unit(score.clone()))?;
                score
            }
        };
        println!(
            "{tag} {}/{} {} left out: {metric} {:.2}% ({:+.2} vs {}), SQNR {}, agrees with float on {:.1}%",
            i + 1,
            units.len(),
            unit.name,
            100.0 * score.score.value,
            100.0 * (score.score.value - quantized.value),
            scheme.name,
            db_text(score.score.sqnr_db),
            100.0 * score.score.agreement,
        );
        scores.push(score);
        let left = units[i + 1..]
            .iter()
            .filter(|u| journal.unit(&u.name).is_none())
            .count();
        if measured > 0 && left > 0 {
            let per_unit = started.elapsed() / measured;
            println!("{tag} {}", time_left(per_unit, left));
        }
    }

    let ranking = rank(&scores, options.rank_by);
    let chosen = within_budget(&ranking, &scores, quantized.size_bytes, options);
    let mut plan = Vec::new();
    for k in 1..=chosen.len() {
        let kept: Vec<String> = chosen[..k].to_vec();
        let row = match journal.plan(&kept) {
            Some(done) => done,
            None => {
                let left_out: Vec<&QuantUnit> = kept
                    .iter()
                    .map(|name| {
                        *units
                            .iter()
                            .find(|u| u.name == *name)
                            .expect("a ranked unit")
                    })
                    .collect();
                let net = build(&left_out)?;
                let row = PlanRow {
                    kept: kept.clone(),
                    score: float.compare(&ctx.task, &net, device),
                };
                journal.append(&Line::Plan(row.clone()))?;
                row
            }
        };
        println!(
            "{tag} plan: {} left out: {metric} {:.2}%, SQNR {}, {:.1} KiB",
            kept.join(", "),
            100.0 * row.score.value,
            db_text(row.score.sqnr_db),
            row.score.size_bytes as f64 / 1024.0
        );
        plan.push(row);
    }
    let plan_toml = plan.last().map_or(String::new(), |row| {
        let kept: Vec<&QuantUnit> = row
            .kept
            .iter()
            .filter_map(|name| units.iter().find(|u| u.name == *name).copied())
            .collect();
        scheme_toml(&scheme.mapping.clone().with_units(&kept, fallback_mapping))
    });
    Ok(SensitivityReport {
        scheme: scheme.name.clone(),
        fallback: fallback.map_or("float".into(), |f| f.name.clone()),
        metric: metric.into(),
        split: options.split,
        bias_correction: ctx.config.ptq.bias_correction,
        adaround: ctx.config.ptq.adaround.is_some(),
        float: float.score(),
        quantized,
        layers,
        units: scores,
        ranked_by: options.rank_by,
        ranking,
        budget_kib: options.budget_kib,
        plan,
        plan_toml,
    })
}

/// Checks on the model that every selected unit's rule reaches that unit's quantizers and no
/// other's: with all of them in float, exactly the others are left. (A fallback's rule has the
/// same pattern, and its quantizers would otherwise be indistinguishable from the scheme's.)
fn check_rules_reach<N: TaskNet>(
    float: N,
    (scheme, options): (&Scheme, &SensitivityOptions),
    all_units: &[QuantUnit],
    units: &[&QuantUnit],
) -> Result<(), TrainerError> {
    let net = float.quantized(&scheme.mapping.clone().with_units(units, None))?;
    let left = options.units_of(&net);
    let expected = without(all_units, units);
    if left == expected {
        return Ok(());
    }
    let missed: Vec<&str> = left
        .iter()
        .filter(|u| units.iter().any(|l| l.name == u.name))
        .map(|u| u.name.as_str())
        .collect();
    Err(TrainerError::Unsupported(format!(
        "the mapping rules of {} do not reach their quantizers in {} (the model looks them up under other paths than its modules'): {}",
        if missed.is_empty() {
            "some units".to_string()
        } else {
            missed.join(", ")
        },
        scheme.name,
        if missed.is_empty() {
            format!(
                "expected {:?} left, got {:?}",
                names(&expected),
                names(&left)
            )
        } else {
            "still quantized with every unit in float".into()
        }
    )))
}

/// `all` without the units named in `left_out`: what a model keeps with those in float.
fn without(all: &[QuantUnit], left_out: &[&QuantUnit]) -> Vec<QuantUnit> {
    all.iter()
        .filter(|u| !left_out.iter().any(|l| l.name == u.name))
        .cloned()
        .collect()
}

fn names(units: &[QuantUnit]) -> Vec<&str> {
    units.iter().map(|u| u.name.as_str()).collect()
}

/// Unit names, most sensitive first: those whose leaving out recovers the most, by `by` (the
/// other criterion breaks ties, then model order).
pub fn rank(scores: &[UnitScore], by: RankBy) -> Vec<String> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    let db = |s: &UnitScore| s.score.sqnr_db.unwrap_or(f64::INFINITY);
    let metric = |s: &UnitScore| s.score.value;
    order.sort_by(|&a, &b| {
        let (x, y) = (&scores[a], &scores[b]);
        let (first, second) = match by {
            RankBy::Sqnr => (db(y).total_cmp(&db(x)), metric(y).total_cmp(&metric(x))),
            RankBy::Metric => (metric(y).total_cmp(&metric(x)), db(y).total_cmp(&db(x))),
        };
        first.then(second).then(a.cmp(&b))
    });
    order.into_iter().map(|i| scores[i].unit.clone()).collect()
}

/// The plan's units: the first `options.top` of `ranking` whose sizes, each measured alone,
/// keep the model within `options.budget_kib` (every one of them without a budget).
pub fn within_budget(
    ranking: &[String],
    scores: &[UnitScore],
    quantized_bytes: usize,
    options: &SensitivityOptions,
) -> Vec<String> {
    let mut size = quantized_bytes as f64;
    let mut chosen = Vec::new();
    for name in ranking {
        if chosen.len() == options.top {
            break;
        }
        let Some(unit) = scores.iter().find(|s| s.unit == *name) else {
            continue;
        };
        let grown = size + unit.score.size_bytes as f64 - quantized_bytes as f64;
        if options.budget_kib.is_some_and(|kib| grown > kib * 1024.0) {
            continue;
        }
        size = grown;
        chosen.push(name.clone());
    }
    chosen
}

/// `mapping` as a scheme file (`schemes = ["…/plan.toml"]`).
pub fn scheme_toml(mapping: &QuantMapping) -> String {
    toml::to_string(mapping).expect("a mapping serializes as TOML")
}

/// How long the units still to measure will take at `per_unit` each, for the progress lines.
pub fn time_left(per_unit: std::time::Duration, left: usize) -> String {
    let seconds = (per_unit.as_secs_f64() * left as f64).round() as u64;
    let total = if seconds >= 60 {
        format!("{} min {} s", seconds / 60, seconds % 60)
    } else {
        format!("{seconds} s")
    };
    format!(
        "{:.1} s per unit, {left} to go: about {total} left",
        per_unit.as_secs_f64()
    )
}

fn db_text(db: Option<f64>) -> String {
    db.map_or("∞ (identical)".into(), |db| format!("{db:.1} dB"))
}

fn percent(value: f64) -> String {
    format!("{:.2}%", 100.0 * value)
}

fn kib(bytes: usize) -> String {
    format!("{:.1} KiB", bytes as f64 / 1024.0)
}

/// The report as Markdown: the references, every unit by sensitivity, the plan and its rules.
pub fn report_markdown(report: &SensitivityReport, model: &str, data: &str) -> String {
    let metric = &report.metric;
    let out = if report.fallback == "float" {
        "in float".to_string()
    } else {
        format!("at {}", report.fallback)
    };
    let mut md = format!(
        "# Sensitivity of {} ({model} on {data}, {} {metric})\n\n\
         Each unit (a layer's weight and output quantizers, or an op's) left {out} in turn, the rest \
         of {} calibrated as PTQ{}; SQNR and agreement compare the logits with the float model's.\n\n\
         | model | {metric} | Δ vs {} | SQNR vs float | agrees with float | size |\n|---|---|---|---|---|---|\n",
        report.scheme,
        match report.split {
            Split::Valid => "validation",
            Split::Test => "test",
        },
        report.scheme,
        match (report.adaround, report.bias_correction) {
            (true, true) => ", its rounding learned (AdaRound) and bias-corrected",
            (true, false) => ", its rounding learned (AdaRound)",
            (false, true) => " and bias-corrected",
            (false, false) => "",
        },
        report.scheme
    );
    let row = |name: &str, s: &Score| {
        format!(
            "| {name} | {} | {:+.2} | {} | {:.1}% | {} |\n",
            percent(s.value),
            100.0 * (s.value - report.quantized.value),
            db_text(s.sqnr_db),
            100.0 * s.agreement,
            kib(s.size_bytes)
        )
    };
    md += &row("float", &report.float);
    md += &row(
        &format!("{} (every unit)", report.scheme),
        &report.quantized,
    );
    md += &format!(
        "\n## Units, most sensitive first (by {})\n\n| rank | unit {out} | quantizers | {metric} | Δ vs {} | SQNR vs float | agrees with float | size |\n|---|---|---|---|---|---|---|---|\n",
        match report.ranked_by {
            RankBy::Sqnr => "SQNR",
            RankBy::Metric => metric.as_str(),
        },
        report.scheme
    );
    for (rank, name) in report.ranking.iter().enumerate() {
        let unit = report
            .units
            .iter()
            .find(|u| u.unit == *name)
            .expect("ranked");
        md += &format!(
            "| {} | `{}` | {} | {} | {:+.2} | {} | {:.1}% | {} |\n",
            rank + 1,
            unit.unit,
            unit.quantizers.len(),
            percent(unit.score.value),
            100.0 * (unit.score.value - report.quantized.value),
            db_text(unit.score.sqnr_db),
            100.0 * unit.score.agreement,
            kib(unit.score.size_bytes)
        );
    }
    if !report.plan.is_empty() {
        md += &format!(
            "\n## The most sensitive units left {out} together{}\n\n| units | {metric} | Δ vs {} | SQNR vs float | size |\n|---|---|---|---|---|\n",
            report
                .budget_kib
                .map_or(String::new(), |kib| format!(", within {kib} KiB")),
            report.scheme
        );
        for plan in &report.plan {
            md += &format!(
                "| {} | {} | {:+.2} | {} | {} |\n",
                plan.kept.join(", "),
                percent(plan.score.value),
                100.0 * (plan.score.value - report.quantized.value),
                db_text(plan.score.sqnr_db),
                kib(plan.score.size_bytes)
            );
        }
        md += "\nThe last row as a scheme: `plan.toml` beside this report (run it with \
               `--set 'schemes=[\"<its path>\"]'`, or copy its `[[rules]]` into a scheme file).\n";
    }
    if !report.layers.is_empty() {
        md += &format!(
            "\n## {}, layer by layer\n\nEach layer's output before its activation and output \
             quantizer, against the float model's: the SQNR, and the same with only the \
             per-channel mean of the error as the noise (the systematic part, which \
             `ptq.bias_correction` removes; close to the SQNR: the error is mostly a mean \
             shift).\n\n| layer | channels | SQNR vs float | mean shift |\n|---|---:|---:|---:|\n",
            report.scheme
        );
        for layer in &report.layers {
            md += &format!(
                "| `{}` | {} | {} | {} |\n",
                layer.layer,
                layer.channels,
                db_text(finite(layer.sqnr_db)),
                db_text(finite(layer.shift_db))
            );
        }
    }
    md
}

/// `None` for an infinite ratio (no error), as the other scores write it.
fn finite(db: f64) -> Option<f64> {
    db.is_finite().then_some(db)
}

/// `scores.jsonl`: scores appended as they are measured, read back by a resumed analysis.
struct Journal {
    file: std::fs::File,
    path: std::path::PathBuf,
    done: Vec<Line>,
}

impl Journal {
    /// Opens the journal under the run's policy for existing outputs: refuse, resume (keeping
    /// the scores of the same setup), or start over.
    fn open(path: &Path, existing: Existing, setup: Line) -> Result<Self, TrainerError> {
        let dir = path.parent().expect("a journal lives in a stage folder");
        let has_outputs = path.is_file() || dir.join("report.json").is_file();
        let mut done = Vec::new();
        let mut torn = false;
        match existing {
            _ if !has_outputs => {}
            Existing::Refuse => {
                return Err(TrainerError::Io {
                    path: dir.to_path_buf(),
                    message: "has outputs of an earlier analysis; pass --resume to continue (or reuse) it, or --fresh to start over".into(),
                });
            }
            Existing::Fresh => {
                std::fs::remove_dir_all(dir).map_err(|e| TrainerError::io(dir, e))?;
            }
            Existing::Resume => {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                torn = !text.is_empty() && !text.ends_with('\n');
                for (number, line) in text.lines().enumerate() {
                    match serde_json::from_str::<Line>(line) {
                        Ok(line) => done.push(line),
                        // A line cut short by an interrupted write: measured again.
                        Err(e) => {
                            eprintln!("warning: {}:{}: skipped ({e})", path.display(), number + 1)
                        }
                    }
                }
                if let Some(first) = done.first()
                    && *first != setup
                {
                    return Err(TrainerError::Io {
                        path: path.to_path_buf(),
                        message: format!(
                            "holds scores of another analysis ({first:?}, not {setup:?}); pass --fresh to start over"
                        ),
                    });
                }
            }
        }
        std::fs::create_dir_all(dir).map_err(|e| TrainerError::io(dir, e))?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| TrainerError::io(path, e))?;
        let mut journal = Journal {
            file,
            path: path.to_path_buf(),
            done,
        };
        if torn {
            // End the torn line, so the next score starts a line of its own.
            journal
                .file
                .write_all(b"\n")
                .map_err(|e| TrainerError::io(path, e))?;
        }
        if journal.done.is_empty() {
            journal.append(&setup)?;
        }
        Ok(journal)
    }

    /// Appends `line` and makes it durable before the analysis goes on.
    fn append(&mut self, line: &Line) -> Result<(), TrainerError> {
        let mut text = serde_json::to_string(line).expect("a score serializes");
        text.push('\n');
        self.file
            .write_all(text.as_bytes())
            .and_then(|_| self.file.sync_data())
            .map_err(|e| TrainerError::io(&self.path, e))?;
        self.done.push(line.clone());
        Ok(())
    }

    fn unit(&self, name: &str) -> Option<UnitScore> {
        self.done.iter().find_map(|line| match line {
            Line::Unit(score) if score.unit == name => Some(score.clone()),
            _ => None,
        })
    }

    fn plan(&self, kept: &[String]) -> Option<PlanRow> {
        self.done.iter().find_map(|line| match line {
            Line::Plan(row) if row.kept == kept => Some(row.clone()),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(name: &str, value: f64, db: Option<f64>) -> UnitScore {
        UnitScore {
            unit: name.into(),
            quantizers: vec![format!("{name}.output_quant")],
            score: Score {
                value,
                sqnr_db: db,
                agreement: 0.9,
                size_bytes: 100,
            },
        }
    }

    #[test]
    fn units_rank_by_what_leaving_them_out_recovers_then_the_other_criterion_then_model_order() {
        let scores = [
            unit("a", 0.80, Some(20.0)),
            unit("b", 0.85, Some(10.0)),
            unit("c", 0.80, Some(25.0)),
            unit("d", 0.80, Some(25.0)),
            unit("e", 0.80, None),
            unit("f", 0.82, Some(25.0)),
        ];
        assert_eq!(
            rank(&scores, RankBy::Metric),
            ["b", "f", "e", "c", "d", "a"]
        );
        // No SQNR: the logits are the float model's, the most any unit can recover.
        assert_eq!(rank(&scores, RankBy::Sqnr), ["e", "f", "c", "d", "a", "b"]);
    }

    #[test]
    fn the_plan_passes_over_units_that_would_break_the_budget() {
        let mut scores = vec![
            unit("big", 0.9, Some(30.0)),
            unit("small", 0.9, Some(20.0)),
            unit("medium", 0.9, Some(10.0)),
        ];
        // 100 bytes quantized; each unit alone adds what its size says.
        scores[0].score.size_bytes = 100 + 4096;
        scores[1].score.size_bytes = 100 + 100;
        scores[2].score.size_bytes = 100 + 1000;
        let ranking = rank(&scores, RankBy::Sqnr);
        let options = |top, budget_kib| SensitivityOptions {
            top,
            budget_kib,
            ..Default::default()
        };
        assert_eq!(
            within_budget(&ranking, &scores, 100, &options(3, None)),
            ranking
        );
        assert_eq!(
            within_budget(&ranking, &scores, 100, &options(2, None)),
            ["big", "small"]
        );
        // 1.5 KiB: not `big`; `small` and `medium` together add 1,100 bytes to 100.
        assert_eq!(
            within_budget(&ranking, &scores, 100, &options(3, Some(1.5))),
            ["small", "medium"]
        );
        assert_eq!(
            within_budget(&ranking, &scores, 100, &options(3, Some(0.1))),
            Vec::<String>::new()
        );
    }

    #[test]
    fn the_time_left_is_the_units_to_go_at_the_pace_so_far() {
        let pace = std::time::Duration::from_millis(2_900);
        assert_eq!(
            time_left(pace, 66),
            "2.9 s per unit, 66 to go: about 3 min 11 s left"
        );
        assert_eq!(
            time_left(pace, 2),
            "2.9 s per unit, 2 to go: about 6 s left"
        );
    }

    /// A plan, written as a scheme file, reads back as the same mapping, and validates.
    #[test]
    fn a_plan_round_trips_through_a_scheme_file() {
        let units = [
            QuantUnit {
                name: "blocks.3.conv1".into(),
                quantizers: vec!["blocks.3.conv1.weight_quant".into()],
            },
            QuantUnit {
                name: "input_quant".into(),
                quantizers: vec!["input_quant.quant".into()],
            },
        ];
        let kept: Vec<&QuantUnit> = units.iter().collect();
        let w8a8 = QuantMapping::w8a8();
        for fallback in [None, Some(&w8a8)] {
            let plan = QuantMapping::w4a4().with_units(&kept, fallback);
            let text = scheme_toml(&plan);
            let parsed: QuantMapping = toml::from_str(&text).expect(&text);
            assert_eq!(parsed, plan, "{text}");
            parsed.validate().unwrap();
        }
    }

    #[test]
    fn a_resumed_journal_keeps_the_same_setups_scores_and_refuses_another() {
        let dir = std::env::temp_dir().join(format!("trainer-journal-{}", std::process::id()));
        let path = dir.join("scores.jsonl");
        let setup = |fallback: Option<&str>| Line::Setup {
            scheme: "W4A4".into(),
            fallback: fallback.map(String::from),
            layers: None,
            per_tensor: false,
            split: Split::Valid,
            calibration: PtqConfig::default(),
        };
        let mut journal = Journal::open(&path, Existing::Refuse, setup(None)).unwrap();
        journal
            .append(&Line::Unit(unit("conv1", 0.8, Some(12.0))))
            .unwrap();
        drop(journal);
        // A torn last line (an interrupted write) is skipped, the rest kept.
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b"{\"kind\":\"unit\",\"unit\":\"co").unwrap();
        drop(file);
        assert!(Journal::open(&path, Existing::Refuse, setup(None)).is_err());
        let journal = Journal::open(&path, Existing::Resume, setup(None)).unwrap();
        assert_eq!(journal.unit("conv1"), Some(unit("conv1", 0.8, Some(12.0))));
        assert_eq!(journal.unit("conv2"), None);
        let mut journal = journal;
        journal
            .append(&Line::Unit(unit("conv2", 0.7, None)))
            .unwrap();
        drop(journal);
        let journal = Journal::open(&path, Existing::Resume, setup(None)).unwrap();
        assert_eq!(journal.unit("conv1"), Some(unit("conv1", 0.8, Some(12.0))));
        assert_eq!(journal.unit("conv2"), Some(unit("conv2", 0.7, None)));
        drop(journal);
        let other = Journal::open(&path, Existing::Resume, setup(Some("W8A8")));
        assert!(other.is_err_and(|e| e.to_string().contains("--fresh")));
        // Scores calibrated another way (here: bias-corrected) are not reused either.
        let corrected = Line::Setup {
            scheme: "W4A4".into(),
            fallback: None,
            layers: None,
            per_tensor: false,
            split: Split::Valid,
            calibration: PtqConfig {
                bias_correction: true,
                ..PtqConfig::default()
            },
        };
        let other = Journal::open(&path, Existing::Resume, corrected);
        assert!(other.is_err_and(|e| e.to_string().contains("--fresh")));
        // A journal written before the setup named its calibration reads as the default one.
        let old_line = r#"{"kind":"setup","scheme":"W4A4","fallback":null,"layers":null}"#;
        assert_eq!(serde_json::from_str::<Line>(old_line).unwrap(), setup(None));
        let fresh = Journal::open(&path, Existing::Fresh, setup(Some("W8A8"))).unwrap();
        assert_eq!(fresh.done, [setup(Some("W8A8"))]);
        std::fs::remove_dir_all(&dir).ok();
    }
}
