//! The study / series / image browser for a folder or DICOMDIR. Labels avoid patient identifiers:
//! studies are shown by description, series by number, modality and description.

use std::path::Path;

use super::command::Command;
use crate::io::study::StudyTree;

pub fn browser_ui(
    ui: &mut egui::Ui,
    tree: &StudyTree,
    current: Option<&Path>,
    commands: &mut Vec<Command>,
) {
    ui.heading("Studies");
    if tree.from_dicomdir {
        ui.weak("from DICOMDIR");
    }
    ui.label(format!("{} image(s)", tree.image_count()));
    ui.separator();
    egui::ScrollArea::vertical()
        .auto_shrink([false, false])
        .show(ui, |ui| {
            for (si, study) in tree.studies.iter().enumerate() {
                let title = format!(
                    "Study {}: {}",
                    si + 1,
                    study.description.as_deref().unwrap_or("(no description)")
                );
                egui::CollapsingHeader::new(title)
                    .id_salt(("study", si))
                    .default_open(true)
                    .show(ui, |ui| {
                        for (ri, series) in study.series.iter().enumerate() {
                            let title = format!(
                                "Series {} {} {}",
                                series
                                    .number
                                    .map_or_else(|| "?".to_string(), |n| n.to_string()),
                                series.modality.as_deref().unwrap_or(""),
                                series.description.as_deref().unwrap_or("")
                            );
                            egui::CollapsingHeader::new(title.trim_end())
                                .id_salt(("series", si, ri))
                                .default_open(true)
                                .show(ui, |ui| {
                                    for inst in &series.instances {
                                        let label = match inst.instance_number {
                                            Some(n) => format!("#{n}  {}", inst.file_name),
                                            None => inst.file_name.clone(),
                                        };
                                        let selected = current == Some(inst.path.as_path());
                                        if ui.selectable_label(selected, label).clicked() {
                                            commands.push(Command::OpenInstance(inst.path.clone()));
                                        }
                                    }
                                });
                        }
                    });
            }
            if !tree.other_images.is_empty() {
                egui::CollapsingHeader::new("Other images (PNG/JPEG)")
                    .default_open(true)
                    .show(ui, |ui| {
                        for inst in &tree.other_images {
                            let selected = current == Some(inst.path.as_path());
                            if ui.selectable_label(selected, &inst.file_name).clicked() {
                                commands.push(Command::OpenInstance(inst.path.clone()));
                            }
                        }
                    });
            }
            if !tree.problems.is_empty() {
                egui::CollapsingHeader::new(format!("{} problem(s)", tree.problems.len())).show(
                    ui,
                    |ui| {
                        for p in &tree.problems {
                            ui.label(p);
                        }
                    },
                );
            }
        });
}
