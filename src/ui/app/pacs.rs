//! The PACS window's commands and the `cxrlens-pacs` worker's events.

use super::*;
use crate::pacs::PacsEvent;

impl CxrApp {
    /// `servers.json` beside the settings file.
    fn servers_path(&self) -> Option<PathBuf> {
        self.settings_path
            .as_ref()
            .map(|p| p.with_file_name("servers.json"))
    }

    /// Reads the saved servers (start-up; a small file in the config folder).
    pub(super) fn load_pacs_servers(&mut self) {
        let Some(path) = self.servers_path() else {
            return;
        };
        match crate::pacs::settings::load(&path) {
            Ok(servers) => self.pacs_panel.servers = servers,
            Err(e) => self.notices.error(format!("PACS servers not loaded: {e}")),
        }
    }

    pub(super) fn pacs_command(&mut self, command: Command) {
        let servers_path = self.servers_path();
        let panel = &mut self.pacs_panel;
        match command {
            Command::TogglePacs => panel.open = !panel.open,
            Command::PacsSaveServers => {
                let Some(path) = servers_path else {
                    self.notices
                        .error("No settings folder (neither XDG_CONFIG_HOME nor HOME is set).");
                    return;
                };
                let servers = panel.servers.clone();
                let job = move || crate::pacs::settings::save(&path, &servers);
                if let Err(e) = self.workers.write(WriteKind::PacsServers, job) {
                    self.notices.error(e);
                }
            }
            Command::PacsSearch => {
                let Some(server) = panel.server().cloned() else {
                    return;
                };
                let query = panel.query.clone();
                panel.busy = Some(("search".into(), 0));
                panel.status = None;
                let job = move |_: &dyn Fn(usize), _: &std::sync::atomic::AtomicBool| {
                    PacsEvent::Searched(crate::pacs::search(&server, &query))
                };
                if let Err(e) = self.workers.pacs(job) {
                    self.pacs_panel.busy = None;
                    self.notices.error(e);
                }
            }
            Command::PacsListSeries(study) => {
                let Some(server) = panel.server().cloned() else {
                    return;
                };
                panel.busy = Some(("series list".into(), 0));
                panel.status = None;
                let job = move |_: &dyn Fn(usize), _: &std::sync::atomic::AtomicBool| {
                    let series = crate::pacs::list_series(&server, &study);
                    PacsEvent::SeriesListed(study, series)
                };
                if let Err(e) = self.workers.pacs(job) {
                    self.pacs_panel.busy = None;
                    self.notices.error(e);
                }
            }
            Command::PacsRetrieve(study) => self.pacs_retrieve(study, None),
            Command::PacsRetrieveSeries(study, series) => self.pacs_retrieve(study, Some(series)),
            Command::PacsStore(file) => {
                let Some(server) = panel.server().cloned() else {
                    return;
                };
                panel.busy = Some(("store".into(), 0));
                panel.status = None;
                let job = move |_: &dyn Fn(usize), _: &std::sync::atomic::AtomicBool| {
                    PacsEvent::Stored(crate::pacs::store(&server, &[file]))
                };
                if let Err(e) = self.workers.pacs(job) {
                    self.pacs_panel.busy = None;
                    self.notices.error(e);
                }
            }
            Command::PacsCancel => {
                self.workers.pacs.cancel();
                panel.busy = None;
                panel.status = Some("Cancelled.".into());
            }
            _ => {}
        }
    }

    /// Retrieves a study, or one series of it, into the cache folder and opens it.
    fn pacs_retrieve(&mut self, study: String, series: Option<String>) {
        let panel = &mut self.pacs_panel;
        let Some(server) = panel.server().cloned() else {
            return;
        };
        let Some(dest) = crate::pacs::retrieve_dir(&study) else {
            self.notices
                .error("No cache folder (neither XDG_CACHE_HOME nor HOME is set).");
            return;
        };
        panel.busy = Some(("retrieve".into(), 0));
        panel.status = None;
        let job = move |progress: &dyn Fn(usize), cancel: &std::sync::atomic::AtomicBool| {
            let result = crate::pacs::retrieve(
                &server,
                &study,
                series.as_deref(),
                &dest,
                &mut |n| progress(n),
                cancel,
            );
            PacsEvent::Retrieved(result.map(|files| (dest.clone(), files.len())))
        };
        if let Err(e) = self.workers.pacs(job) {
            self.pacs_panel.busy = None;
            self.notices.error(e);
        }
    }

    pub(super) fn pacs_event(&mut self, generation: u64, event: PacsEvent) {
        if let PacsEvent::Progress(n) = event {
            if let Some(b) = &mut self.pacs_panel.busy {
                b.1 = n;
            }
            return;
        }
        if !self.workers.pacs.finish(generation) {
            return;
        }
        let panel = &mut self.pacs_panel;
        panel.busy = None;
        match event {
            PacsEvent::Searched(Ok(rows)) => {
                panel.status = Some(format!("{} studies found.", rows.len()));
                panel.results = rows;
            }
            PacsEvent::SeriesListed(study, Ok(series)) => {
                panel.status = Some(format!("{} series in the study.", series.len()));
                panel.series = Some((study, series));
            }
            PacsEvent::SeriesListed(_, Err(e)) => {
                panel.status = Some(e.clone());
                self.notices.error(e);
            }
            PacsEvent::Retrieved(Ok((dir, n))) => {
                panel.status = Some(format!(
                    "{n} instance{} retrieved into {}.",
                    if n == 1 { "" } else { "s" },
                    dir.display()
                ));
                self.commands.push(Command::Open(dir));
            }
            PacsEvent::Stored(Ok(n)) => {
                panel.status = Some(format!("The server stored {n} instance(s)."));
                self.notices
                    .info(format!("Sent to the PACS: {n} instance(s) stored."));
            }
            PacsEvent::Searched(Err(e))
            | PacsEvent::Retrieved(Err(e))
            | PacsEvent::Stored(Err(e)) => {
                panel.status = Some(e.clone());
                self.notices.error(e);
            }
            PacsEvent::Progress(_) => {}
        }
    }
}
