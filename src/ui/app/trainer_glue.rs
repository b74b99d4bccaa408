//! The Trainer tab's commands and the training worker's events.

use super::*;

impl CxrApp {
    pub(super) fn apply_trainer(&mut self, command: TrainerCommand) {
        match command {
            TrainerCommand::Scan => {
                let root = PathBuf::from(self.trainer.data_text.trim());
                let start_from = self.trainer.start_from.clone();
                match self.workers.scan_dataset(root, start_from) {
                    Ok(()) => {
                        self.trainer.scanning = true;
                        self.trainer.scan = None;
                    }
                    Err(e) => self.notices.error(e),
                }
            }
            TrainerCommand::Start { resume } => {
                let mut options = self.trainer.run_options();
                options.resume = resume;
                let out_dir = self.trainer.out_dir();
                let data = PathBuf::from(self.trainer.data_text.trim());
                match self.workers.start_training(
                    data,
                    options.clone(),
                    out_dir.clone(),
                    self.compute.clone(),
                    self.backend,
                ) {
                    Ok(generation) => {
                        self.trainer.error = None;
                        self.trainer.report = None;
                        self.trainer.run = Some(RunView {
                            generation,
                            device: "starting…".into(),
                            epochs: options.epochs,
                            running: true,
                            out_dir,
                            ..Default::default()
                        });
                    }
                    Err(e) => self.notices.error(e),
                }
            }
            TrainerCommand::Stop => {
                // The run stops at its next batch; the last complete epoch's checkpoint stays.
                self.workers.training.stop();
            }
        }
    }

    pub(super) fn handle_trainer_event(&mut self, generation: u64, event: TrainerEvent) {
        match event {
            TrainerEvent::Scanned(result) => {
                if !self.workers.dataset_scan.finish(generation) {
                    return;
                }
                self.trainer.scanning = false;
                match &result {
                    Err(e) => self.notices.error(format!("dataset scan: {e}")),
                    // Without masks only the classifier can learn from the folder.
                    Ok(scan) if scan.masks == 0 && self.trainer.kind == ModelKind::Lung => {
                        self.trainer.kind = ModelKind::Classifier;
                        self.trainer.start_from = None;
                        self.trainer.start_from_chosen = false;
                        self.trainer.options.name =
                            format!("{}-finetuned", ModelKind::Classifier.default_name());
                    }
                    Ok(_) => {}
                }
                self.trainer.scan = Some(result);
            }
            other => {
                let Some(run) = self
                    .trainer
                    .run
                    .as_mut()
                    .filter(|r| r.generation == generation)
                else {
                    return;
                };
                match other {
                    TrainerEvent::Scanned(_) => {}
                    TrainerEvent::Started { device } => run.device = device,
                    TrainerEvent::Progress(p) => match p {
                        TrainProgress::Batch {
                            epoch,
                            batch,
                            batches,
                            loss,
                        } => {
                            let x = (epoch - 1) as f64 + batch as f64 / batches.max(1) as f64;
                            run.batch_loss.push([x, loss]);
                            run.fraction = x / run.epochs.max(1) as f64;
                            if run.start_fraction.is_none() {
                                run.start_fraction =
                                    Some((epoch - 1) as f64 / run.epochs.max(1) as f64);
                                run.started = Some(std::time::Instant::now());
                            }
                        }
                        TrainProgress::Epoch {
                            epoch,
                            epochs,
                            train_loss,
                            evaluation,
                            seconds,
                        } => {
                            let (name, value) = evaluation.headline();
                            run.epoch_points.push((epoch, train_loss, name, value));
                            run.fraction = epoch as f64 / epochs.max(1) as f64;
                            run.log.push(format!(
                                "epoch {epoch}/{epochs}: loss {train_loss:.4}, validation {name} {value:.4} ({seconds:.0} s)"
                            ));
                        }
                        TrainProgress::Message(m) => run.log.push(m),
                    },
                    TrainerEvent::Finished(result) => {
                        run.running = false;
                        self.workers.training.finish(generation);
                        match *result {
                            Ok(report) => {
                                run.fraction = 1.0;
                                run.log.push(format!(
                                    "finished: {} epochs in {:.0} s",
                                    report.epochs_run, report.seconds
                                ));
                                let dir = run.out_dir.clone();
                                self.notices.info(format!(
                                    "model saved to {}; it is offered in the Analysis panel",
                                    dir.display()
                                ));
                                self.trainer.report = Some(report);
                                self.preferred_models.insert(0, dir);
                                self.reload_models();
                            }
                            Err(e) if e == "stopped" => {
                                run.log.push(
                                    "stopped; Resume continues from the last complete epoch".into(),
                                );
                            }
                            Err(e) => {
                                run.log.push(format!("failed: {e}"));
                                self.trainer.error = Some(e.clone());
                                self.notices.error(format!("training failed: {e}"));
                            }
                        }
                    }
                }
            }
        }
    }
}
