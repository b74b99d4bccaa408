//! One export, as the viewer's export worker and the batch run both do it: render the picture, then
//! write a PNG, a DICOM Secondary Capture or an HTML report, atomically. Reads the source's DICOM
//! header when it needs it (Secondary Capture, patient identifiers); runs off the UI thread.

use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use super::corners::{CornerText, ViewFacts, corner_text};
use super::figure::{Figure, Legend, render_figure};
use super::report::{GazeSection, Report, render_html};
use super::sc::{ScDescription, secondary_capture};
use super::summary::AnalysisSummary;
use crate::imaging::ScalarImage;
use crate::io::{FileKind, LoadedImage};
use crate::render::cpu::View;
use crate::render::{HEATMAP_LAYER, ImageHandle, MASK_LAYER, RenderSettings};
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportKind {
    /// The picture as PNG.
    Png,
    /// The picture as a DICOM Secondary Capture in the source's study.
    SecondaryCapture,
    /// The HTML report with the picture in it.
    Report,
}

impl ExportKind {
    pub fn label(self) -> &'static str {
        match self {
            ExportKind::Png => "PNG",
            ExportKind::SecondaryCapture => "DICOM Secondary Capture",
            ExportKind::Report => "report",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            ExportKind::Png => "png",
            ExportKind::SecondaryCapture => "dcm",
            ExportKind::Report => "html",
        }
    }
}

/// What the user asked to export from the viewer: the kind, and for pictures whether the view as
/// on screen (`screen`) or the whole image at image resolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportChoice {
    pub kind: ExportKind,
    pub screen: bool,
}

/// Everything one export needs; cheap to clone (images are shared).
#[derive(Clone, Debug)]
pub struct ExportJob {
    pub kind: ExportKind,
    pub out: PathBuf,
    pub handle: ImageHandle,
    pub settings: RenderSettings,
    /// `None`: image resolution.
    pub view: Option<View>,
    pub corners: CornerText,
    pub legend: Option<Legend>,
    /// The file the image came from (its DICOM header is read for the Secondary Capture and for
    /// identifiers).
    pub source: Option<PathBuf>,
    /// What the overlays show, in words (the SC's Series/Derivation Description, the caption).
    pub overlays: String,
    pub summary: Option<AnalysisSummary>,
    pub gaze: Option<GazeSection>,
    /// Put the patient's identifiers in the report (the user asked).
    pub identifiers: bool,
}

/// Runs the export; returns the path written.
pub fn run(job: &ExportJob) -> Result<PathBuf, String> {
    let picture = render_figure(&Figure {
        handle: &job.handle,
        settings: &job.settings,
        view: job.view,
        corners: job.corners.clone(),
        legend: job.legend.clone(),
    });
    match job.kind {
        ExportKind::Png => super::write_file(&job.out, &super::png_bytes(&picture)?)?,
        ExportKind::SecondaryCapture => {
            let header = source_header(job.source.as_deref())?;
            let description = ScDescription {
                series_description: format!("cxrlens: {}", job.overlays),
                derivation: format!(
                    "{} burned in by cxrlens {}; {}",
                    job.overlays,
                    env!("CARGO_PKG_VERSION"),
                    super::RESEARCH_MARK_ASCII
                ),
                software_version: env!("CARGO_PKG_VERSION").to_string(),
            };
            let file = secondary_capture(
                &picture,
                header.as_ref(),
                &description,
                chrono::Local::now(),
            )?;
            super::sc::write(&job.out, &file)?;
        }
        ExportKind::Report => {
            let summary = job
                .summary
                .as_ref()
                .ok_or("no analysis to report: run Analyze first")?;
            let patient = if job.identifiers {
                Some(identifiers(source_header(job.source.as_deref())?.as_ref()))
            } else {
                None
            };
            let png = super::png_bytes(&picture)?;
            let html = render_html(&Report {
                summary,
                picture_png: &png,
                caption: job.overlays.clone(),
                gaze: job.gaze.clone(),
                patient,
            });
            super::write_file(&job.out, html.as_bytes())?;
        }
    }
    Ok(job.out.clone())
}

/// The export of one analysed image at image resolution, with the file's first window and the
/// layers the gate lets through, drawn with the viewer's defaults.
pub fn image_export(
    loaded: &LoadedImage,
    path: &Path,
    mask: Option<ScalarImage>,
    heat: Option<ScalarImage>,
    summary: &AnalysisSummary,
) -> ExportJob {
    let presets = loaded.presets();
    let display = crate::imaging::DisplayParams {
        voi: presets
            .first()
            .map(|p| p.voi)
            .unwrap_or(crate::imaging::voi::VoiMode::Window(
                crate::imaging::Window::from_range(loaded.stats.min, loaded.stats.max),
            )),
        photometric_inverted: loaded.info.photometric_inverted,
        user_inverted: false,
    };
    let handle = ImageHandle::with_color(loaded.image.clone(), loaded.color.clone());
    let explanation = summary.explanation.as_ref();
    let mut overlays = Vec::new();
    if mask.is_some() {
        overlays.push(format!(
            "lung mask ({})",
            summary
                .models
                .iter()
                .find(|m| m.kind == "lung")
                .map(|m| format!("{} {}", m.name, m.version))
                .unwrap_or_default()
        ));
    }
    let legend = match (&heat, explanation) {
        (Some(_), Some(e)) => {
            overlays.push(format!("{} of {} for {}", e.method, e.model, e.class));
            Some(Legend {
                colormap: HEATMAP_LAYER.colormap,
                title: e.method.clone(),
            })
        }
        _ => None,
    };
    let settings = RenderSettings {
        display,
        luts: Arc::new(loaded.info.voi_luts.clone()),
        overlays: [
            mask.map(|m| MASK_LAYER.layer(Arc::new(m))),
            heat.map(|h| HEATMAP_LAYER.layer(Arc::new(h))),
        ],
        bilinear: true,
    };
    let mut corners = corner_text(
        &loaded.info,
        &ViewFacts {
            width: loaded.image.width,
            height: loaded.image.height,
            display: &settings.display,
            preset: presets.first().map(|p| p.name.as_str()),
            zoom: None,
        },
    );
    corners.top_right.extend(overlays.iter().cloned());
    if let Some(title) = &summary.ood.verdict_title {
        corners.bottom_right.push(title.clone());
        let withheld: Vec<&str> = summary
            .predictions
            .iter()
            .filter(|p| !p.shown)
            .map(|p| p.model.as_str())
            .collect();
        if !withheld.is_empty() {
            corners
                .bottom_right
                .push(format!("withheld: {}", withheld.join(", ")));
        }
    }
    ExportJob {
        kind: ExportKind::Png,
        out: PathBuf::new(),
        handle,
        settings,
        view: None,
        corners,
        legend,
        source: Some(path.to_path_buf()),
        overlays: if overlays.is_empty() {
            "no overlay (results withheld or none)".into()
        } else {
            overlays.join(" + ")
        },
        summary: Some(summary.clone()),
        gaze: None,
        identifiers: false,
    }
}

/// The source's DICOM header (`None` for PNG/JPEG sources).
pub fn source_header(source: Option<&Path>) -> Result<Option<InMemDicomObject>, String> {
    let Some(path) = source else { return Ok(None) };
    match crate::io::sniff(path) {
        Ok(FileKind::Dicom(layout)) => crate::io::dicom::open_header(path, layout)
            .map(|o| Some(o.into_inner()))
            .map_err(|e| format!("cannot read the source's header: {e}")),
        Ok(_) => Ok(None),
        Err(e) => Err(format!("cannot read the source: {e}")),
    }
}

/// The identifiers a report shows when asked: name, ID, birth date, sex, accession, study date.
pub fn identifiers(header: Option<&InMemDicomObject>) -> Vec<(String, String)> {
    let Some(h) = header else {
        return vec![(
            "Identifiers".into(),
            "none (the source is not a DICOM file)".into(),
        )];
    };
    [
        ("Patient name", tags::PATIENT_NAME),
        ("Patient ID", tags::PATIENT_ID),
        ("Birth date", tags::PATIENT_BIRTH_DATE),
        ("Sex", tags::PATIENT_SEX),
        ("Accession number", tags::ACCESSION_NUMBER),
        ("Study date", tags::STUDY_DATE),
    ]
    .into_iter()
    .map(|(label, tag)| {
        (
            label.to_string(),
            crate::io::dicom::string(h, tag).unwrap_or_else(|| "—".into()),
        )
    })
    .collect()
}
