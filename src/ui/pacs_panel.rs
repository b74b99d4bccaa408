//! File ▸ PACS (DICOMweb): the configured servers (edit, add, remove, save to servers.json), a study
//! search (patient ID / name, date range, modality, accession), the results, retrieve into the viewer
//! with progress and cancel, and sending the last exported Secondary Capture back. Patient names and
//! IDs are shown here because the user searched for them; they are never logged.

use std::path::PathBuf;

use egui_extras::{Column, TableBuilder};

use super::command::Command;
use crate::pacs::{SeriesRow, Server, StudyQuery, StudyRow};

#[derive(Default)]
pub struct PacsPanel {
    pub open: bool,
    pub servers: Vec<Server>,
    pub selected: usize,
    pub query: StudyQuery,
    pub results: Vec<StudyRow>,
    /// The series of one study (its UID first), listed by "Series".
    pub series: Option<(String, Vec<SeriesRow>)>,
    /// What is running: "search", "retrieve", "store", and instances received.
    pub busy: Option<(String, usize)>,
    /// The last outcome, in words (errors included, so the panel says what went wrong).
    pub status: Option<String>,
    /// The last Secondary Capture exported in this session (File ▸ Export).
    pub last_sc: Option<PathBuf>,
    /// Servers changed since they were saved.
    pub dirty: bool,
}

impl PacsPanel {
    pub fn server(&self) -> Option<&Server> {
        self.servers.get(self.selected)
    }

    pub fn ui(&mut self, ctx: &egui::Context, commands: &mut Vec<Command>) {
        let mut open = self.open;
        egui::Window::new("PACS (DICOMweb)")
            .open(&mut open)
            .default_size([760.0, 480.0])
            .show(ctx, |ui| {
                self.servers_ui(ui, commands);
                ui.separator();
                self.search_ui(ui, commands);
                ui.separator();
                self.results_ui(ui, commands);
            });
        self.open = open;
    }

    fn servers_ui(&mut self, ui: &mut egui::Ui, commands: &mut Vec<Command>) {
        ui.horizontal(|ui| {
            ui.label("Server");
            let label = self
                .server()
                .map(|s| s.name.clone())
                .unwrap_or_else(|| "none configured".into());
            egui::ComboBox::from_id_salt("pacs-server")
                .selected_text(label)
                .show_ui(ui, |ui| {
                    for (i, s) in self.servers.iter().enumerate() {
                        ui.selectable_value(&mut self.selected, i, &s.name);
                    }
                });
            if ui.button("Add").clicked() {
                self.servers.push(Server {
                    name: format!("server {}", self.servers.len() + 1),
                    base_url: "http://".into(),
                    ..Default::default()
                });
                self.selected = self.servers.len() - 1;
                self.dirty = true;
            }
            if ui
                .add_enabled(self.server().is_some(), egui::Button::new("Remove"))
                .clicked()
            {
                self.servers.remove(self.selected);
                self.selected = self.selected.saturating_sub(1);
                self.dirty = true;
            }
            if ui
                .add_enabled(self.dirty, egui::Button::new("Save servers"))
                .clicked()
            {
                commands.push(Command::PacsSaveServers);
            }
        });
        let selected = self.selected;
        if let Some(s) = self.servers.get_mut(selected) {
            egui::Grid::new("pacs-server-fields")
                .num_columns(2)
                .show(ui, |ui| {
                    let mut changed = false;
                    ui.label("Name");
                    changed |= ui.text_edit_singleline(&mut s.name).changed();
                    ui.end_row();
                    ui.label("DICOMweb URL");
                    changed |= ui
                        .add(
                            egui::TextEdit::singleline(&mut s.base_url)
                                .hint_text("http://host:8042/dicom-web")
                                .desired_width(360.0),
                        )
                        .changed();
                    ui.end_row();
                    ui.label("User (optional)");
                    changed |= ui.text_edit_singleline(&mut s.username).changed();
                    ui.end_row();
                    ui.label("Password");
                    changed |= ui
                        .add(egui::TextEdit::singleline(&mut s.password).password(true))
                        .changed();
                    ui.end_row();
                    self.dirty |= changed;
                });
        } else {
            ui.weak("No server: add one. cxrlens connects to no server you have not configured.");
        }
    }

    fn search_ui(&mut self, ui: &mut egui::Ui, commands: &mut Vec<Command>) {
        let q = &mut self.query;
        let field = |ui: &mut egui::Ui, text: &mut String, hint: &str| {
            ui.add_sized(
                [180.0, 20.0],
                egui::TextEdit::singleline(text).hint_text(hint),
            );
        };
        egui::Grid::new("pacs-query").num_columns(4).show(ui, |ui| {
            ui.label("Patient ID");
            field(ui, &mut q.patient_id, "e.g. 12345 or 123*");
            ui.label("Patient name");
            field(ui, &mut q.patient_name, "e.g. DOE^J*");
            ui.end_row();
            ui.label("Study date from");
            field(ui, &mut q.date_from, "YYYYMMDD");
            ui.label("to");
            field(ui, &mut q.date_to, "YYYYMMDD");
            ui.end_row();
            ui.label("Modality");
            field(ui, &mut q.modality, "CR, DX");
            ui.label("Accession");
            field(ui, &mut q.accession, "");
            ui.end_row();
        });
        ui.horizontal(|ui| {
            let idle = self.busy.is_none();
            if ui
                .add_enabled(idle && self.server().is_some(), egui::Button::new("Search"))
                .clicked()
            {
                commands.push(Command::PacsSearch);
            }
            let send = ui.add_enabled(
                idle && self.server().is_some() && self.last_sc.is_some(),
                egui::Button::new("Send last Secondary Capture"),
            );
            let send = match &self.last_sc {
                Some(p) => send.on_hover_text(format!("STOW-RS {}", p.display())),
                None => send.on_disabled_hover_text("Export a DICOM Secondary Capture first"),
            };
            if send.clicked()
                && let Some(p) = &self.last_sc
            {
                commands.push(Command::PacsStore(p.clone()));
            }
            if let Some((what, n)) = &self.busy {
                ui.spinner();
                ui.label(if *n > 0 {
                    format!("{what}: {n} instances received")
                } else {
                    format!("{what}…")
                });
                if ui.button("Cancel").clicked() {
                    commands.push(Command::PacsCancel);
                }
            }
        });
        if let Some(s) = &self.status {
            ui.label(s);
        }
    }

    fn series_ui(&self, ui: &mut egui::Ui, commands: &mut Vec<Command>) {
        let Some((study, series)) = &self.series else {
            return;
        };
        let idle = self.busy.is_none();
        ui.label(format!("Series of the study {study}:"));
        egui::Grid::new("pacs-series").striped(true).show(ui, |ui| {
            for s in series {
                ui.label(&s.number);
                ui.label(&s.modality);
                ui.label(&s.description);
                ui.label(
                    s.instances
                        .map(|n| format!("{n} images"))
                        .unwrap_or_default(),
                );
                if ui
                    .add_enabled(idle, egui::Button::new("Retrieve series"))
                    .clicked()
                {
                    commands.push(Command::PacsRetrieveSeries(
                        study.clone(),
                        s.series_uid.clone(),
                    ));
                }
                ui.end_row();
            }
        });
        ui.separator();
    }

    fn results_ui(&mut self, ui: &mut egui::Ui, commands: &mut Vec<Command>) {
        self.series_ui(ui, commands);
        if self.results.is_empty() {
            ui.weak("No studies listed.");
            return;
        }
        let idle = self.busy.is_none();
        TableBuilder::new(ui)
            .striped(true)
            .column(Column::auto())
            .column(Column::auto())
            .column(Column::auto())
            .column(Column::auto())
            .column(Column::remainder())
            .column(Column::exact(140.0))
            .header(18.0, |mut h| {
                for t in ["Patient", "ID", "Date", "Modalities", "Description", ""] {
                    h.col(|ui| {
                        ui.strong(t);
                    });
                }
            })
            .body(|mut body| {
                for r in &self.results {
                    body.row(20.0, |mut row| {
                        row.col(|ui| {
                            ui.label(r.patient_name.replace('^', " "));
                        });
                        row.col(|ui| {
                            ui.label(&r.patient_id);
                        });
                        row.col(|ui| {
                            ui.label(&r.date);
                        });
                        row.col(|ui| {
                            ui.label(&r.modalities);
                        });
                        row.col(|ui| {
                            ui.label(match r.instances {
                                Some(n) => format!("{} ({n} images)", r.description),
                                None => r.description.clone(),
                            });
                        });
                        row.col(|ui| {
                            ui.horizontal(|ui| {
                                if ui.add_enabled(idle, egui::Button::new("Series")).clicked() {
                                    commands.push(Command::PacsListSeries(r.study_uid.clone()));
                                }
                                if ui
                                    .add_enabled(idle, egui::Button::new("Retrieve"))
                                    .clicked()
                                {
                                    commands.push(Command::PacsRetrieve(r.study_uid.clone()));
                                }
                            });
                        });
                    });
                }
            });
    }
}
