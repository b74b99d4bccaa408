//! User-facing messages: each error is shown once, here, until dismissed.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    Error,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    pub level: Level,
    pub text: String,
}

#[derive(Default)]
pub struct Notices {
    pub items: Vec<Notice>,
}

impl Notices {
    pub fn error(&mut self, text: impl Into<String>) {
        self.push(Level::Error, text.into());
    }

    pub fn info(&mut self, text: impl Into<String>) {
        self.push(Level::Info, text.into());
    }

    fn push(&mut self, level: Level, text: String) {
        // The same message twice in a row is shown once.
        if self.items.last().is_some_and(|n| n.text == text) {
            return;
        }
        self.items.push(Notice { level, text });
        if self.items.len() > 6 {
            self.items.remove(0);
        }
    }

    pub fn dismiss(&mut self, index: usize) {
        if index < self.items.len() {
            self.items.remove(index);
        }
    }

    /// Draws the notices; returns the index the user dismissed.
    pub fn ui(&self, ui: &mut egui::Ui) -> Option<usize> {
        let mut dismissed = None;
        for (i, notice) in self.items.iter().enumerate() {
            let (fill, stroke) = match notice.level {
                Level::Error => (
                    egui::Color32::from_rgb(90, 20, 20),
                    egui::Color32::from_rgb(230, 90, 90),
                ),
                Level::Info => (
                    egui::Color32::from_rgb(20, 50, 80),
                    egui::Color32::from_rgb(110, 170, 230),
                ),
            };
            egui::Frame::new()
                .fill(fill)
                .stroke((1.0, stroke))
                .inner_margin(6.0)
                .corner_radius(4.0)
                .show(ui, |ui| {
                    ui.horizontal(|ui| {
                        let prefix = if notice.level == Level::Error {
                            "Error: "
                        } else {
                            ""
                        };
                        ui.label(
                            egui::RichText::new(format!("{prefix}{}", notice.text))
                                .color(egui::Color32::WHITE),
                        );
                        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                            if ui.small_button("Dismiss").clicked() {
                                dismissed = Some(i);
                            }
                        });
                    });
                });
        }
        dismissed
    }
}
