//! The saliency recipe's data: gaze recordings (EGD-CXR and REFLACX) matched to the dataset's
//! images, gaze targets on the model grid, and the patient-wise split into training and validation
//! samples.

use super::*;

/// The gaze heatmap of `rec` on a `size`×`size` grid for a `width`×`height` image: the map the
/// viewer compares with the model's (`gaze::heatmap` by the dataset's published recipe, at image
/// resolution: EGD-CXR counts ⊛ σ = 150 px with reflect borders, REFLACX duration-weighted 1°
/// Gaussians inside the shown area), area-averaged onto the grid and summed to 1 — one recipe for
/// training and comparison. An empty map becomes uniform.
pub fn grid_target(rec: &GazeRecording, width: u32, height: u32, size: usize) -> Vec<f32> {
    let recipe = crate::gaze::heatmap::Recipe::published(rec.format);
    let map = crate::gaze::heatmap::heatmap(rec, width, height, recipe);
    let grid = crate::imaging::resample::resize_area(
        &map.values,
        width as usize,
        height as usize,
        size,
        size,
    );
    let sum: f64 = grid.iter().map(|&v| v as f64).sum();
    grid.iter()
        .map(|&v| {
            if sum > 0.0 {
                (v as f64 / sum) as f32
            } else {
                1.0 / (size * size) as f32
            }
        })
        .collect()
}

/// REFLACX cases under `main_data/`: each case's `fixations.csv`, tied to an image by the
/// `metadata_phase_*.csv` beside the case folders (dicom_id = labels.csv id or file name).
pub(super) fn import_reflacx(root: &Path, keys: &[ImageKey], out: &mut crate::gaze::GazeImport) {
    // One listing; a folder or entry that cannot be read is a problem the user sees.
    let mut listed = Vec::new();
    let problem = |message: String| crate::gaze::GazeProblem {
        file: root.to_path_buf(),
        line: None,
        column: None,
        message,
    };
    match std::fs::read_dir(root) {
        Ok(entries) => {
            for e in entries {
                match e {
                    Ok(e) => listed.push(e.path()),
                    Err(e) => out
                        .problems
                        .push(problem(format!("an entry cannot be read: {e}"))),
                }
            }
        }
        Err(e) => out
            .problems
            .push(problem(format!("the folder cannot be listed: {e}"))),
    }
    let mut metadata: Vec<std::path::PathBuf> = listed
        .iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("metadata_phase_"))
        })
        .cloned()
        .collect();
    metadata.sort();
    let mut cases: Vec<std::path::PathBuf> = listed
        .iter()
        .map(|p| p.join("fixations.csv"))
        .filter(|p| p.is_file())
        .collect();
    cases.sort();
    for file in cases {
        let case = file
            .parent()
            .and_then(|d| d.file_name())
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let mut ignored = Vec::new();
        let found = metadata.iter().find_map(|m| {
            crate::gaze::reflacx::read_case(m, &case, &mut ignored).map(|c| (m.clone(), c))
        });
        let Some((meta_path, meta)) = found else {
            out.problems.push(crate::gaze::GazeProblem {
                file: file.clone(),
                line: None,
                column: None,
                message: format!("case {case} is in no metadata_phase_*.csv"),
            });
            continue;
        };
        let Some(key) = keys.iter().find(|k| k.matches(&meta.dicom_id)) else {
            continue; // a case for an image outside this dataset
        };
        let one = crate::gaze::reflacx::import(&file, key, Some(&meta_path));
        out.problems.extend(one.problems);
        out.recordings.extend(one.recordings);
    }
}

pub(super) struct Sample {
    pub(super) input: Vec<f32>,
    pub(super) target: Vec<f32>,
    pub(super) class: Option<usize>,
}

/// What `load_gaze_data` found.
pub(super) struct GazeData {
    pub(super) train_set: Vec<Sample>,
    pub(super) val_set: Vec<Sample>,
    /// Any recording came from `gaze::synthetic`: the card must say so.
    pub(super) simulated: bool,
    pub(super) problems: Vec<String>,
    /// The rows with a gaze recording, and the patient-wise split of them.
    pub(super) with_gaze: Vec<crate::dataset::Record>,
    pub(super) train_idx: Vec<usize>,
    pub(super) val_idx: Vec<usize>,
}

/// The dataset's images with gaze, as training and validation samples for a `size`-pixel grid.
pub(super) fn load_gaze_data(
    data_root: &Path,
    options: &TrainOptions,
    class_names: &[String],
    size: usize,
    classifier_title: &str,
    progress: &mut dyn FnMut(TrainProgress),
) -> Result<GazeData, MlError> {
    let (records, row_problems) = read_labels(data_root)?;
    let mut problems: Vec<String> = row_problems
        .iter()
        .map(|p| format!("labels.csv line {}: {}", p.line, p.message))
        .collect();
    let gaze_dir = options
        .gaze_dir
        .clone()
        .unwrap_or_else(|| data_root.join("gaze"));
    let fixations = gaze_dir.join("fixations.csv");
    let reflacx_root = gaze_dir.join("main_data");
    if !fixations.is_file() && !reflacx_root.is_dir() {
        return Err(MlError::Dataset(format!(
            "no gaze recordings: expected EGD-CXR fixations.csv (with master_sheet.csv) or \
             REFLACX main_data/<case>/fixations.csv (with metadata_phase_*.csv) in {}",
            gaze_dir.display()
        )));
    }
    let mut keys = Vec::new();
    let mut usable = Vec::new();
    for r in &records {
        match crate::io::image_dimensions(&r.image) {
            Ok((w, h)) => {
                let mut key = ImageKey::for_file(&r.image, std::slice::from_ref(&r.id), w, h);
                key.ids.reverse(); // the labels.csv id first
                keys.push(key);
                usable.push(r.clone());
            }
            Err(e) => problems.push(format!("{}: {e}", r.id)),
        }
    }
    let sheet = gaze_dir.join("master_sheet.csv");
    let mut import = if fixations.is_file() {
        crate::gaze::egd::import(
            &fixations,
            sheet.is_file().then_some(sheet.as_path()),
            &keys,
        )
    } else {
        crate::gaze::GazeImport::default()
    };
    if reflacx_root.is_dir() {
        import_reflacx(&reflacx_root, &keys, &mut import);
    }
    problems.extend(import.problems.iter().map(|p| p.to_string()));
    let simulated = import.recordings.iter().any(|r| r.simulated);
    let mut with_gaze = Vec::new();
    let mut gaze_of = Vec::new();
    for (r, key) in usable.iter().zip(&keys) {
        if let Some(g) = import.recordings.iter().find(|g| key.matches(&g.image_id)) {
            with_gaze.push(r.clone());
            gaze_of.push((g.clone(), key.width, key.height));
        }
    }
    if with_gaze.len() < 2 {
        return Err(MlError::Dataset(format!(
            "only {} images have a gaze recording in {}",
            with_gaze.len(),
            gaze_dir.display()
        )));
    }
    progress(TrainProgress::Message(format!(
        "{} of {} images have gaze{}; classifier encoder {} (frozen)",
        with_gaze.len(),
        records.len(),
        if simulated { " (SIMULATED)" } else { "" },
        classifier_title
    )));
    let (train_idx, val_idx) =
        split_by_patient(&with_gaze, options.validation_fraction, options.seed);
    // Images whose label the classifier does not know still train the saliency decoder.
    let build = |idx: &[usize], problems: &mut Vec<String>| -> Vec<Sample> {
        let recs: Vec<_> = idx.iter().map(|&i| with_gaze[i].clone()).collect();
        let mut relabelled = recs.clone();
        for r in &mut relabelled {
            if !class_names.contains(&r.label) {
                r.label = class_names[0].clone();
            }
        }
        let (prepared, p) = prepare(&relabelled, class_names, size, false);
        problems.extend(p);
        prepared
            .into_iter()
            .filter_map(|s| {
                let k = idx.iter().position(|&i| with_gaze[i].id == s.id)?;
                let (g, w, h) = &gaze_of[idx[k]];
                Some(Sample {
                    target: grid_target(g, *w, *h, size),
                    class: class_names
                        .iter()
                        .position(|c| *c == with_gaze[idx[k]].label),
                    input: s.input.values,
                })
            })
            .collect()
    };
    let train_set = build(&train_idx, &mut problems);
    let val_set = build(&val_idx, &mut problems);
    if train_set.is_empty() || val_set.is_empty() {
        return Err(MlError::Dataset(
            "no usable images with gaze in the training or validation split".into(),
        ));
    }
    Ok(GazeData {
        train_set,
        val_set,
        simulated,
        problems,
        with_gaze,
        train_idx,
        val_idx,
    })
}

/// Inputs `[n, 1, size, size]` and gaze targets `[n, size²]` of samples `chunk` of `set`.
pub(super) fn batch(
    set: &[Sample],
    chunk: &[usize],
    size: usize,
    device: &Device,
) -> (Tensor<4>, Tensor<2>) {
    let n = chunk.len();
    let x: Vec<f32> = chunk.iter().flat_map(|&i| set[i].input.clone()).collect();
    let q: Vec<f32> = chunk.iter().flat_map(|&i| set[i].target.clone()).collect();
    (
        Tensor::<1>::from_floats(x.as_slice(), device).reshape([n, 1, size, size]),
        Tensor::<1>::from_floats(q.as_slice(), device).reshape([n, size * size]),
    )
}
