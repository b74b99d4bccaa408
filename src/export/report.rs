//! The analysis report: one self-contained HTML page (the picture embedded as a PNG data URL, no
//! script, no external resource) with the image and its overlays, each model's probabilities with
//! its card's name, version and held-out figure, the out-of-distribution verdict, the gaze metrics
//! when a recording is loaded, the date and the research-use statement. Patient identifiers appear
//! only when the caller passes them (the user asked).

use base64::Engine;

use super::RESEARCH_MARK;
use super::summary::AnalysisSummary;
use crate::gaze::table::MetricRow;

/// The gaze section: which recording, whether it is simulated, and the metrics table.
#[derive(Clone, Debug)]
pub struct GazeSection {
    pub recording: String,
    pub simulated: bool,
    pub rows: Vec<MetricRow>,
}

#[derive(Clone, Debug)]
pub struct Report<'a> {
    pub summary: &'a AnalysisSummary,
    /// The picture (PNG bytes) and what it shows.
    pub picture_png: &'a [u8],
    pub caption: String,
    pub gaze: Option<GazeSection>,
    /// (attribute, value) pairs; `None` unless the user asked for identifiers.
    pub patient: Option<Vec<(String, String)>>,
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:60rem;margin:1.5rem auto;padding:0 1rem;color:#111}\
h1{font-size:1.4rem;margin-bottom:.2rem}h2{font-size:1.1rem;margin-top:1.6rem;border-bottom:1px solid #ccc}\
.mark{background:#ffd600;color:#000;font-weight:bold;padding:.4rem .6rem;margin:.6rem 0}\
.warn{background:#fff3cd;border:1px solid #e0b100;padding:.5rem .7rem}\
table{border-collapse:collapse;margin:.4rem 0}td,th{border:1px solid #bbb;padding:.2rem .5rem;text-align:left}\
td.num{text-align:right;font-variant-numeric:tabular-nums}img{max-width:100%;border:1px solid #444}\
.muted{color:#555}@media print{.mark{-webkit-print-color-adjust:exact;print-color-adjust:exact}}";

/// Renders the report as HTML.
pub fn render_html(report: &Report) -> String {
    let s = report.summary;
    let e = escape;
    let mut h = String::new();
    h += "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">";
    h += &format!("<title>cxrlens report: {}</title>", e(&s.source));
    h += &format!("<style>{STYLE}</style></head><body>\n");
    h += &format!("<h1>cxrlens analysis: {}</h1>\n", e(&s.source));
    h += &format!("<div class=\"mark\">{}</div>\n", e(RESEARCH_MARK));
    h += &format!(
        "<p class=\"muted\">Created {} by {} on {}. Frame {} · {} × {} px.</p>\n",
        e(&s.created),
        e(&s.software),
        e(&s.device),
        s.frame + 1,
        s.width,
        s.height
    );
    if let Some(patient) = &report.patient {
        h += "<h2>Patient</h2>\n<table>";
        for (k, v) in patient {
            h += &format!("<tr><th>{}</th><td>{}</td></tr>", e(k), e(v));
        }
        h += "</table>\n";
    }
    h += "<h2>Out-of-distribution check</h2>\n";
    match &s.ood.verdict {
        Some(v) => h += &format!("<p class=\"warn\">{}</p>\n", e(v)),
        None => {
            h += "<p>Every model recognised the image as like its training data; the lung mask is anatomically plausible.</p>\n"
        }
    }
    if !s.ood.gates.is_empty() || s.ood.anatomy.is_some() {
        h += "<table><tr><th>check</th><th>value</th><th>limit</th><th>result</th></tr>";
        for g in &s.ood.gates {
            h += &format!(
                "<tr><td>{} (Mahalanobis distance)</td><td class=\"num\">{:.1}</td><td class=\"num\">{:.1}</td><td>{}</td></tr>",
                e(&g.model),
                g.distance,
                g.threshold,
                if g.passed {
                    "within its training data"
                } else {
                    "outside its training data"
                }
            );
        }
        if let Some(a) = &s.ood.anatomy {
            h += &format!(
                "<tr><td>lung anatomy</td><td class=\"num\">{} regions, {:.1} %</td><td></td><td>{}</td></tr>",
                a.regions,
                100.0 * a.lung_fraction,
                if a.problems.is_empty() {
                    "plausible".to_string()
                } else {
                    e(&a.problems.join("; "))
                }
            );
        }
        h += "</table>\n";
    }
    h += "<h2>Image</h2>\n";
    let data = base64::engine::general_purpose::STANDARD.encode(report.picture_png);
    h += &format!(
        "<figure><img alt=\"{}\" src=\"data:image/png;base64,{data}\"><figcaption>{}</figcaption></figure>\n",
        e(&report.caption),
        e(&report.caption)
    );
    h += "<h2>Findings of the models</h2>\n";
    for p in &s.predictions {
        h += &format!("<h3>{}</h3>\n", e(&p.model));
        if let Some(m) = s
            .models
            .iter()
            .find(|m| format!("{} {}", m.name, m.version) == p.model)
            && let Some(line) = &m.headline
        {
            h += &format!("<p class=\"muted\">Model card: {}.</p>\n", e(line));
        }
        if !p.shown {
            h += "<p class=\"warn\">Withheld: the image is outside this model's training data. Probabilities are not reported.</p>\n";
            continue;
        }
        if p.uninformative {
            h += "<p class=\"warn\">This head is not better than chance on held-out data: its output is not a result.</p>\n";
            continue;
        }
        h += "<table><tr><th>class</th><th>probability</th></tr>";
        for (c, v) in &p.classes {
            h += &format!("<tr><td>{}</td><td class=\"num\">{v:.3}</td></tr>", e(c));
        }
        h += "</table>\n";
        if p.calibrated {
            h += "<p class=\"muted\">Probabilities temperature-scaled on the validation split.</p>\n";
        }
        if let Some(d) = &p.decision {
            h += &format!("<p>Operating point: {}</p>\n", e(d));
        }
    }
    if let Some(f) = s.lung_area_fraction {
        if s.lung_shown {
            h += &format!("<p>Lung area: {:.1} % of the image.</p>\n", 100.0 * f);
        } else {
            h += "<p class=\"warn\">Lung mask withheld (outside the lung network's training data).</p>\n";
        }
    }
    if let Some(x) = &s.explanation {
        h += &format!(
            "<p>Explanation: {} of {} for class “{}”, layer {}{}.</p>\n",
            e(&x.method),
            e(&x.model),
            e(&x.class),
            e(&x.layer),
            if x.shown {
                ""
            } else {
                " — withheld with the model's results"
            }
        );
    }
    if let Some(g) = &report.gaze {
        h += "<h2>Eye gaze</h2>\n";
        if g.simulated {
            h += "<p class=\"warn\">SIMULATED reading: these figures compare the models with a simulated gaze recording, not a radiologist's.</p>\n";
        }
        h += &format!("<p>Recording: {}</p>\n", e(&g.recording));
        h += "<table><tr><th>map</th><th>reference</th><th>metric</th><th>value</th><th>note</th></tr>";
        for r in &g.rows {
            h += &format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                e(&r.map),
                e(&r.reference),
                e(r.metric),
                r.value
                    .map(|v| format!("{v:.4}"))
                    .unwrap_or_else(|| "—".into()),
                e(&r.note)
            );
        }
        h += "</table>\n";
    }
    h += "<h2>Models</h2>\n<table><tr><th>model</th><th>held-out figure</th><th>trained on</th></tr>";
    for m in &s.models {
        h += &format!(
            "<tr><td>{} {}</td><td>{}</td><td>{}</td></tr>",
            e(&m.name),
            e(&m.version),
            e(m.headline.as_deref().unwrap_or("—")),
            e(&m.data)
        );
    }
    h += "</table>\n";
    h += &format!(
        "<div class=\"mark\">{}</div>\n</body></html>\n",
        e(RESEARCH_MARK)
    );
    h
}
