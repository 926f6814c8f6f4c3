//! Training curves: per-epoch means of the loss and accuracy that burn-train logged for each
//! stage (`<stage>/{train,valid}/epoch-N/<Metric>.log`), drawn as one SVG for the run.

use std::path::Path;

use burn::train::metric::NumericEntry;

/// The per-epoch mean of one metric of one split.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    /// e.g. `float train`.
    pub label: String,
    /// Value per epoch, from epoch 1.
    pub values: Vec<f64>,
}

/// Reads `<stage_dir>/<split>/epoch-N/<metric>.log` for every epoch, averaging each file
/// (count-weighted, as burn-train aggregates).
pub fn read_curve(stage_dir: &Path, split: &str, metric: &str) -> Vec<f64> {
    let mut values = Vec::new();
    for epoch in 1.. {
        let path = stage_dir
            .join(split)
            .join(format!("epoch-{epoch}"))
            .join(format!("{metric}.log"));
        let Ok(text) = std::fs::read_to_string(&path) else {
            break;
        };
        let (mut sum, mut count) = (0.0, 0.0);
        for line in text.lines().filter(|l| !l.is_empty()) {
            match NumericEntry::deserialize(line) {
                Ok(NumericEntry::Value(v)) => (sum, count) = (sum + v, count + 1.0),
                Ok(NumericEntry::Aggregated {
                    aggregated_value,
                    count: n,
                }) => (sum, count) = (sum + aggregated_value * n as f64, count + n as f64),
                Ok(NumericEntry::Final(v)) => (sum, count) = (v, 1.0),
                Err(_) => {}
            }
        }
        if count == 0.0 {
            break;
        }
        values.push(sum / count);
    }
    values
}

const COLORS: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// One panel (title, axes, a polyline per curve, legend) at `(x0, y0)` of size `w × h`.
fn panel(svg: &mut String, title: &str, curves: &[Curve], (x0, y0, w, h): (f64, f64, f64, f64)) {
    let points: Vec<f64> = curves
        .iter()
        .flat_map(|c| c.values.iter().copied())
        .collect();
    let epochs = curves
        .iter()
        .map(|c| c.values.len())
        .max()
        .unwrap_or(1)
        .max(2);
    let (mut lo, mut hi) = points
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    if points.is_empty() {
        (lo, hi) = (0.0, 1.0);
    }
    if hi - lo < 1e-9 {
        (lo, hi) = (lo - 0.5, hi + 0.5);
    }
    let (left, bottom, top) = (x0 + 55.0, y0 + h - 30.0, y0 + 25.0);
    let right = x0 + w - 10.0;
    let sx = |e: usize| left + (right - left) * e as f64 / (epochs - 1) as f64;
    let sy = |v: f64| bottom - (bottom - top) * (v - lo) / (hi - lo);
    svg.push_str(&format!(
        "<text x=\"{}\" y=\"{}\" font-size=\"14\" font-weight=\"bold\">{title}</text>\n\
         <line x1=\"{left}\" y1=\"{bottom}\" x2=\"{right}\" y2=\"{bottom}\" stroke=\"#444\"/>\n\
         <line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{bottom}\" stroke=\"#444\"/>\n",
        x0 + 55.0,
        y0 + 16.0
    ));
    for i in 0..=4 {
        let v = lo + (hi - lo) * i as f64 / 4.0;
        svg.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"end\">{v:.3}</text>\n",
            left - 4.0,
            sy(v) + 3.0
        ));
    }
    for e in 0..epochs {
        svg.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\">{}</text>\n",
            sx(e),
            bottom + 14.0,
            e + 1
        ));
    }
    svg.push_str(&format!(
        "<text x=\"{}\" y=\"{}\" font-size=\"10\">epoch</text>\n",
        right - 30.0,
        bottom + 26.0
    ));
    for (i, curve) in curves.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let dash = if curve.label.ends_with("valid") {
            " stroke-dasharray=\"5,3\""
        } else {
            ""
        };
        let pts: Vec<String> = curve
            .values
            .iter()
            .enumerate()
            .map(|(e, &v)| format!("{:.1},{:.1}", sx(e), sy(v)))
            .collect();
        svg.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"{dash} points=\"{}\"/>\n",
            pts.join(" ")
        ));
        for p in &pts {
            let (x, y) = p.split_once(',').unwrap_or_default();
            svg.push_str(&format!(
                "<circle cx=\"{x}\" cy=\"{y}\" r=\"2.5\" fill=\"{color}\"/>\n"
            ));
        }
        svg.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"{color}\">{}</text>\n",
            right - 150.0,
            top + 12.0 + 13.0 * i as f64,
            curve.label
        ));
    }
}

/// An SVG with a loss panel and an accuracy panel per stage (`(name, stage_dir)`).
pub fn curves_svg(stages: &[(String, &Path)]) -> String {
    let (w, h) = (420.0, 240.0);
    let height = h * stages.len().max(1) as f64;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" font-family=\"sans-serif\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
        2.0 * w
    );
    for (row, (name, dir)) in stages.iter().enumerate() {
        for (col, metric) in ["Loss", "Accuracy"].iter().enumerate() {
            let curves: Vec<Curve> = ["train", "valid"]
                .iter()
                .map(|split| Curve {
                    label: format!("{name} {split}"),
                    values: read_curve(dir, split, metric),
                })
                .filter(|c| !c.values.is_empty())
                .collect();
            panel(
                &mut svg,
                &format!("{name}: {metric}"),
                &curves,
                (col as f64 * w, row as f64 * h, w, h),
            );
        }
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curves_average_each_epoch_log_and_draw_a_polyline_per_split() {
        let dir = std::env::temp_dir().join(format!("trainer-curves-{}", std::process::id()));
        for (split, epoch, lines) in [
            ("train", 1, "2.0\n1.0\n"),
            ("train", 2, "0.5\n"),
            ("valid", 1, "1.5\n"),
        ] {
            let d = dir.join(split).join(format!("epoch-{epoch}"));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("Loss.log"), lines).unwrap();
        }
        assert_eq!(read_curve(&dir, "train", "Loss"), vec![1.5, 0.5]);
        let svg = curves_svg(&[("float".into(), dir.as_path())]);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("float: Loss"));
        std::fs::remove_dir_all(dir).ok();
    }
}
