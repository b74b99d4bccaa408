//! DICOMweb (PS3.18) against the user's PACS through the `dicom-web` client (dicom-rs types):
//! QIDO-RS study search, WADO-RS retrieval of a study or series into a local folder (objects written
//! as files, then opened like any folder), STOW-RS of exported files back. Blocking functions for
//! worker threads (each call runs its own single-threaded tokio runtime). No connection is opened
//! except to a server the user configured (`servers.json` in the config folder).

pub mod settings;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use dicom_core::ops::AttributeSelector;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_web::{DicomWebClient, DicomWebError};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

/// What a PACS job on the `cxrlens-pacs` thread reports.
#[derive(Clone, Debug)]
pub enum PacsEvent {
    Searched(Result<Vec<StudyRow>, String>),
    /// The series of a study (its Study Instance UID first).
    SeriesListed(String, Result<Vec<SeriesRow>, String>),
    /// Instances received so far.
    Progress(usize),
    /// The folder the study was written to and how many instances it holds.
    Retrieved(Result<(PathBuf, usize), String>),
    Stored(Result<usize, String>),
}

/// Where retrieved studies go: `$XDG_CACHE_HOME/cxrlens/pacs/<Study Instance UID>` (or
/// `~/.cache/...`). Not the repository, not the models' folder; the user may delete it at any time.
pub fn retrieve_dir(study_uid: &str) -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    let safe: String = study_uid
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    (!safe.is_empty()).then(|| base.join("cxrlens/pacs").join(safe))
}

/// A configured DICOMweb server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Server {
    pub name: String,
    /// The DICOMweb root, e.g. `http://pacs.example.org:8042/dicom-web`.
    pub base_url: String,
    #[serde(default)]
    pub username: String,
    /// Stored in the settings file (readable by the user only); empty: no authentication.
    #[serde(default)]
    pub password: String,
}

impl Server {
    /// Refuses what cannot be a DICOMweb root before any connection is tried.
    pub fn check(&self) -> Result<(), String> {
        let url = self.base_url.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "server {:?}: the base URL must start with http:// or https:// (got {url:?})",
                self.name
            ));
        }
        if url.len() <= "https://".len() || url.contains(char::is_whitespace) {
            return Err(format!("server {:?}: {url:?} is not a URL", self.name));
        }
        Ok(())
    }

    fn client(&self) -> Result<DicomWebClient, String> {
        self.check()?;
        let mut client =
            DicomWebClient::with_single_url(self.base_url.trim().trim_end_matches('/'));
        if !self.username.is_empty() {
            client.set_basic_auth(&self.username, &self.password);
        }
        Ok(client)
    }
}

/// QIDO-RS study search (empty fields are not sent). Names and IDs may use `*` and `?`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StudyQuery {
    pub patient_id: String,
    pub patient_name: String,
    /// YYYYMMDD, either end may be empty.
    pub date_from: String,
    pub date_to: String,
    pub modality: String,
    pub accession: String,
    pub limit: u32,
}

/// One study found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StudyRow {
    pub study_uid: String,
    pub patient_name: String,
    pub patient_id: String,
    pub date: String,
    pub description: String,
    pub modalities: String,
    pub accession: String,
    pub instances: Option<u32>,
}

/// One series of a study.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SeriesRow {
    pub series_uid: String,
    pub modality: String,
    pub number: String,
    pub description: String,
    pub instances: Option<u32>,
}

/// Lists the series of a study (QIDO-RS).
pub fn list_series(server: &Server, study_uid: &str) -> Result<Vec<SeriesRow>, String> {
    let client = server.client()?;
    let request = client
        .query_series_in_study(study_uid)
        .with_includefields(vec![
            tags::SERIES_DESCRIPTION,
            tags::NUMBER_OF_SERIES_RELATED_INSTANCES,
        ]);
    let series = runtime()?
        .block_on(request.run())
        .map_err(|e| explain(server, "series list", e))?;
    Ok(series
        .iter()
        .map(|s| SeriesRow {
            series_uid: text(s, tags::SERIES_INSTANCE_UID),
            modality: text(s, tags::MODALITY),
            number: text(s, tags::SERIES_NUMBER),
            description: text(s, tags::SERIES_DESCRIPTION),
            instances: text(s, tags::NUMBER_OF_SERIES_RELATED_INSTANCES)
                .parse()
                .ok(),
        })
        .collect())
}

/// Turns the client's errors into what a user can act on.
fn explain(server: &Server, what: &str, e: DicomWebError) -> String {
    let url = &server.base_url;
    match e {
        DicomWebError::HttpStatusFailure { status_code } => match status_code.as_u16() {
            401 | 403 => format!(
                "{what}: {url} refused the credentials (HTTP {status_code}); check the user name and password of server {:?}",
                server.name
            ),
            404 => format!(
                "{what}: not found at {url} (HTTP 404); check the base URL (it usually ends in /dicom-web) or whether the study still exists"
            ),
            code if code >= 500 => {
                format!("{what}: the server at {url} failed (HTTP {status_code})")
            }
            _ => format!("{what}: {url} answered HTTP {status_code}"),
        },
        DicomWebError::RequestFailed { source, .. } => {
            if source.is_connect() {
                format!("{what}: cannot connect to {url} ({})", root_cause(&source))
            } else if source.is_timeout() {
                format!("{what}: {url} did not answer in time")
            } else {
                format!(
                    "{what}: the connection to {url} failed ({})",
                    root_cause(&source)
                )
            }
        }
        DicomWebError::MultipartReaderFailed { source } => {
            format!("{what}: the transfer from {url} stopped or is malformed ({source})")
        }
        DicomWebError::DeserializationFailed { source } => {
            format!(
                "{what}: {url} sent an answer that is not DICOM JSON ({})",
                root_cause(&source)
            )
        }
        other => format!("{what}: {other} ({url})"),
    }
}

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the network runtime: {e}"))
}

fn text(obj: &InMemDicomObject, tag: dicom_core::Tag) -> String {
    obj.element_opt(tag)
        .ok()
        .flatten()
        .and_then(|e| e.to_multi_str().ok().map(|v| v.join("\\")))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Searches studies.
pub fn search(server: &Server, query: &StudyQuery) -> Result<Vec<StudyRow>, String> {
    let client = server.client()?;
    let mut request = client.query_studies();
    let filter = |tag| AttributeSelector::from(tag);
    let date = match (query.date_from.trim(), query.date_to.trim()) {
        ("", "") => String::new(),
        (a, b) => format!("{a}-{b}"),
    };
    for (tag, value) in [
        (tags::PATIENT_ID, query.patient_id.trim().to_string()),
        (tags::PATIENT_NAME, query.patient_name.trim().to_string()),
        (tags::STUDY_DATE, date),
        (tags::MODALITIES_IN_STUDY, query.modality.trim().to_string()),
        (tags::ACCESSION_NUMBER, query.accession.trim().to_string()),
    ] {
        if !value.is_empty() {
            request = request.with_filter(filter(tag), value);
        }
    }
    request = request
        .with_limit(if query.limit == 0 { 200 } else { query.limit })
        .with_includefields(vec![
            tags::STUDY_DESCRIPTION,
            tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
        ]);
    let studies = runtime()?
        .block_on(request.run())
        .map_err(|e| explain(server, "search", e))?;
    Ok(studies
        .iter()
        .map(|s| StudyRow {
            study_uid: text(s, tags::STUDY_INSTANCE_UID),
            patient_name: text(s, tags::PATIENT_NAME),
            patient_id: text(s, tags::PATIENT_ID),
            date: text(s, tags::STUDY_DATE),
            description: text(s, tags::STUDY_DESCRIPTION),
            modalities: text(s, tags::MODALITIES_IN_STUDY),
            accession: text(s, tags::ACCESSION_NUMBER),
            instances: text(s, tags::NUMBER_OF_STUDY_RELATED_INSTANCES)
                .parse()
                .ok(),
        })
        .collect())
}

/// Retrieves a study (or one series of it) into `dest` (created), one file per instance named by
/// its SOP Instance UID. `progress(received)` after each instance; `cancel` stops between
/// instances (the files received so far stay). Returns the files written.
pub fn retrieve(
    server: &Server,
    study_uid: &str,
    series_uid: Option<&str>,
    dest: &Path,
    progress: &mut dyn FnMut(usize),
    cancel: &AtomicBool,
) -> Result<Vec<PathBuf>, String> {
    let client = server.client()?;
    std::fs::create_dir_all(dest).map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
    let request = match series_uid {
        Some(series) => client.retrieve_series(study_uid, series),
        None => client.retrieve_study(study_uid),
    };
    runtime()?.block_on(async {
        let mut stream = Box::pin(
            request
                .run()
                .await
                .map_err(|e| explain(server, "retrieve", e))?,
        );
        let mut files = Vec::new();
        while let Some(item) = stream.next().await {
            if cancel.load(Ordering::SeqCst) {
                return Err(format!(
                    "retrieve cancelled after {} instances (kept in {})",
                    files.len(),
                    dest.display()
                ));
            }
            let object = item.map_err(|e| explain(server, "retrieve", e))?;
            let uid = text(&object, tags::SOP_INSTANCE_UID);
            // A UID is digits and dots; anything else would make a path.
            if uid.is_empty() || !uid.chars().all(|c| c.is_ascii_digit() || c == '.') {
                return Err(format!(
                    "retrieve: {} sent an instance without a valid SOP Instance UID",
                    server.base_url
                ));
            }
            let path = dest.join(format!("{uid}.dcm"));
            crate::io::write::write_with(&path, |f| {
                object.write_all(f).map_err(std::io::Error::other)
            })
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            files.push(path);
            progress(files.len());
        }
        if files.is_empty() {
            return Err(format!(
                "retrieve: {} sent no instance of study {study_uid}",
                server.base_url
            ));
        }
        Ok(files)
    })
}

/// Stores DICOM files (STOW-RS). Returns the number of instances the server accepted.
pub fn store(server: &Server, files: &[PathBuf]) -> Result<usize, String> {
    let client = server.client()?;
    let mut data = Vec::new();
    for f in files {
        data.push(std::fs::read(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?);
    }
    let request = client
        .store_instances()
        .with_data(futures_util::stream::iter(data));
    let response = runtime()?
        .block_on(request.run())
        .map_err(|e| explain(server, "store", e))?;
    // PS3.18 10.5.3: Failed SOP Sequence lists the instances refused; Referenced SOP Sequence
    // those stored.
    let count = |tag| {
        response
            .element_opt(tag)
            .ok()
            .flatten()
            .and_then(|e| e.items().map(|i| i.len()))
            .unwrap_or(0)
    };
    let failed = count(tags::FAILED_SOP_SEQUENCE);
    if failed > 0 {
        return Err(format!(
            "store: {} refused {failed} of {} instances",
            server.base_url,
            files.len()
        ));
    }
    Ok(count(tags::REFERENCED_SOP_SEQUENCE))
}
