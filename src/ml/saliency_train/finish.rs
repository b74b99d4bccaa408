//! The finished saliency recipe written as bundles: the saliency network's, and with the
//! heatmap-generator loss the changed classifier's own (the saliency network is tied to it).

use super::*;

/// What the recipe hands over to be written.
pub(super) struct Finished<'a> {
    pub(super) net: &'a SaliencyNet,
    pub(super) config: SaliencyNetConfig,
    /// The classifier and its config when the heatmap-generator loss changed it.
    pub(super) classifier: Option<(
        &'a crate::ml::classifier::Classifier,
        crate::ml::classifier::ClassifierConfig,
    )>,
    pub(super) classifier_info: &'a BundleInfo,
    pub(super) class_names: &'a [String],
    pub(super) options: &'a TrainOptions,
    pub(super) data_root: &'a Path,
    pub(super) simulated: bool,
    pub(super) report: &'a TrainReport,
}

/// Writes the bundles into `out_dir` (the changed classifier into `out_dir/classifier`), each file
/// atomically, with cards that say when the gaze was simulated.
pub(super) fn write_bundles(out_dir: &Path, finished: Finished<'_>) -> Result<(), MlError> {
    let Finished {
        net,
        mut config,
        classifier,
        classifier_info: cinfo,
        class_names,
        options,
        data_root,
        simulated,
        report,
    } = finished;
    if let Some((classifier, mut classifier_config)) = classifier {
        // The classifier changed: save it as its own bundle, and tie the saliency network to it.
        let dir = out_dir.join("classifier");
        std::fs::create_dir_all(&dir)?;
        classifier_config.set_class_names(class_names.to_vec());
        classifier.save(&dir.join("weights.bpk"))?;
        write_atomically(
            &dir.join("config.json"),
            serde_json::to_string_pretty(&classifier_config)
                .map_err(|e| MlError::Config(e.to_string()))?
                .as_bytes(),
        )?;
        let mut card = cinfo.card.clone();
        card.name = format!("{}-heatmap-generator", cinfo.card.name);
        card.version = options.version.clone();
        card.data = format!(
            "{}; then trained with the heatmap-generator loss (guided-backprop map vs gaze, weight {}) on {}{}",
            card.data,
            options.heatmap_generator_weight,
            data_root.display(),
            if simulated {
                " with SIMULATED gaze"
            } else {
                ""
            }
        );
        card.simulated_gaze |= simulated;
        // Its class metrics would need its own held-out evaluation (`cxrlens eval`).
        card.metrics.clear();
        if let Some(g) = report
            .final_evaluation
            .saliency
            .and_then(|s| s.generator_kl)
        {
            card.metrics.insert("guided_backprop_kl_to_gaze".into(), g);
        }
        card.command = options.command.clone();
        card.write(&dir)?;
        config.classifier_title = format!("{} {}", card.name, card.version);
    }
    save_module(net.clone(), &out_dir.join("weights.bpk"))?;
    write_atomically(
        &out_dir.join("config.json"),
        serde_json::to_string_pretty(&config)
            .map_err(|e| MlError::Config(e.to_string()))?
            .as_bytes(),
    )?;
    let mut card = ModelCard::from_report(report, data_root);
    card.kind = ModelKind::Saliency;
    card.parameters = net.num_params();
    card.simulated_gaze = simulated;
    card.command = options.command.clone();
    card.data += &format!(
        "; stage 1: classifier encoder {} (frozen); stage 2: {} epochs, KL loss; stage 3: {} epochs, fusion classifier",
        cinfo.title(),
        options.epochs,
        options.fusion_epochs
    );
    if let Some(s) = report.final_evaluation.saliency {
        card.metrics.insert("kl".into(), s.kl);
        card.metrics.insert("cc".into(), s.cc);
        card.metrics.insert("hs".into(), s.hs);
    }
    card.limitations = crate::ml::bundle::default_limitations(
        ModelKind::Saliency,
        &data_root
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        options.input_size,
    );
    card.limitations.extend(options.limitations.iter().cloned());
    if simulated {
        card.limitations.insert(
            0,
            "TRAINED ON SIMULATED GAZE (gaze::synthetic), not on recordings of radiologists: its \
             maps show what the simulator does, not where people look."
                .into(),
        );
    }
    card.write(out_dir)?;
    for (name, text) in [
        (
            "training-report.json",
            serde_json::to_string_pretty(report).map_err(|e| MlError::Config(e.to_string()))?,
        ),
        (
            "evaluation.csv",
            report.final_evaluation.to_csv(&report.class_names),
        ),
        (
            "evaluation.json",
            serde_json::to_string_pretty(&serde_json::json!({
                "class_names": report.class_names,
                "validation_images": report.validation_images,
                "validation_patients": report.validation_patients,
                "simulated_gaze": simulated,
                "evaluation": report.final_evaluation,
            }))
            .map_err(|e| MlError::Config(e.to_string()))?,
        ),
    ] {
        write_atomically(&out_dir.join(name), text.as_bytes())?;
    }
    Ok(())
}
