//! The DICOM tag browser. Identifying attributes are masked until the user reveals them; the filter
//! searches names, tags and (only when revealed) identifying values.

use egui_extras::{Column, TableBuilder};

use crate::io::tags::TagRow;

#[derive(Default)]
pub struct TagBrowser {
    pub reveal_identifiers: bool,
    pub filter: String,
}

pub const MASK: &str = "•••• (hidden)";

impl TagBrowser {
    /// The value as shown: masked when identifying and not revealed.
    pub fn shown_value<'a>(&self, row: &'a TagRow) -> &'a str {
        if row.identifying && !self.reveal_identifiers {
            MASK
        } else {
            &row.value
        }
    }

    pub fn ui(&mut self, ui: &mut egui::Ui, rows: &[TagRow]) {
        ui.horizontal(|ui| {
            ui.label("Filter");
            ui.text_edit_singleline(&mut self.filter);
        });
        ui.checkbox(&mut self.reveal_identifiers, "Reveal patient identifiers");
        if rows.is_empty() {
            ui.weak("No DICOM attributes (PNG/JPEG image).");
            return;
        }
        let needle = self.filter.to_lowercase();
        let visible: Vec<&TagRow> = rows
            .iter()
            .filter(|r| {
                needle.is_empty()
                    || r.name.to_lowercase().contains(&needle)
                    || r.tag_label().to_lowercase().contains(&needle)
                    || self.shown_value(r).to_lowercase().contains(&needle)
            })
            .collect();
        TableBuilder::new(ui)
            .striped(true)
            .resizable(true)
            .column(Column::auto().at_least(90.0))
            .column(Column::auto().at_least(140.0))
            .column(Column::exact(30.0))
            .column(Column::remainder().at_least(120.0))
            .header(18.0, |mut h| {
                for title in ["Tag", "Name", "VR", "Value"] {
                    h.col(|ui| {
                        ui.strong(title);
                    });
                }
            })
            .body(|body| {
                body.rows(18.0, visible.len(), |mut row| {
                    let r = visible[row.index()];
                    let indent = "  ".repeat(r.depth as usize);
                    row.col(|ui| {
                        ui.monospace(format!("{indent}{}", r.tag_label()));
                    });
                    row.col(|ui| {
                        ui.label(&r.name);
                    });
                    row.col(|ui| {
                        ui.monospace(&r.vr);
                    });
                    row.col(|ui| {
                        let value = self.shown_value(r);
                        if r.identifying && !self.reveal_identifiers {
                            ui.weak(value);
                        } else {
                            ui.label(value);
                        }
                    });
                });
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifying_values_are_masked_until_revealed() {
        let row = TagRow {
            group: 0x0010,
            element: 0x0010,
            depth: 0,
            name: "PatientName".into(),
            vr: "PN".into(),
            value: "DOE^JANE".into(),
            identifying: true,
        };
        let mut browser = TagBrowser::default();
        assert_eq!(browser.shown_value(&row), MASK);
        browser.reveal_identifiers = true;
        assert_eq!(browser.shown_value(&row), "DOE^JANE");
    }
}
