//! The finished model written as a bundle: `config.json`, `weights.bpk`, `card.json` +
//! `MODEL_CARD.md`, and the run's `training-report.json`, `evaluation.json`, `evaluation.csv`.

use super::*;

/// Writes the bundle of `net` trained by `options` into `out_dir` (each file atomically).
pub(super) fn write_bundle(
    out_dir: &Path,
    net: &Net,
    options: &TrainOptions,
    class_names: &[String],
    report: &TrainReport,
    data_root: &Path,
) -> Result<(), MlError> {
    let config_json = match net {
        Net::Lung(m) => {
            save_module(m.clone(), &out_dir.join("weights.bpk"))?;
            serde_json::to_string_pretty(&lung_config(options, class_names.to_vec()))
        }
        Net::Classifier(m) => {
            m.save(&out_dir.join("weights.bpk"))?;
            serde_json::to_string_pretty(&classifier_config(options, class_names.to_vec()))
        }
    }
    .map_err(|e| MlError::Config(e.to_string()))?;
    write_atomically(&out_dir.join("config.json"), config_json.as_bytes())?;
    let mut card = ModelCard::from_report(report, data_root);
    card.parameters = match net {
        Net::Lung(m) => m.num_params(),
        Net::Classifier(m) => m.num_params(),
    };
    card.command = options.command.clone();
    card.architecture = describe_network(options, net);
    card.limitations = crate::ml::bundle::default_limitations(
        options.kind,
        &data_root
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        options.input_size,
    );
    card.limitations.extend(options.limitations.iter().cloned());
    card.write(out_dir)?;
    write_atomically(
        &out_dir.join("training-report.json"),
        serde_json::to_string_pretty(&report)
            .map_err(|e| MlError::Config(e.to_string()))?
            .as_bytes(),
    )?;
    write_atomically(
        &out_dir.join("evaluation.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "class_names": report.class_names,
            "validation_images": report.validation_images,
            "validation_patients": report.validation_patients,
            "evaluation": report.final_evaluation,
        }))
        .map_err(|e| MlError::Config(e.to_string()))?
        .as_bytes(),
    )?;
    write_atomically(
        &out_dir.join("evaluation.csv"),
        report
            .final_evaluation
            .to_csv(&report.class_names)
            .as_bytes(),
    )?;
    Ok(())
}
