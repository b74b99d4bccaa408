//! Worker results arriving on the UI thread, and scheduling CPU renders.

use super::*;

impl CxrApp {
    pub(super) fn handle_event(&mut self, event: WorkerEvent, ctx: &egui::Context) {
        match event {
            WorkerEvent::Trainer { generation, event } => {
                self.handle_trainer_event(generation, event)
            }
            WorkerEvent::ModelsReady(ready) => {
                self.analysis.models = match *ready {
                    Ok(r) => ModelsStatus::Ready(r),
                    Err(e) => {
                        self.notices.error(format!("models unavailable: {e}"));
                        ModelsStatus::Failed(e)
                    }
                };
            }
            WorkerEvent::AnalysisProgress {
                generation,
                fraction,
                step,
            } => {
                if let Some(r) = &mut self.analysis.running
                    && r.0 == generation
                {
                    r.1 = fraction;
                    r.2 = step;
                }
            }
            WorkerEvent::Analyzed { generation, result } => {
                if self
                    .analysis
                    .running
                    .as_ref()
                    .is_none_or(|r| r.0 != generation)
                {
                    return;
                }
                self.analysis.running = None;
                match *result {
                    Ok((r, summary)) => self.show_analysis_result(r, summary),
                    Err(e) => self.notices.error(format!("analysis failed: {e}")),
                }
                self.analysis_image = None;
            }
            WorkerEvent::GazeImported {
                generation,
                image_id,
                import,
            } => {
                if !self.workers.gaze_import.finish(generation) || !self.shows(image_id) {
                    return;
                }
                self.show_gaze_import(*import);
            }
            WorkerEvent::GazeHeatmap {
                generation,
                image_id,
                map,
                seconds,
            } => {
                if !self.workers.gaze_compare.is_current(generation) || !self.shows(image_id) {
                    return;
                }
                self.show_gaze_heatmap(*map, seconds);
            }
            WorkerEvent::GazeCompared {
                generation,
                image_id,
                output,
            } => {
                if !self.workers.gaze_compare.finish(generation) || !self.shows(image_id) {
                    return;
                }
                self.show_gaze_compare(*output);
            }
            WorkerEvent::Panicked {
                slot,
                generation,
                thread,
                message,
            } => {
                let current = match self.workers.slot_mut(slot) {
                    Some(job) => job.finish(generation),
                    None => {
                        if slot == crate::worker::Slot::Dialog {
                            self.workers.dialog_closed();
                        }
                        true
                    }
                };
                if slot == crate::worker::Slot::Decode && current {
                    self.loading = None;
                    if let Err(e) = self.workers.start_pending_decode() {
                        self.notices.error(e);
                    }
                }
                if current {
                    self.notices.error(format!(
                        "Internal error in {thread}: {message}. The job was stopped; the app keeps running."
                    ));
                }
            }
            WorkerEvent::Written { kind, result } => self.written(kind, result),
            WorkerEvent::Decoded {
                generation,
                path,
                result,
            } => {
                if !self.workers.decode.finish(generation) {
                    return;
                }
                match self.workers.start_pending_decode() {
                    // A newer request was waiting: this result is out of date.
                    Ok(true) => return,
                    Ok(false) => {}
                    Err(e) => self.notices.error(e),
                }
                self.loading = None;
                let frame_request = self.frame_request.take();
                match *result {
                    Ok(loaded)
                        if frame_request.is_some()
                            && self.viewer.as_ref().is_some_and(|v| v.path == path) =>
                    {
                        if let Some(v) = &mut self.viewer {
                            v.replace_frame(loaded);
                        }
                        if self.cine.is_some() {
                            self.cine = Some(std::time::Instant::now() + CINE_INTERVAL);
                        }
                    }
                    Ok(loaded) => {
                        self.cine = None;
                        let mut state = ViewerState::new(path, loaded);
                        if let Some(old) = &self.viewer {
                            // Keep the user's invert choice while stepping through a study.
                            state.display.user_inverted =
                                old.display.user_inverted && self.study.is_some();
                        }
                        self.viewer = Some(state);
                    }
                    Err(e) => {
                        let name = path
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        self.notices.error(format!("{e} — {name}"));
                    }
                }
            }
            WorkerEvent::Scanned {
                generation,
                root,
                tree,
            } => {
                if !self.workers.scan.finish(generation) {
                    return;
                }
                self.loading = None;
                let first = tree.all_images().next().map(|i| i.path.clone());
                for p in tree.problems.iter().take(3) {
                    self.notices.error(p.clone());
                }
                if tree.problems.len() > 3 {
                    self.notices.error(format!(
                        "{} more problems, listed in the study browser",
                        tree.problems.len() - 3
                    ));
                }
                match first {
                    Some(p) => {
                        self.study = Some((root, tree));
                        self.show_study_browser = true;
                        self.open(p, true);
                    }
                    None => self
                        .notices
                        .error("no DICOM, PNG or JPEG images found in the folder"),
                }
            }
            WorkerEvent::Pacs { generation, event } => self.pacs_event(generation, event),
            WorkerEvent::SaveChosen {
                picked,
                export,
                fallback,
            } => {
                self.workers.dialog_closed();
                if fallback && let Some(p) = &picked {
                    self.notices.info(format!(
                        "No file dialog is available (no desktop portal or zenity): the {} goes to {}",
                        export.kind.label(),
                        p.display()
                    ));
                }
                if let Some(p) = picked {
                    self.commands.push(Command::ExportTo(export, p));
                }
            }
            WorkerEvent::DialogClosed { picked, detail } => {
                self.workers.dialog_closed();
                if let Some(p) = picked {
                    self.commands.push(Command::Open(p));
                } else if let Some(d) = detail {
                    self.notices.error(d);
                }
            }
            WorkerEvent::CpuRendered {
                generation,
                pane,
                image_id,
                size,
                rgba,
            } => {
                if !self.workers.render.finish(generation) {
                    return;
                }
                let Some(v) = &mut self.viewer else { return };
                if v.handle.id != image_id {
                    return;
                }
                // Opaque pixels: unmultiplied and premultiplied RGBA are the same bytes, so the
                // worker's buffer becomes the texture's pixels as it is (no pass over a large
                // image on the UI thread).
                let pixels: Vec<egui::Color32> = bytemuck::allocation::try_cast_vec(rgba)
                    .unwrap_or_else(|(_, rgba)| bytemuck::cast_slice(&rgba).to_vec());
                let image = egui::ColorImage::new(size, pixels);
                let key = v.cpu_requested.take();
                let slot = if pane == 0 {
                    &mut v.cpu_texture
                } else {
                    &mut v.pane_textures[(pane as usize - 1).min(3)]
                };
                match slot {
                    Some(t) => {
                        t.texture.set(image, egui::TextureOptions::LINEAR);
                        t.rendered = key;
                    }
                    None => {
                        let texture = ctx.load_texture(
                            format!("cxrlens-image-{pane}"),
                            image,
                            egui::TextureOptions::LINEAR,
                        );
                        *slot = Some(CpuTexture {
                            texture,
                            rendered: key,
                        });
                    }
                }
            }
        }
    }

    /// Keeps the CPU textures in step with the display settings: one render in flight at a time,
    /// for the first pane whose texture is stale. While one runs nothing new starts (a W/L drag
    /// changes the settings every frame); when it lands, the next call renders the settings of
    /// that moment — the newest wins.
    pub(super) fn schedule_cpu_render(&mut self) {
        if self.draw_path() != DrawPath::Cpu || self.workers.render.is_busy() {
            return;
        }
        let Some(v) = &mut self.viewer else { return };
        for spec in v.panes() {
            let key = v.key_for(spec.id, &spec.overlays);
            let texture = if spec.id == 0 {
                v.cpu_texture.as_ref()
            } else {
                v.pane_textures[(spec.id as usize - 1).min(3)].as_ref()
            };
            if texture.and_then(|t| t.rendered) == Some(key) {
                continue;
            }
            if v.cpu_requested == Some(key) {
                return;
            }
            let (handle, settings) = (v.handle.clone(), v.settings_for(&spec.overlays));
            match self.workers.render_cpu(spec.id, handle, settings) {
                Ok(_) => v.cpu_requested = Some(key),
                Err(e) => self.notices.error(e),
            }
            return;
        }
    }
}
